/**
 * Pieces every Kubernetes pattern builds from (kubernetes.ts, kubeMetallb.ts):
 * object metadata and labels, the single-replica Deployment, Service ports.
 */
import ipaddr from 'ipaddr.js';
import { configDocument } from '../config/load.js';
import type { GatewayConfig } from '../config/types.js';
import { CONFIG_FILE, podSpec, type PodShape, scrapeAnnotations } from './kubePod.js';
import type { YamlMap } from './yaml.js';

/** The config cannot run in the chosen pattern as it stands. */
export class ManifestError extends Error {
  readonly code = 'ERR_ALG_MANIFEST';
  override readonly name = 'ManifestError';
}

export interface Metadata extends YamlMap {
  readonly name: string;
  readonly namespace: string;
  readonly labels: YamlMap;
  readonly annotations?: YamlMap;
}

/** The gateway's config file, as the pods mount it. */
export function configMap(metadata: Metadata, config: GatewayConfig): YamlMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata, data: { [CONFIG_FILE]: `${JSON.stringify(configDocument(config), null, 2)}\n` } };
}

/**
 * One instance is one pod: one replica, replaced by Recreate so two pods
 * never serve one instance's ports. `selector` defaults to the instance's
 * name labels; it must be part of `metadata.labels`.
 */
export function deployment(config: GatewayConfig, metadata: Metadata, shape: PodShape, selector: YamlMap = selectorLabels(metadata.name)): YamlMap {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      replicas: 1, // one pod per Service: see the header
      strategy: { type: 'Recreate' }, // never two pods behind the Service, even during a rollout
      selector: { matchLabels: selector },
      template: { metadata: { labels: metadata.labels, annotations: scrapeAnnotations(config) }, spec: podSpec(config, shape) },
    },
  };
}

/** The address families of the external addresses (the first site's: checkLoadBalancer makes them all equal). */
export function externalFamilies(config: GatewayConfig): string[] {
  const addresses = config.sites[0]?.externalAddress ?? 'auto';
  if (addresses === 'auto') return ['IPv4'];
  return addresses.map((a) => (ipaddr.parse(a).kind() === 'ipv6' ? 'IPv6' : 'IPv4'));
}

/** A LoadBalancer Service over the pods `selector` picks, on the config's external address families. */
export function loadBalancerService(
  config: GatewayConfig,
  metadata: Metadata,
  o: { readonly policy: 'Local' | 'Cluster'; readonly selector: YamlMap; readonly ports: YamlMap[]; readonly nodePorts?: false },
): YamlMap {
  const families = externalFamilies(config);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      type: 'LoadBalancer',
      externalTrafficPolicy: o.policy,
      allocateLoadBalancerNodePorts: o.nodePorts,
      ipFamilyPolicy: families.length > 1 ? 'PreferDualStack' : 'SingleStack',
      ipFamilies: families,
      selector: o.selector,
      ports: o.ports,
    },
  };
}

export function servicePort(name: string, port: number): YamlMap {
  return { name, protocol: 'TCP', port, targetPort: port };
}

export function portsOf(min: number, max: number): number[] {
  return Array.from({ length: max - min + 1 }, (_, i) => min + i);
}

export function instanceLabels(name: string): YamlMap {
  return { ...selectorLabels(name), 'app.kubernetes.io/component': 'gateway' };
}

export function selectorLabels(name: string): YamlMap {
  return { 'app.kubernetes.io/name': 'ftp-alg', 'app.kubernetes.io/instance': name };
}
