/**
 * The Kubernetes generator: valid YAML with the expected kinds, ports and
 * ranges exactly those of the config, the committed examples equal to what
 * it prints, and refusals for configs that cannot work in a pod.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfigFile, parseConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';
import { kubernetesManifests, ManifestError, type KubeOptions } from '../../../src/deploy/kubernetes.js';
import { configWithSite } from '../../support/deployConfig.js';

const ROOT = new URL('../../../', import.meta.url);
const EXAMPLE_CONFIG = new URL('config/ftp-alg.json', ROOT).pathname;
/** The options deploy/README.md generates the committed examples with. */
const EXAMPLES: [string, KubeOptions][] = [
  ['deploy/kubernetes/daemonset.yaml', { pattern: 'daemonset', upstreamService: 'ftp-upstream' }],
  ['deploy/kubernetes/loadbalancer.yaml', { pattern: 'loadbalancer', upstreamService: 'ftp-upstream' }],
];

/** Just enough of the Kubernetes objects to walk them in tests. */
interface KubeObject {
  kind: string;
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  data?: Record<string, string>;
  spec: Spec;
}
interface Spec {
  type?: string;
  clusterIP?: string;
  externalTrafficPolicy?: string;
  replicas?: number;
  strategy?: { type: string };
  selector?: Record<string, unknown>;
  ports?: { name: string; port: number; targetPort: number; protocol: string }[];
  template?: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  podSelector?: { matchLabels: Record<string, string> };
  ingress?: { from?: Record<string, unknown>[]; ports: { port: number; endPort?: number }[] }[];
}
interface PodSpec {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  nodeSelector?: Record<string, string>;
  terminationGracePeriodSeconds: number;
  securityContext: { sysctls?: { name: string; value: string }[] };
  containers: Container[];
  volumes: { name: string; configMap?: { name: string } }[];
}
interface Container {
  image: string;
  args: string[];
  ports: { containerPort: number }[];
  securityContext: { runAsNonRoot: boolean; runAsUser: number; allowPrivilegeEscalation: boolean; readOnlyRootFilesystem: boolean; capabilities: { drop: string[]; add?: string[] } };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
}
interface Probe {
  httpGet?: { host?: string; path: string; port: number };
  exec?: { command: string[] };
}

function parseManifests(text: string): KubeObject[] {
  const documents = parseAllDocuments(text, { version: '1.1' });
  if (!Array.isArray(documents)) throw new Error('expected a document stream');
  for (const d of documents) expect(d.errors).toEqual([]);
  return documents.map((d) => d.toJS() as KubeObject);
}

function generate(config: GatewayConfig, options: KubeOptions): KubeObject[] {
  return parseManifests(kubernetesManifests(config, options));
}

function only(objects: KubeObject[], predicate: (o: KubeObject) => boolean): KubeObject {
  const found = objects.filter(predicate);
  expect(found).toHaveLength(1);
  return found[0] as KubeObject;
}

function range(min: number, max: number): number[] {
  return Array.from({ length: max - min + 1 }, (_, i) => min + i);
}

function podOf(object: KubeObject): PodSpec {
  const pod = object.spec.template?.spec;
  if (pod === undefined) throw new Error(`${object.kind} has no pod template`);
  return pod;
}

function containerOf(object: KubeObject): Container {
  const container = podOf(object).containers[0];
  if (container === undefined) throw new Error(`${object.kind} has no container`);
  return container;
}

/** A config object with one site changed, validated like the real thing. */
const configWith = configWithSite({ passivePorts: { min: 50000, max: 50009 }, activePorts: { min: 50100, max: 50109 } });

const config = loadConfigFile(EXAMPLE_CONFIG);
const site = config.sites[0];
if (site === undefined) throw new Error('config/ftp-alg.json has no site');

describe('committed examples', () => {
  it.each(EXAMPLES)('%s equals what the generator prints for config/ftp-alg.json', (path, options) => {
    const committed = readFileSync(new URL(path, ROOT), 'utf8');
    expect(committed).toBe(kubernetesManifests(config, options));
  });
});

