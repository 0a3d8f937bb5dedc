/**
 * Kubernetes manifests for the edge patterns, generated from a gateway
 * config because a Service cannot take a port range:
 *
 * - `daemonset`: the gateway in the network namespace of every node labelled
 *   `ftp-alg/edge=true`; each node is an instance with its own address.
 * - `loadbalancer`: one instance is one pod behind one LoadBalancer Service
 *   that lists the control ports and every passive port. Two pods behind one
 *   Service would split a session's control and data connections between
 *   them, so an instance has one replica; scale out with more instances.
 * - `metallb`: instance.count instances behind one address that MetalLB
 *   shares between a control Service over every instance and one Service per
 *   instance for its passive slice (kubeMetallb.ts).
 *
 * All can front an upstream pool: a headless Service whose DNS name the
 * ConfigMap's sites resolve (`upstream.dns`).
 */
import ipaddr from 'ipaddr.js';
import { parseListenAddress } from '../config/formats.js';
import type { GatewayConfig, SiteConfig } from '../config/types.js';
import { metallbDocuments, metallbHeader } from './kubeMetallb.js';
import { controlPorts, podSpec, privilegedPorts, type PodShape, scrapeAnnotations } from './kubePod.js';
import { configMap, deployment, instanceLabels, loadBalancerService, ManifestError, type Metadata, portsOf, selectorLabels, servicePort } from './kubeObjects.js';

export { ManifestError } from './kubeObjects.js';
import { formatYamlDocuments, type YamlMap, type YamlValue } from './yaml.js';

export type KubePattern = 'daemonset' | 'loadbalancer' | 'metallb';
export const KUBE_PATTERNS: readonly KubePattern[] = ['daemonset', 'loadbalancer', 'metallb'];

export interface KubeOptions {
  readonly pattern: KubePattern;
  /** Name of the instance: Deployment or DaemonSet, Service, `<name>-config`. Default `ftp-alg`. */
  readonly name?: string;
  readonly namespace?: string;
  readonly image?: string;
  /** A headless Service over the upstream FTP server pods, labelled `app.kubernetes.io/name: <this>`. */
  readonly upstreamService?: string;
}

export const KUBE_DEFAULTS = { name: 'ftp-alg', namespace: 'ftp-alg', image: 'ftp-alg:latest' } as const;
/** Nodes that run the DaemonSet carry this label, `true`; a NoSchedule taint with this key keeps other pods off. */
export const EDGE_NODE_LABEL = 'ftp-alg/edge';

/** An RFC 1035 label: what Kubernetes accepts as a Service (and so instance) name. */
export function isDnsLabel(text: string): boolean {
  return /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(text);
}

export function kubernetesManifests(config: GatewayConfig, options: KubeOptions): string {
  const name = options.name ?? KUBE_DEFAULTS.name;
  const namespace = options.namespace ?? KUBE_DEFAULTS.namespace;
  const image = options.image ?? KUBE_DEFAULTS.image;
  for (const [what, value] of [['name', name], ['namespace', namespace], ['upstream service', options.upstreamService]] as const) {
    if (value !== undefined && !isDnsLabel(value)) throw new ManifestError(`${what} ${JSON.stringify(value)} is not a DNS label (a-z, 0-9, -)`);
  }
  if (options.pattern !== 'daemonset') checkLoadBalancer(config);
  const pool = options.upstreamService;
  const gatewayConfig = pool === undefined ? config : withUpstreamPool(config, `${pool}.${namespace}.svc.cluster.local`);
  const meta = (objectName: string, labels: YamlMap = instanceLabels(name)): Metadata => ({ name: objectName, namespace, labels });
  const configFile = configMap(meta(`${name}-config`), gatewayConfig);
  const shape = { configMap: `${name}-config`, image };
  const low = privilegedPorts(config).length > 0;
  const podNetwork = { hostNetwork: false, lowPorts: low ? 'sysctl' : 'none' } as const;
  const documents: YamlValue[] =
    options.pattern === 'daemonset'
      ? [configFile, daemonSet(gatewayConfig, meta(name), { ...shape, hostNetwork: true, lowPorts: low ? 'capability' : 'none' })]
      : options.pattern === 'loadbalancer'
        ? [configFile, deployment(gatewayConfig, meta(name), { ...shape, ...podNetwork }), instanceService(config, meta(name)), networkPolicy(config, meta(name), pool)]
        : [...metallbDocuments(gatewayConfig, { name, namespace }, { image, ...podNetwork }), networkPolicy(config, meta(name), pool)];
  if (pool !== undefined) documents.push(headlessService(config, meta(pool, upstreamLabels(pool))));
  return formatYamlDocuments(documents, header(config, options.pattern, { name, namespace, image, pool }));
}

