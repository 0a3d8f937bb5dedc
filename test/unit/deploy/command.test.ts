/**
 * The deploy commands as the CLI runs them: what they print, and the
 * sysexits(3) codes (64 usage, 78 config) for every way to get them wrong.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';
import { deployCommand, type DeployValues } from '../../../src/deploy/command.js';
import { kubernetesManifests } from '../../../src/deploy/kubernetes.js';
import { nftablesRules } from '../../../src/deploy/nftables.js';

const EX_USAGE = 64;
const EX_CONFIG = 78;
const CONFIG = new URL('../../../config/ftp-alg.json', import.meta.url).pathname;
const MULTI_SITE = new URL('../../../config/examples/multi-site.json', import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), 'ftp-alg-deploy-'));
const INVALID = join(scratch, 'invalid.json');
writeFileSync(INVALID, JSON.stringify({ sites: [{ name: 'x', upstream: { host: 'not-an-ip' } }] }));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('deployCommand', () => {
  it('returns undefined when no deploy command is asked, so the CLI goes on', () => {
    expect(deployCommand({ config: CONFIG })).toBeUndefined();
  });

  it('--nftables prints the ruleset', () => {
    expect(deployCommand({ config: CONFIG, nftables: true })).toEqual({ code: 0, stdout: nftablesRules(loadConfigFile(CONFIG)), stderr: '' });
  });

  it('--k8s-manifests prints the daemonset pattern by default, and passes every option on', () => {
    const config = loadConfigFile(CONFIG);
    expect(deployCommand({ config: CONFIG, 'k8s-manifests': true })?.stdout).toBe(kubernetesManifests(config, { pattern: 'daemonset' }));
    const values: DeployValues = {
      config: CONFIG,
      'k8s-manifests': true,
      pattern: 'loadbalancer',
      name: 'edge-a',
      namespace: 'ftp',
      image: 'registry.example/ftp-alg:1',
      'upstream-service': 'pool',
    };
    const options = { pattern: 'loadbalancer', name: 'edge-a', namespace: 'ftp', image: 'registry.example/ftp-alg:1', upstreamService: 'pool' } as const;
    expect(deployCommand(values)).toEqual({ code: 0, stdout: kubernetesManifests(config, options), stderr: '' });
  });

  it.each<[string, DeployValues, RegExp]>([
    ['both commands', { config: CONFIG, nftables: true, 'k8s-manifests': true }, /one of --k8s-manifests and --nftables/],
    ['a Kubernetes option alone', { config: CONFIG, pattern: 'daemonset' }, /--pattern goes with --k8s-manifests/],
    ['a Kubernetes option with --nftables', { config: CONFIG, nftables: true, image: 'x' }, /--image goes with --k8s-manifests/],
    ['an unknown pattern', { config: CONFIG, 'k8s-manifests': true, pattern: 'statefulset' }, /--pattern must be daemonset or loadbalancer/],
    ['a name that is not a DNS label', { config: CONFIG, 'k8s-manifests': true, name: 'Edge_A' }, /--name must be a DNS label/],
    ['an empty image', { config: CONFIG, 'k8s-manifests': true, image: '' }, /--image must not be empty/],
    ['no config', { nftables: true }, /--config FILE/],
  ])('usage error (64): %s', (_name, values, message) => {
    const result = deployCommand(values);
    expect(result?.code).toBe(EX_USAGE);
    expect(result?.stdout).toBe('');
    expect(result?.stderr).toMatch(message);
  });

  it.each<[string, DeployValues, RegExp]>([
    ['an invalid config', { config: INVALID, nftables: true }, /upstream\.host/],
    ['a missing config', { config: join(scratch, 'missing.json'), 'k8s-manifests': true }, /cannot read/],
    ['a config the pattern cannot run', { config: MULTI_SITE, 'k8s-manifests': true, pattern: 'loadbalancer' }, /cannot be bound in a pod/],
  ])('config error (78): %s', (_name, values, message) => {
    const result = deployCommand(values);
    expect(result?.code).toBe(EX_CONFIG);
    expect(result?.stdout).toBe('');
    expect(result?.stderr).toMatch(message);
  });
});