describe('pattern daemonset', () => {
  const objects = generate(config, { pattern: 'daemonset', upstreamService: 'ftp-upstream' });

  it('has a ConfigMap, a DaemonSet and the upstream pool headless Service', () => {
    expect(objects.map((o) => o.kind)).toEqual(['ConfigMap', 'DaemonSet', 'Service']);
  });

  it('runs on the host network of edge nodes only', () => {
    const pod = podOf(only(objects, (o) => o.kind === 'DaemonSet'));
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.nodeSelector).toEqual({ 'ftp-alg/edge': 'true' });
  });

  it('declares the control port, and binds port 21 with NET_BIND_SERVICE alone', () => {
    const container = containerOf(only(objects, (o) => o.kind === 'DaemonSet'));
    expect(container.ports.map((p) => p.containerPort)).toEqual([site.listen.port]);
    expect(container.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_BIND_SERVICE'] });
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
  });

  it('runs as the non-root image user when every port is above 1023', () => {
    const high = configWith({ listen: { host: '0.0.0.0', port: 2121 } });
    const container = containerOf(only(generate(high, { pattern: 'daemonset' }), (o) => o.kind === 'DaemonSet'));
    expect(container.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, capabilities: { drop: ['ALL'] } });
    expect(container.securityContext.capabilities.add).toBeUndefined();
  });

  it('has no Service of its own: clients reach the nodes', () => {
    expect(objects.filter((o) => o.kind === 'Service' && o.spec.type === 'LoadBalancer')).toEqual([]);
  });
});

describe('pattern loadbalancer', () => {
  const objects = generate(config, { pattern: 'loadbalancer', upstreamService: 'ftp-upstream' });
  const service = only(objects, (o) => o.kind === 'Service' && o.spec.type === 'LoadBalancer');

  it('has a ConfigMap, a Deployment, a LoadBalancer Service, a NetworkPolicy and the headless Service', () => {
    expect(objects.map((o) => o.kind)).toEqual(['ConfigMap', 'Deployment', 'Service', 'NetworkPolicy', 'Service']);
  });

  it('lists exactly the control port and every port of the passive range, each to the same pod port', () => {
    const ports = service.spec.ports ?? [];
    expect(ports.map((p) => p.port)).toEqual([site.listen.port, ...range(site.passivePorts.min, site.passivePorts.max)]);
    for (const p of ports) {
      expect(p.targetPort).toBe(p.port);
      expect(p.protocol).toBe('TCP');
    }
    expect(new Set(ports.map((p) => p.name)).size).toBe(ports.length);
  });

  it('keeps the active range off the public Service: the upstream pods reach the pod directly', () => {
    const ports = new Set((service.spec.ports ?? []).map((p) => p.port));
    for (const port of range(site.activePorts.min, site.activePorts.max)) expect(ports.has(port)).toBe(false);
  });

  it("keeps the client's address (pinholes check it)", () => {
    expect(service.spec.externalTrafficPolicy).toBe('Local');
  });

  it('runs one pod per Service, never two at once', () => {
    const deployment = only(objects, (o) => o.kind === 'Deployment');
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: 'Recreate' });
    expect(service.spec.selector).toEqual((deployment.spec.selector as { matchLabels: unknown }).matchLabels);
  });

  it('binds port 21 as non-root through the namespaced sysctl', () => {
    const deployment = only(objects, (o) => o.kind === 'Deployment');
    expect(podOf(deployment).securityContext.sysctls).toEqual([{ name: 'net.ipv4.ip_unprivileged_port_start', value: '21' }]);
    expect(containerOf(deployment).securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, capabilities: { drop: ['ALL'] } });
  });

  it('admits control and passive from clients, active only from the upstream pool, in the NetworkPolicy', () => {
    const policy = only(objects, (o) => o.kind === 'NetworkPolicy');
    expect(policy.spec.ingress).toEqual([
      {
        from: [{ ipBlock: { cidr: '0.0.0.0/0' } }, { ipBlock: { cidr: '::/0' } }],
        ports: [
          { protocol: 'TCP', port: site.listen.port },
          { protocol: 'TCP', port: site.passivePorts.min, endPort: site.passivePorts.max },
        ],
      },
      {
        from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ftp-upstream' } } }],
        ports: [{ protocol: 'TCP', port: site.activePorts.min, endPort: site.activePorts.max }],
      },
    ]);
  });

  it('lists every site: control ports and passive ranges of two sites', () => {
    const two = parseConfig({
      sites: [
        { name: 'a', listen: { host: '0.0.0.0', port: 21 }, upstream: { host: '192.0.2.10' }, externalAddress: '203.0.113.1', passivePorts: { min: 50000, max: 50002 }, activePorts: { min: 50100, max: 50101 } },
        { name: 'b', listen: { host: '0.0.0.0', port: 2121 }, upstream: { host: '192.0.2.20' }, externalAddress: '203.0.113.1', passivePorts: { min: 52000, max: 52001 }, activePorts: { min: 52100, max: 52101 } },
      ],
    });
    const lb = only(generate(two, { pattern: 'loadbalancer' }), (o) => o.kind === 'Service');
    expect((lb.spec.ports ?? []).map((p) => p.port)).toEqual([21, 2121, 50000, 50001, 50002, 52000, 52001]);
  });
});

