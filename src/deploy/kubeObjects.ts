/**
 * Pieces every Kubernetes pattern builds from (kubernetes.ts, kubeMetallb.ts):
 * object metadata and labels, the single-replica Deployment, Service ports.
 */
import ipaddr from 'ipaddr.js';
import type { GatewayConfig } from '../config/types.js';
import { podSpec, type PodShape, scrapeAnnotations } from './kubePod.js';
import type { YamlMap } from './yaml.js';

export interface Metadata extends YamlMap {
  readonly name: string;
  readonly namespace: string;
  readonly labels: YamlMap;
  readonly annotations?: YamlMap;
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
