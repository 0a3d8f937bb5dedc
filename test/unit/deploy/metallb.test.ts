/**
 * The `metallb` Kubernetes pattern (`--k8s-manifests --pattern metallb`):
 * for each table row, the YAML parses; every Service shares one address
 * (MetalLB's sharing key and address annotations, the Cluster policy MetalLB
 * needs to share between different selectors); the control Service selects
 * every instance's pod; each slice Service selects exactly one pod, the one
 * whose ConfigMap says that instance.index; every passive port of every site
 * is in exactly one Service, the slice its pod serves (the gateway's own
 * passiveSlice), so the slices are disjoint and cover the ranges. The
 * committed example equals the generator's output.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { passiveSlice } from '../../../src/config/instance.js';
import { loadConfigFile, parseConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';
import { INSTANCE_LABEL, METALLB_ADDRESSES, METALLB_SHARED_IP } from '../../../src/deploy/kubeMetallb.js';
import { kubernetesManifests, ManifestError } from '../../../src/deploy/kubernetes.js';

const ROOT = new URL('../../../', import.meta.url);

interface KubeObject {
  kind: string;
  metadata: { name: string; labels: Record<string, string>; annotations?: Record<string, string> };
  data?: Record<string, string>;
  spec: {
    type?: string;
    externalTrafficPolicy?: string;
    allocateLoadBalancerNodePorts?: boolean;
    ipFamilies?: string[];
    selector?: Record<string, unknown>;
    ports?: { name: string; port: number; targetPort: number }[];
    template?: { metadata: { labels: Record<string, string> }; spec: { volumes: { name: string; configMap?: { name: string } }[] } };
  };
}

function generate(config: GatewayConfig, name?: string): KubeObject[] {
  const documents = parseAllDocuments(kubernetesManifests(config, { pattern: 'metallb', name }), { version: '1.1' });
  if (!Array.isArray(documents)) throw new Error('expected a document stream');
  for (const d of documents) expect(d.errors).toEqual([]);
  return documents.map((d) => d.toJS() as KubeObject);
}

type Range = { min: number; max: number };
const site = (name: string, control: number, passive: Range, active: Range) => ({
  name,
  listen: { host: '0.0.0.0', port: control },
  upstream: { host: '192.0.2.10', port: 21 },
  externalAddress: ['203.0.113.1'],
  passivePorts: passive,
  activePorts: active,
});
const configOf = (count: number, sites: ReturnType<typeof site>[], externalAddress?: string[]) =>
  parseConfig({
    metrics: { listen: '0.0.0.0:9464' },
    instance: { index: 0, count },
    sites: sites.map((s) => (externalAddress === undefined ? s : { ...s, externalAddress })),
  });

const ONE_SITE = [site('main', 21, { min: 50000, max: 50099 }, { min: 50100, max: 50199 })];
const TWO_SITES = [site('a', 21, { min: 50000, max: 50009 }, { min: 50100, max: 50109 }), site('b', 2121, { min: 51000, max: 51006 }, { min: 51100, max: 51109 })];

const TABLE: [string, GatewayConfig][] = [
  ['two instances, one site', configOf(2, ONE_SITE)],
  ['three instances, 100 ports: slices of 33, 33, 34', configOf(3, ONE_SITE)],
  ['four instances, two sites, 7 ports cut in four', configOf(4, TWO_SITES)],
  ['two instances, dual stack', configOf(2, ONE_SITE, ['203.0.113.1', '2001:db8::1'])],
  ['one instance', configOf(1, ONE_SITE)],
];

/** The objects of one kind. */
const ofKind = (objects: KubeObject[], kind: string) => objects.filter((o) => o.kind === kind);
const matches = (selector: Record<string, unknown> | undefined, labels: Record<string, string>) =>
  selector !== undefined && Object.entries(selector).every(([k, v]) => labels[k] === v);