describe('both patterns', () => {
  it.each(['daemonset', 'loadbalancer'] as const)('%s: the ConfigMap holds the config, pointed at the upstream pool', (pattern) => {
    const objects = generate(config, { pattern, upstreamService: 'ftp-upstream', namespace: 'edge' });
    const configMap = only(objects, (o) => o.kind === 'ConfigMap');
    const mounted = parseConfig(JSON.parse(configMap.data?.['ftp-alg.json'] ?? 'null'));
    const expected = { ...config, sites: config.sites.map((s) => ({ ...s, upstream: { ...s.upstream, host: '', hosts: [], dns: 'ftp-upstream.edge.svc.cluster.local' } })) };
    expect(mounted).toEqual(expected);
    const workload = only(objects, (o) => o.kind === 'DaemonSet' || o.kind === 'Deployment');
    expect(podOf(workload).volumes).toContainEqual({ name: 'config', configMap: { name: configMap.metadata.name } });
    expect(containerOf(workload).args).toEqual(['--config', '/etc/ftp-alg/ftp-alg.json']);
  });

  it.each(['daemonset', 'loadbalancer'] as const)('%s: the headless Service selects the upstream pods on their control port', (pattern) => {
    const objects = generate(config, { pattern, upstreamService: 'ftp-upstream' });
    const headless = only(objects, (o) => o.kind === 'Service' && o.spec.clusterIP === 'None');
    expect(headless.metadata.name).toBe('ftp-upstream');
    expect(headless.spec.selector).toEqual({ 'app.kubernetes.io/name': 'ftp-upstream' });
    expect(headless.spec.ports).toEqual([{ name: 'ftp', protocol: 'TCP', port: site.upstream.port, targetPort: site.upstream.port }]);
  });

  it.each(['daemonset', 'loadbalancer'] as const)('%s: without --upstream-service the config keeps its upstream', (pattern) => {
    const objects = generate(config, { pattern });
    expect(objects.filter((o) => o.spec?.clusterIP === 'None')).toEqual([]);
    const configMap = only(objects, (o) => o.kind === 'ConfigMap');
    expect(parseConfig(JSON.parse(configMap.data?.['ftp-alg.json'] ?? 'null'))).toEqual(config);
  });

  it('routing tables survive the ConfigMap (the loaded form keys them by name; the file lists them)', () => {
    const routed = (by: 'user' | 'host') =>
      parseConfig({
        sites: [
          {
            name: 'r',
            listen: { host: '0.0.0.0', port: 21 },
            upstream: { hosts: ['192.0.2.10', '192.0.2.11'] },
            externalAddress: '203.0.113.1',
            routing: { by, users: [{ user: 'alice', upstream: '192.0.2.11' }], hosts: [{ name: 'Files.Example', upstream: '192.0.2.10' }] },
            passivePorts: { min: 50000, max: 50002 },
            activePorts: { min: 50100, max: 50101 },
          },
        ],
      });
    for (const by of ['user', 'host'] as const) {
      const original = routed(by);
      const configMap = only(generate(original, { pattern: 'loadbalancer' }), (o) => o.kind === 'ConfigMap');
      const mounted = parseConfig(JSON.parse(configMap.data?.['ftp-alg.json'] ?? 'null'));
      expect(mounted).toEqual(original);
      expect(mounted.sites[0]?.routing).toEqual({ by, users: { alice: '192.0.2.11' }, hosts: { 'files.example': '192.0.2.10' } });
    }
  });

  it.each(['daemonset', 'loadbalancer'] as const)('%s: names, namespace and image come from the options', (pattern) => {
    const objects = generate(config, { pattern, name: 'edge-a', namespace: 'ftp', image: 'registry.example/ftp-alg:1.2.3' });
    for (const o of objects) expect(o.metadata.namespace).toBe('ftp');
    const workload = only(objects, (o) => o.kind === 'DaemonSet' || o.kind === 'Deployment');
    expect(workload.metadata.name).toBe('edge-a');
    expect(containerOf(workload).image).toBe('registry.example/ftp-alg:1.2.3');
    expect(only(objects, (o) => o.kind === 'ConfigMap').metadata.name).toBe('edge-a-config');
  });

  it.each(['daemonset', 'loadbalancer'] as const)('%s: the pod outlives the drain bound', (pattern) => {
    const drain = configWith({}, { shutdown: { drainTimeoutMs: 90_000 } });
    const workload = only(generate(drain, { pattern }), (o) => o.kind === 'DaemonSet' || o.kind === 'Deployment');
    expect(podOf(workload).terminationGracePeriodSeconds).toBeGreaterThan(90);
  });

  it.each(['daemonset', 'loadbalancer'] as const)('%s: no probes while metrics are off', (pattern) => {
    const container = containerOf(only(generate(config, { pattern }), (o) => o.kind === 'DaemonSet' || o.kind === 'Deployment'));
    expect(container.livenessProbe).toBeUndefined();
    expect(container.readinessProbe).toBeUndefined();
  });
});

