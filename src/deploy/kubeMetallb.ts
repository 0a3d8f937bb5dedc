/**
 * The `metallb` Kubernetes pattern: instance.count instances behind one
 * address that MetalLB gives several Services (`metallb.io/allow-shared-ip`,
 * the same `metallb.io/loadBalancerIPs`). Each instance is a ConfigMap with
 * its own `instance.index` and a one-replica Deployment whose pod carries
 * INSTANCE_LABEL. One Service takes the control ports and selects every
 * instance; one Service per instance takes that instance's slice of every
 * passive range and selects only its pod. The readiness probe (/readyz)
 * takes a failed or draining pod out of the control Service.
 *
 * MetalLB shares an address between Services only when they all use the
 * `Cluster` external traffic policy or all select exactly the same pods
 * (its usage docs, "IP address sharing"); these select different pods, so
 * they are `Cluster`. kube-proxy then SNATs, and the pods see a node's
 * address instead of the client's unless the service proxy keeps it (the
 * header and deploy/README.md say what that means).
 */
import { passiveSlice } from '../config/instance.js';
import type { GatewayConfig } from '../config/types.js';
import { controlPorts, type PodShape } from './kubePod.js';
import { configMap, deployment, instanceLabels, loadBalancerService, ManifestError, portsOf, selectorLabels, servicePort } from './kubeObjects.js';
import type { YamlMap } from './yaml.js';

/** MetalLB's annotations (the `metallb.io/` prefix since v0.14.9; older releases read `metallb.universe.tf/`). */
export const METALLB_SHARED_IP = 'metallb.io/allow-shared-ip';
export const METALLB_ADDRESSES = 'metallb.io/loadBalancerIPs';
/** Every instance's pod carries this label, its instance.index, which its slice Service selects. */
export const INSTANCE_LABEL = 'ftp-alg/instance-index';

export interface MetallbNames {
  readonly name: string;
  readonly namespace: string;
}

/** Every instance's ConfigMap and Deployment, then the control Service and each instance's slice Service. */
export function metallbDocuments(config: GatewayConfig, names: MetallbNames, shape: Omit<PodShape, 'configMap'>): YamlMap[] {
  const { name, namespace } = names;
  const count = config.instance.count;
  checkNames(name, count);
  const instances = Array.from({ length: count }, (_, index) => {
    const own = { ...selectorLabels(name), [INSTANCE_LABEL]: String(index) };
    const labels = { ...instanceLabels(name), [INSTANCE_LABEL]: String(index) };
    const instanceConfig = { ...config, instance: { index, count } };
    const file = `${name}-${index}-config`;
    return [
      configMap({ name: file, namespace, labels }, instanceConfig),
      deployment(instanceConfig, { name: `${name}-${index}`, namespace, labels }, { ...shape, configMap: file }, own),
    ];
  });
  // Cluster: see the file's comment. MetalLB needs no NodePort, and the passive ports would use theirs up.
  const service = (objectName: string, selector: YamlMap, ports: YamlMap[], labels: YamlMap = instanceLabels(name)): YamlMap =>
    loadBalancerService(config, { name: objectName, namespace, labels, annotations: sharing(config, name) }, { policy: 'Cluster', selector, ports, nodePorts: false });
  return [
    ...instances.flat(),
    service(name, selectorLabels(name), controlPorts(config).map((port) => servicePort(`ftp-${port}`, port))),
    ...Array.from({ length: count }, (_, index) =>
      service(
        `${name}-${index}-passive`,
        { ...selectorLabels(name), [INSTANCE_LABEL]: String(index) },
        sliceOf(config, index).map((port) => servicePort(`pasv-${port}`, port)),
        { ...instanceLabels(name), [INSTANCE_LABEL]: String(index) },
      ),
    ),
  ];
}

/** Instance `index`'s ports: its slice of every site's passive range. */
export function sliceOf(config: GatewayConfig, index: number): number[] {
  return config.sites.flatMap((site) => {
    const slice = passiveSlice(site.passivePorts, { index, count: config.instance.count });
    return portsOf(slice.min, slice.max);
  });
}

export function metallbHeader(config: GatewayConfig, name: string): string[] {
  const address = config.sites[0]?.externalAddress ?? 'auto';
  const vip = address === 'auto' ? address : address.join(' and ');
  return [
    `${config.instance.count} instances (instance.count) share ${vip} through MetalLB: Service ${name} takes the control port(s)`,
    `of every instance, Service ${name}-N-passive takes instance N's slice of the passive range(s). Each`,
    `instance is a Deployment ${name}-N with ConfigMap ${name}-N-config (instance.index N).`,
    'externalTrafficPolicy is Cluster: MetalLB shares one address only between Services that are all Cluster',
    "or all select the same pods. kube-proxy then SNATs: the pods see the client's address only where the",
    'service proxy keeps it (e.g. Cilium or Calico eBPF with DSR); otherwise they see a node address, which',
    "works with MetalLB's L2 mode (one node takes all traffic) but not with BGP ECMP. See deploy/README.md.",
  ];
}

/** The same sharing key and addresses on every Service, so MetalLB puts them on one address. */
function sharing(config: GatewayConfig, name: string): YamlMap {
  const address = config.sites[0]?.externalAddress ?? 'auto';
  if (address === 'auto') throw new ManifestError('externalAddress "auto" cannot name the shared address: set it'); // checkLoadBalancer refused it already
  return { [METALLB_SHARED_IP]: name, [METALLB_ADDRESSES]: address.join(',') };
}

function checkNames(name: string, count: number): void {
  const longest = `${name}-${count - 1}-passive`;
  if (longest.length > 63) throw new ManifestError(`the name ${name} makes ${longest}, longer than a DNS label (63): give a shorter --name`);
}