function daemonSet(config: GatewayConfig, metadata: Metadata, shape: PodShape): YamlMap {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata,
    spec: {
      selector: { matchLabels: selectorLabels(metadata.name) },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: { labels: metadata.labels, annotations: scrapeAnnotations(config) },
        spec: {
          hostNetwork: true,
          dnsPolicy: 'ClusterFirstWithHostNet', // so the upstream pool's Service name resolves on the host network
          nodeSelector: { [EDGE_NODE_LABEL]: 'true' },
          tolerations: [{ key: EDGE_NODE_LABEL, operator: 'Exists', effect: 'NoSchedule' }],
          ...podSpec(config, shape),
        },
      },
    },
  };
}

/** The control ports and every passive port, one by one; `Local` keeps the client's address, which pinholes check. */
function instanceService(config: GatewayConfig, metadata: Metadata): YamlMap {
  const passive = config.sites.flatMap((site) => portsOf(site.passivePorts.min, site.passivePorts.max));
  return loadBalancerService(config, metadata, {
    policy: 'Local',
    selector: selectorLabels(metadata.name),
    ports: [...controlPorts(config).map((port) => servicePort(`ftp-${port}`, port)), ...passive.map((port) => servicePort(`pasv-${port}`, port))],
  });
}

/**
 * What nftables does on a host, for the pod: control and passive ports from
 * the site's clients, the active range from its upstreams, metrics from the cluster.
 */
function networkPolicy(config: GatewayConfig, metadata: Metadata, pool: string | undefined): YamlMap {
  const metrics = parseListenAddress(config.metrics.listen);
  const rules = config.sites.flatMap((site) => [
    {
      from: clientPeers(site),
      ports: [tcpPorts(site.listen.port, site.listen.port), tcpPorts(site.passivePorts.min, site.passivePorts.max)],
    },
    { from: upstreamPeers(site, pool), ports: [tcpPorts(site.activePorts.min, site.activePorts.max)] },
  ]);
  if (metrics !== undefined && ipaddr.parse(metrics.host).range() === 'unspecified') {
    rules.push({ from: [{ namespaceSelector: {} }], ports: [tcpPorts(metrics.port, metrics.port)] });
  }
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata,
    spec: { podSelector: { matchLabels: selectorLabels(metadata.name) }, policyTypes: ['Ingress'], ingress: rules },
  };
}

/** The upstream pool: one DNS name resolving to every ready FTP server pod. */
function headlessService(config: GatewayConfig, metadata: Metadata): YamlMap {
  const ports = [...new Set(config.sites.map((site) => site.upstream.port))];
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      clusterIP: 'None',
      selector: metadata.labels,
      ports: ports.map((port) => servicePort(ports.length === 1 ? 'ftp' : `ftp-${port}`, port)),
    },
  };
}

/** A pod cannot bind the LoadBalancer's address, nor learn it: the config must say it, once for all sites. */
function checkLoadBalancer(config: GatewayConfig): void {
  const first = config.sites[0];
  config.sites.forEach((site, i) => {
    const where = `sites[${i}] (${site.name})`;
    if (ipaddr.parse(site.listen.host).range() !== 'unspecified') {
      throw new ManifestError(`${where}: listen.host ${site.listen.host} cannot be bound in a pod: use 0.0.0.0 or ::`);
    }
    if (site.listen.port === 0) throw new ManifestError(`${where}: listen.port 0 cannot be published by a Service`);
    if (site.externalAddress === 'auto') {
      throw new ManifestError(`${where}: externalAddress "auto" would advertise the pod's address: set the LoadBalancer's address`);
    }
    if (first !== undefined && String(site.externalAddress) !== String(first.externalAddress)) {
      throw new ManifestError(
        `${where}: externalAddress ${String(site.externalAddress)} differs from ${String(first.externalAddress)}: one Service has one address, make one instance per address (--name)`,
      );
    }
    if (site.privateAddress !== 'auto' && site.upstreamDataMode !== 'passive') {
      throw new ManifestError(`${where}: privateAddress ${site.privateAddress} is not the pod's address: use "auto"`);
    }
  });
}