describe('probes on the metrics listener', () => {
  const probes = (listen: string, pattern: KubeOptions['pattern']) => {
    const workload = only(generate(configWith({}, { metrics: { listen } }), { pattern }), (o) => o.kind === 'DaemonSet' || o.kind === 'Deployment');
    const container = containerOf(workload);
    return { liveness: container.livenessProbe, readiness: container.readinessProbe, ports: container.ports };
  };

  it('wildcard listener: HTTP probes on its port, /healthz and /readyz', () => {
    for (const pattern of ['daemonset', 'loadbalancer'] as const) {
      const p = probes('0.0.0.0:9464', pattern);
      expect(p.liveness?.httpGet).toEqual({ path: '/healthz', port: 9464 });
      expect(p.readiness?.httpGet).toEqual({ path: '/readyz', port: 9464 });
      expect(p.ports.map((x) => x.containerPort)).toContain(9464);
    }
  });

  it('loopback listener on the host network: the kubelet asks loopback', () => {
    expect(probes('127.0.0.1:9464', 'daemonset').readiness?.httpGet).toEqual({ host: '127.0.0.1', path: '/readyz', port: 9464 });
  });

  it('loopback listener in a pod: the image healthcheck asks from inside', () => {
    expect(probes('127.0.0.1:9464', 'loadbalancer').readiness?.exec?.command).toEqual([
      'node',
      '/opt/ftp-alg/dist/deploy/healthcheck.js',
      '/etc/ftp-alg/ftp-alg.json',
      '/readyz',
    ]);
  });
});

