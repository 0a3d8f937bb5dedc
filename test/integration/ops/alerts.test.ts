/**
 * The alerting rules in deploy/prometheus: promtool accepts them and their
 * unit tests (deploy/prometheus/ftp-alg.rules.test.yml) pass; every alert
 * has a summary, a description and a severity, and is tested both firing
 * and quiet; every metric and label the rules name is one the gateway
 * exports, so a rename fails here rather than a page at 3 a.m.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { assertToolPrereq, runTool, toolPrereq } from '../../support/prometheus.js';
import { gatewayMetrics, nameProblems } from '../../support/promql.js';

const DIR = fileURLToPath(new URL('../../../deploy/prometheus/', import.meta.url));
const RULES = 'ftp-alg.rules.yml';
const RULE_TESTS = 'ftp-alg.rules.test.yml';

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alert_rule_test?: { eval_time: string; alertname: string; exp_alerts: unknown[] }[];
}

const rules = (parse(readFileSync(`${DIR}${RULES}`, 'utf8')) as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);
const ruleTests = (parse(readFileSync(`${DIR}${RULE_TESTS}`, 'utf8')) as { tests: RuleTest[] }).tests.flatMap((t) => t.alert_rule_test ?? []);

describe('the alerting rules, read as data', () => {
  it('hold the alerts issue 16 asks for', () => {
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'FtpAlgDown', // the process not scraped
        'FtpAlgSiteUpstreamsDown', // every member of a pool unreachable
        'FtpAlgUpstreamDown', // one upstream unreachable
        'FtpAlgPortPoolNearlyExhausted',
        'FtpAlgSessionsRefused',
        'FtpAlgPinholesRefused',
        'FtpAlgPinholesUnused', // opened but never connected: wrong peer, expired
        'FtpAlgKernelPlaneFallback',
        'FtpAlgReloadFailed',
      ]),
    );
  });

  it.each(rules.map((r) => [r.alert, r] as const))('%s has a summary, a description that says where to look, and a severity', (_name, rule) => {
    expect(rule.annotations?.summary ?? '').not.toBe('');
    expect((rule.annotations?.description ?? '').length).toBeGreaterThan(80);
    expect(['critical', 'warning', 'info']).toContain(rule.labels?.severity);
  });

  it.each(rules.map((r) => [r.alert, r] as const))('%s names only metrics and labels the gateway exports', (_name, rule) => {
    expect(nameProblems(rule.expr, gatewayMetrics())).toEqual([]);
  });

  it.each(rules.map((r) => [r.alert] as const))('%s is tested firing and tested quiet', (alert) => {
    const evals = ruleTests.filter((t) => t.alertname === alert);
    expect(evals.some((t) => t.exp_alerts.length > 0)).toBe(true);
    expect(evals.some((t) => t.exp_alerts.length === 0)).toBe(true);
  });
});

const prereq = toolPrereq('alerts.test.ts (promtool)', ['promtool']);

describe.skipIf(prereq.skip)('promtool', () => {
  beforeAll(() => assertToolPrereq(prereq));

  it('check rules accepts the file', async () => {
    const run = await runTool('promtool', ['check', 'rules', RULES], { cwd: DIR });
    expect(run.output).toMatch(/SUCCESS: \d+ rules found/);
    expect(run.code).toBe(0);
  });

  it('test rules: every alert fires on the series that should fire it and only on those', async () => {
    const run = await runTool('promtool', ['test', 'rules', RULE_TESTS], { cwd: DIR });
    expect(run.output).toMatch(/SUCCESS/);
    expect(run.output).not.toMatch(/FAILED/);
    expect(run.code).toBe(0);
  });
});