/** Every site takes its upstreams from the pool's DNS name instead of fixed addresses. */
function withUpstreamPool(config: GatewayConfig, dns: string): GatewayConfig {
  return { ...config, sites: config.sites.map((site) => ({ ...site, upstream: { ...site.upstream, host: '', hosts: [], dns } })) };
}

function header(config: GatewayConfig, pattern: KubePattern, o: { name: string; namespace: string; image: string; pool: string | undefined }): string[] {
  const pool = o.pool === undefined ? '' : ` --upstream-service ${o.pool}`;
  const lines = [
    `Generated by: ftp-alg --k8s-manifests --pattern ${pattern} --name ${o.name} --namespace ${o.namespace} --image ${o.image}${pool} --config FILE`,
    'Edit the gateway config and generate again rather than editing this file. See deploy/README.md.',
    '',
  ];
  if (pattern === 'daemonset') {
    lines.push(`Runs in the network namespace of every node labelled ${EDGE_NODE_LABEL}=true; each node is one instance.`);
    for (const site of config.sites) {
      if (site.externalAddress !== 'auto') {
        lines.push(`Note: site ${site.name} advertises ${site.externalAddress.join(' and ')} from every node: right for one edge node, else use "auto".`);
      }
    }
  } else if (pattern === 'metallb') {
    lines.push(...metallbHeader(config, o.name));
  } else {
    const address = config.sites[0]?.externalAddress ?? 'auto';
    lines.push(
      `One instance: one pod behind one LoadBalancer Service, whose address must be ${address === 'auto' ? address : address.join(' and ')}`,
      "(pin it with your provider's mechanism). More instances: generate again with another --name from a",
      "config holding that instance's address.",
    );
  }
  lines.push(...metricsNote(config));
  if (o.pool !== undefined) {
    lines.push(`Upstream pool: pods labelled app.kubernetes.io/name=${o.pool} in namespace ${o.namespace}, through a headless Service.`);
  }
  return lines;
}

/** How Prometheus finds the gateway (README.md, "Monitoring"). */
function metricsNote(config: GatewayConfig): string[] {
  if (config.metrics.listen === '') return ['Metrics are off (metrics.listen ""): set it to 0.0.0.0:9464 to be scraped and probed.'];
  if (scrapeAnnotations(config) === undefined) {
    return [`Metrics on ${config.metrics.listen} are only reachable inside the pod: bind 0.0.0.0 to let Prometheus scrape them.`];
  }
  return ['Prometheus: the pods carry prometheus.io/scrape annotations and a "metrics" port (deploy/kubernetes/podmonitor.yaml for the Prometheus Operator).'];
}

function clientPeers(site: SiteConfig): YamlMap[] {
  const allow = site.clients.allow.length > 0 ? site.clients.allow : ['0.0.0.0/0', '::/0'];
  return allow.map((cidr) => ({ ipBlock: { cidr: asCidr(cidr) } }));
}

function upstreamPeers(site: SiteConfig, pool: string | undefined): YamlMap[] | undefined {
  if (pool !== undefined) return [{ podSelector: { matchLabels: upstreamLabels(pool) } }];
  if (site.upstream.dns !== '') return undefined; // addresses unknown here: any source
  const hosts = [...new Set([site.upstream.host, ...site.upstream.hosts].filter((h) => h !== ''))];
  return hosts.map((host) => ({ ipBlock: { cidr: asCidr(host) } }));
}

function asCidr(address: string): string {
  if (address.includes('/')) return address;
  return `${address}/${ipaddr.parse(address).kind() === 'ipv6' ? 128 : 32}`;
}

function tcpPorts(min: number, max: number): YamlMap {
  return min === max ? { protocol: 'TCP', port: min } : { protocol: 'TCP', port: min, endPort: max };
}

function upstreamLabels(pool: string): YamlMap {
  return { 'app.kubernetes.io/name': pool };
}