describe('refusals', () => {
  const refusals: [string, GatewayConfig, RegExp][] = [
    ['a listener on a fixed address', configWith({ listen: { host: '203.0.113.1', port: 21 } }), /listen\.host 203\.0\.113\.1 cannot be bound in a pod/],
    ['externalAddress auto', configWith({ externalAddress: 'auto' }), /externalAddress "auto" would advertise the pod's address/],
    ['an explicit privateAddress', configWith({ privateAddress: '192.0.2.1' }), /privateAddress 192\.0\.2\.1 is not the pod's address/],
    ['control port 0', configWith({ listen: { host: '0.0.0.0', port: 0 } }), /listen\.port 0 cannot be published/],
    [
      'two sites with different external addresses',
      parseConfig({
        sites: [
          { name: 'a', listen: { host: '0.0.0.0', port: 21 }, upstream: { host: '192.0.2.10' }, externalAddress: '203.0.113.1', passivePorts: { min: 50000, max: 50001 }, activePorts: { min: 50100, max: 50101 } },
          { name: 'b', listen: { host: '0.0.0.0', port: 2121 }, upstream: { host: '192.0.2.10' }, externalAddress: '203.0.113.2', passivePorts: { min: 52000, max: 52001 }, activePorts: { min: 52100, max: 52101 } },
        ],
      }),
      /one Service has one address/,
    ],
  ];

  it.each(refusals)('loadbalancer refuses %s', (_name, bad, message) => {
    expect(() => kubernetesManifests(bad, { pattern: 'loadbalancer' })).toThrow(ManifestError);
    expect(() => kubernetesManifests(bad, { pattern: 'loadbalancer' })).toThrow(message);
  });

  it('an explicit privateAddress is fine when the upstream is only ever passive', () => {
    const passive = configWith({ privateAddress: '192.0.2.1', upstreamDataMode: 'passive' });
    expect(() => kubernetesManifests(passive, { pattern: 'loadbalancer' })).not.toThrow();
  });

  it('the daemonset takes what the loadbalancer refuses, and says so where it matters', () => {
    const fixed = configWith({ listen: { host: '203.0.113.1', port: 21 } });
    expect(kubernetesManifests(fixed, { pattern: 'daemonset' })).toContain('# Note: site main advertises 203.0.113.1 from every node');
  });

  it.each([
    ['name', { name: 'Bad_Name' }],
    ['namespace', { namespace: '-x' }],
    ['upstream service', { upstreamService: 'a.b' }],
  ] as const)('refuses a %s that is not a DNS label', (_what, options) => {
    expect(() => kubernetesManifests(config, { pattern: 'daemonset', ...options })).toThrow(ManifestError);
  });
});

describe('kernel data plane (dataPlane.kind "nftables" or "auto")', () => {
  const kernel = (kind: string, port = 21) => configWith({ listen: { host: '0.0.0.0', port } }, { dataPlane: { kind } });

  it.each(['nftables', 'auto'])('%s: the DaemonSet gets NET_ADMIN as uid 0 with every other capability dropped, and no pod sysctl (the node forwards)', (kind) => {
    const ds = only(generate(kernel(kind), { pattern: 'daemonset' }), (o) => o.kind === 'DaemonSet');
    expect(containerOf(ds).securityContext).toMatchObject({ runAsNonRoot: false, runAsUser: 0, capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE', 'NET_ADMIN'] } });
    expect(podOf(ds).securityContext.sysctls).toBeUndefined();
  });

  it('the Deployment turns forwarding on in its pod network namespace', () => {
    const deployment = only(generate(kernel('nftables'), { pattern: 'loadbalancer' }), (o) => o.kind === 'Deployment');
    expect(podOf(deployment).securityContext.sysctls).toEqual([
      { name: 'net.ipv4.ip_unprivileged_port_start', value: '21' },
      { name: 'net.ipv4.ip_forward', value: '1' },
      { name: 'net.ipv6.conf.all.forwarding', value: '1' },
    ]);
    expect(containerOf(deployment).securityContext).toMatchObject({ runAsUser: 0, capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] } });
  });

  it('controlPriority rr adds SYS_NICE as uid 0; the default adds nothing', () => {
    const rr = configWith({ listen: { host: '0.0.0.0', port: 2121 } }, { controlPriority: { policy: 'rr' } });
    const deployment = only(generate(rr, { pattern: 'loadbalancer' }), (o) => o.kind === 'Deployment');
    expect(containerOf(deployment).securityContext).toMatchObject({ runAsUser: 0, capabilities: { drop: ['ALL'], add: ['SYS_NICE'] } });
    expect(kubernetesManifests(kernel('relay', 2121), { pattern: 'loadbalancer' })).not.toContain('SYS_NICE');
  });

  it('the relay (the default) gets neither, on either pattern', () => {
    for (const pattern of ['daemonset', 'loadbalancer'] as const) {
      const text = kubernetesManifests(kernel('relay', 2121), { pattern });
      expect(text).not.toContain('NET_ADMIN');
      expect(text).not.toContain('forward');
    }
  });
});
