/**
 * The pod both Kubernetes patterns run: the gateway container with its
 * config mounted from the ConfigMap, least privilege, and health probes
 * on the metrics listener when there is one.
 */
import ipaddr from 'ipaddr.js';
import { parseListenAddress } from '../config/formats.js';
import type { GatewayConfig } from '../config/types.js';
import type { YamlMap } from './yaml.js';

export const CONFIG_DIR = '/etc/ftp-alg';
export const CONFIG_FILE = 'ftp-alg.json';
/** Where the container image installs the build (deploy/container/Containerfile). */
export const APP_DIR = '/opt/ftp-alg';
/** The `node` user of the official node images (node:24-bookworm-slim). */
export const IMAGE_UID = 1000;
/** Above the drain bound, so the kubelet's SIGKILL never cuts a drain short. */
const STOP_MARGIN_S = 15;

export interface PodShape {
  readonly hostNetwork: boolean;
  readonly configMap: string;
  readonly image: string;
  /** Resolved by the caller: a namespaced sysctl (pod network) or root with one capability (host network). */
  readonly lowPorts: 'none' | 'sysctl' | 'capability';
}

/** The kernel data plane is wanted (`nftables`, or `auto` which uses it when it may): it needs CAP_NET_ADMIN and forwarding. */
export function wantsKernelPlane(config: GatewayConfig): boolean {
  return config.dataPlane.kind !== 'relay';
}

/** The forwarding the kernel plane needs, as pod sysctls (namespaced, but "unsafe": the kubelet must allow them). */
export const FORWARDING_SYSCTLS = [
  { name: 'net.ipv4.ip_forward', value: '1' },
  { name: 'net.ipv6.conf.all.forwarding', value: '1' },
] as const;

export function podSpec(config: GatewayConfig, shape: PodShape): YamlMap {
  const sysctls = [
    ...(shape.lowPorts === 'sysctl' ? [{ name: 'net.ipv4.ip_unprivileged_port_start', value: String(lowestPort(config)) }] : []),
    // On the host network the node's own forwarding counts (set it on the node: deploy/README.md).
    ...(wantsKernelPlane(config) && !shape.hostNetwork ? FORWARDING_SYSCTLS : []),
  ];
  return {
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    terminationGracePeriodSeconds: Math.ceil(config.shutdown.drainTimeoutMs / 1000) + STOP_MARGIN_S,
    securityContext: {
      seccompProfile: { type: 'RuntimeDefault' },
      sysctls: sysctls.length > 0 ? sysctls : undefined,
    },
    containers: [container(config, shape)],
    volumes: [
      { name: 'config', configMap: { name: shape.configMap } },
      { name: 'tmp', emptyDir: {} },
    ],
  };
}

/**
 * Pod annotations that the usual Prometheus Kubernetes scrape configuration
 * (`kubernetes_sd_configs` role pod, `prometheus.io/*` relabelling) acts on,
 * when the metrics listener can be reached at the pod's address: a wildcard.
 * A loopback listener is only for the pod's own health check.
 */
export function scrapeAnnotations(config: GatewayConfig): YamlMap | undefined {
  const metrics = parseListenAddress(config.metrics.listen);
  if (metrics === undefined || ipaddr.parse(metrics.host).range() !== 'unspecified') return undefined;
  return { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(metrics.port), 'prometheus.io/path': '/metrics' };
}

/** Ports below 1024 the gateway binds: control ports, and port 20 for active connections from port 20. */
export function privilegedPorts(config: GatewayConfig): number[] {
  const ports = config.sites.flatMap((site) => [
    ...(site.listen.port > 0 && site.listen.port < 1024 ? [site.listen.port] : []),
    ...(site.activeMode.sourcePort20 ? [20] : []),
  ]);
  return [...new Set(ports)].sort((a, b) => a - b);
}

export function controlPorts(config: GatewayConfig): number[] {
  return [...new Set(config.sites.map((site) => site.listen.port).filter((port) => port > 0))];
}

function container(config: GatewayConfig, shape: PodShape): YamlMap {
  const metrics = parseListenAddress(config.metrics.listen);
  // Kubernetes gives a non-root container no ambient capabilities: NET_ADMIN (kernel plane) and SYS_NICE need uid 0, with every other capability dropped.
  const kernel = wantsKernelPlane(config);
  // controlPriority other than the default raises the control thread (chrt): SYS_NICE, also as uid 0 only.
  const nice = config.controlPriority.policy !== 'other' || config.controlPriority.nice !== 0;
  const root = shape.lowPorts === 'capability' || kernel || nice;
  const add = [...(shape.lowPorts === 'capability' ? ['NET_BIND_SERVICE'] : []), ...(kernel ? ['NET_ADMIN'] : []), ...(nice ? ['SYS_NICE'] : [])];
  return {
    name: 'ftp-alg',
    image: shape.image,
    args: ['--config', `${CONFIG_DIR}/${CONFIG_FILE}`],
    ports: [
      ...controlPorts(config).map((port) => ({ name: `ftp-${port}`, containerPort: port, protocol: 'TCP' })),
      ...(metrics === undefined ? [] : [{ name: 'metrics', containerPort: metrics.port, protocol: 'TCP' }]),
    ],
    resources: { requests: { cpu: '250m', memory: '128Mi' }, limits: { memory: '1Gi' } },
    securityContext: {
      runAsNonRoot: !root,
      runAsUser: root ? 0 : IMAGE_UID,
      runAsGroup: root ? 0 : IMAGE_UID,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: add.length > 0 ? { drop: ['ALL'], add } : { drop: ['ALL'] },
    },
    volumeMounts: [
      { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
      { name: 'tmp', mountPath: '/tmp' },
    ],
    livenessProbe: metrics === undefined ? undefined : probe(metrics, '/healthz', shape, { periodSeconds: 10, failureThreshold: 3 }),
    readinessProbe: metrics === undefined ? undefined : probe(metrics, '/readyz', shape, { periodSeconds: 5, failureThreshold: 2 }),
  };
}

/**
 * The kubelet probes from the node. On the host network it reaches any
 * address the listener binds; on the pod network only a wildcard listener,
 * so a loopback one is probed from inside by the image's healthcheck script.
 */
function probe(
  metrics: { host: string; port: number },
  path: string,
  shape: PodShape,
  timing: { periodSeconds: number; failureThreshold: number },
): YamlMap {
  const wildcard = ipaddr.parse(metrics.host).range() === 'unspecified';
  const common = { ...timing, timeoutSeconds: 5 };
  if (shape.hostNetwork || wildcard) {
    return { httpGet: { host: wildcard ? undefined : metrics.host, path, port: metrics.port }, ...common };
  }
  return { exec: { command: ['node', `${APP_DIR}/dist/deploy/healthcheck.js`, `${CONFIG_DIR}/${CONFIG_FILE}`, path] }, ...common };
}

function lowestPort(config: GatewayConfig): number {
  return privilegedPorts(config)[0] ?? 1024;
}
