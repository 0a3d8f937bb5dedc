/**
 * How Prometheus finds a gateway in Kubernetes: the generated pods carry
 * prometheus.io scrape annotations exactly when their metrics listener is
 * reachable at the pod's address (a wildcard); the PodMonitor selects the
 * pods' labels and the container's "metrics" port and names the job the
 * alert rules expect; the PrometheusRule holds the same groups as
 * deploy/prometheus/ftp-alg.rules.yml.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { kubernetesManifests, type KubePattern } from '../../../src/deploy/kubernetes.js';
import { configWithSite } from '../../support/deployConfig.js';

const ROOT = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, ROOT), 'utf8');

interface Pod {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: { containers: { ports: { name: string; containerPort: number }[] }[] };
}

const configWith = configWithSite({ passivePorts: { min: 50000, max: 50009 }, activePorts: { min: 50100, max: 50109 } });

function podTemplate(listen: string, pattern: KubePattern): { pod: Pod; text: string } {
  const text = kubernetesManifests(configWith({}, { metrics: { listen } }), { pattern });
  const objects = parseAllDocuments(text).map((d) => d.toJS() as { kind: string; spec: { template?: Pod } });
  const workload = objects.find((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment');
  if (workload?.spec.template === undefined) throw new Error('no pod template');
  return { pod: workload.spec.template, text };
}

describe('scrape annotations on the generated pods', () => {
  it.each<KubePattern>(['daemonset', 'loadbalancer'])('%s: a wildcard metrics listener is annotated for scraping, on its port', (pattern) => {
    const { pod, text } = podTemplate('0.0.0.0:9464', pattern);
    expect(pod.metadata.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9464', 'prometheus.io/path': '/metrics' });
    expect(pod.spec.containers[0]?.ports).toContainEqual(expect.objectContaining({ name: 'metrics', containerPort: 9464 }));
    expect(text).toMatch(/^# Prometheus: the pods carry prometheus\.io\/scrape annotations/m);
  });

  it.each<[string, RegExp]>([
    ['127.0.0.1:9464', /^# Metrics on 127\.0\.0\.1:9464 are only reachable inside the pod/m],
    ['', /^# Metrics are off/m],
  ])('metrics.listen %j: no annotations, and the header says why', (listen, note) => {
    const { pod, text } = podTemplate(listen, 'daemonset');
    expect(pod.metadata.annotations).toBeUndefined();
    expect(text).toMatch(note);
  });
});

describe('deploy/kubernetes/podmonitor.yaml', () => {
  const monitor = parse(read('deploy/kubernetes/podmonitor.yaml')) as {
    kind: string;
    spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string; path: string; relabelings: { targetLabel: string; replacement: string }[] }[] };
  };

  it('selects the pods the generator makes, on their metrics port, as job "ftp-alg"', () => {
    const { pod } = podTemplate('0.0.0.0:9464', 'daemonset');
    expect(monitor.kind).toBe('PodMonitor');
    expect(pod.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    const endpoint = monitor.spec.podMetricsEndpoints[0];
    expect(pod.spec.containers[0]?.ports.map((p) => p.name)).toContain(endpoint?.port);
    expect(endpoint?.path).toBe('/metrics');
    expect(endpoint?.relabelings).toContainEqual({ targetLabel: 'job', replacement: 'ftp-alg' });
    expect(read('deploy/prometheus/ftp-alg.rules.yml')).toContain('up{job="ftp-alg"}');
  });
});

describe('deploy/kubernetes/prometheusrule.yaml', () => {
  it('holds the same rule groups as deploy/prometheus/ftp-alg.rules.yml', () => {
    const rule = parse(read('deploy/kubernetes/prometheusrule.yaml')) as { kind: string; spec: unknown };
    expect(rule.kind).toBe('PrometheusRule');
    expect(rule.spec).toEqual(parse(read('deploy/prometheus/ftp-alg.rules.yml')));
  });
});