describe.each(TABLE)('pattern metallb: %s', (_name, config) => {
  const objects = generate(config);
  const count = config.instance.count;
  const services = ofKind(objects, 'Service').filter((s) => s.spec.type === 'LoadBalancer');
  const deployments = ofKind(objects, 'Deployment');
  const pods = deployments.map((d) => d.spec.template?.metadata.labels ?? {});
  const control = services.find((s) => s.metadata.name === 'ftp-alg');
  const slices = services.filter((s) => s !== control);
  /** The instance.index in the ConfigMap a Deployment's pod mounts. */
  const indexOf = (deployment: KubeObject): number => {
    const mapName = deployment.spec.template?.spec.volumes.find((v) => v.name === 'config')?.configMap?.name;
    const map = ofKind(objects, 'ConfigMap').find((m) => m.metadata.name === mapName);
    const file = JSON.parse(map?.data?.['ftp-alg.json'] ?? '{}') as { instance?: { index: number; count: number } };
    expect(file.instance?.count).toBe(count);
    return file.instance?.index ?? -1;
  };

  it('one ConfigMap and one one-replica Deployment per instance, the instances 0..count-1', () => {
    expect(deployments).toHaveLength(count);
    expect(ofKind(objects, 'ConfigMap')).toHaveLength(count);
    expect(deployments.map(indexOf).sort()).toEqual(Array.from({ length: count }, (_, i) => i));
    for (const d of deployments) expect(d.spec.template?.metadata.labels[INSTANCE_LABEL]).toBe(String(indexOf(d)));
  });

  it('every Service asks MetalLB for the same address under one sharing key, with the Cluster policy sharing needs', () => {
    expect(services).toHaveLength(count + 1);
    const addresses = config.sites[0]?.externalAddress;
    for (const s of services) {
      expect(s.metadata.annotations?.[METALLB_SHARED_IP]).toBe('ftp-alg');
      expect(s.metadata.annotations?.[METALLB_ADDRESSES]).toBe(Array.isArray(addresses) ? addresses.join(',') : '');
      expect(s.spec.externalTrafficPolicy).toBe('Cluster');
      expect(s.spec.allocateLoadBalancerNodePorts).toBe(false);
      expect(s.spec.ipFamilies).toHaveLength(Array.isArray(addresses) ? addresses.length : 0);
    }
  });

  it('the control Service takes the control ports and selects every instance', () => {
    expect(control?.spec.ports?.map((p) => p.port)).toEqual(config.sites.map((s) => s.listen.port));
    expect(pods.every((labels) => matches(control?.spec.selector, labels))).toBe(true);
  });

  it("each slice Service selects exactly one instance's pod, and carries exactly that instance's slices", () => {
    expect(slices).toHaveLength(count);
    for (const service of slices) {
      const selected = deployments.filter((d) => matches(service.spec.selector, d.spec.template?.metadata.labels ?? {}));
      expect(selected).toHaveLength(1);
      const index = indexOf(selected[0] as KubeObject);
      const expected = config.sites.flatMap((s) => {
        const slice = passiveSlice(s.passivePorts, { index, count });
        return Array.from({ length: slice.max - slice.min + 1 }, (_, i) => slice.min + i);
      });
      expect(service.spec.ports?.map((p) => p.port)).toEqual(expected);
      expect(service.spec.ports?.every((p) => p.targetPort === p.port)).toBe(true);
    }
  });

  it('every passive port of every site is in exactly one Service, and no other port is', () => {
    const seen = services.flatMap((s) => s.spec.ports?.map((p) => p.port) ?? []);
    const passive = config.sites.flatMap((s) => Array.from({ length: s.passivePorts.max - s.passivePorts.min + 1 }, (_, i) => s.passivePorts.min + i));
    const controlPorts = config.sites.map((s) => s.listen.port);
    expect(new Set(seen).size).toBe(seen.length); // disjoint
    expect([...seen].sort((a, b) => a - b)).toEqual([...passive, ...controlPorts].sort((a, b) => a - b)); // covering, nothing else
  });

  it('Service port names are unique within each Service and short enough (15)', () => {
    for (const s of services) {
      const names = s.spec.ports?.map((p) => p.name) ?? [];
      expect(new Set(names).size).toBe(names.length);
      expect(names.every((n) => n.length <= 15)).toBe(true);
    }
  });
});

describe('pattern metallb: refusals', () => {
  it('refuses externalAddress "auto": MetalLB must be told the shared address', () => {
    const auto = parseConfig({ instance: { index: 0, count: 2 }, sites: [{ ...ONE_SITE[0], externalAddress: 'auto' }] });
    expect(() => kubernetesManifests(auto, { pattern: 'metallb' })).toThrow(ManifestError);
  });

  it('refuses a name whose objects would not be DNS labels', () => {
    expect(() => kubernetesManifests(configOf(2, ONE_SITE), { pattern: 'metallb', name: `a${'b'.repeat(60)}` })).toThrow(/shorter --name/);
  });
});

describe('committed example', () => {
  it('deploy/kubernetes/metallb.yaml equals what the generator prints for deploy/balancer/ftp-alg.json (deploy/README.md)', () => {
    const example = loadConfigFile(new URL('deploy/balancer/ftp-alg.json', ROOT).pathname);
    const committed = readFileSync(new URL('deploy/kubernetes/metallb.yaml', ROOT), 'utf8');
    expect(committed).toBe(kubernetesManifests(example, { pattern: 'metallb', upstreamService: 'ftp-upstream' }));
  });
});
