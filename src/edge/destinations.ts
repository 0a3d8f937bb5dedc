/**
 * The destination policy of forward and transparent sites: may this
 * session connect to address:port? Pure (names are resolved before, by the
 * caller): a table of rules, never an open proxy.
 *
 * - the port must be in `ports`;
 * - `deny` wins over everything;
 * - loopback, link-local (169.254.169.254, the cloud metadata service),
 *   multicast, broadcast, unspecified, and every address:port the gateway
 *   itself listens on are refused unless an `allow` entry that contains the
 *   address lies wholly inside that range (`127.0.0.0/8` permits loopback,
 *   `0.0.0.0/0` does not);
 * - then `allow` (empty: any address).
 */
import ipaddr from 'ipaddr.js';
import type { PortRange } from '../config/types.js';

export interface DestinationPolicy {
  /** Addresses and CIDR blocks, names already resolved. */
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  readonly ports: readonly PortRange[];
}

/** A port range the gateway itself listens on, at one concrete address. */
export interface OwnEndpoint {
  readonly host: string;
  readonly ports: PortRange;
}

export type DestinationRefusal =
  | 'port'
  | 'denied'
  | 'not-allowed'
  | 'loopback'
  | 'link-local'
  | 'multicast'
  | 'broadcast'
  | 'unspecified'
  | 'gateway-itself';

export type DestinationVerdict = { readonly ok: true } | { readonly ok: false; readonly reason: DestinationRefusal };

type Block = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Ranges no server lives in: refused unless allowed by an entry inside them. */
const SPECIAL: readonly { readonly reason: DestinationRefusal; readonly blocks: readonly Block[] }[] = [
  { reason: 'loopback', blocks: ['127.0.0.0/8', '::1/128'].map(block) },
  { reason: 'link-local', blocks: ['169.254.0.0/16', 'fe80::/10'].map(block) },
  { reason: 'multicast', blocks: ['224.0.0.0/4', 'ff00::/8'].map(block) },
  { reason: 'broadcast', blocks: ['255.255.255.255/32'].map(block) },
  { reason: 'unspecified', blocks: ['0.0.0.0/8', '::/128'].map(block) },
];

/** `address` is normalised (no `::ffff:`). */
export function checkDestination(address: string, port: number, policy: DestinationPolicy, own: readonly OwnEndpoint[]): DestinationVerdict {
  if (!ipaddr.isValid(address)) return { ok: false, reason: 'not-allowed' };
  const addr = ipaddr.process(address);
  if (!policy.ports.some((r) => port >= r.min && port <= r.max)) return { ok: false, reason: 'port' };
  const deny = policy.deny.map(block);
  if (deny.some((b) => contains(b, addr))) return { ok: false, reason: 'denied' };
  const allow = policy.allow.map(block).filter((b) => contains(b, addr));
  // An allow entry lifts a refusal only when it lies wholly inside the refused range.
  const lifted = (range: Block) => allow.some((b) => inside(b, range));
  for (const o of own) {
    if (port < o.ports.min || port > o.ports.max || !ipaddr.isValid(o.host)) continue;
    const self = block(o.host);
    if (contains(self, addr) && !lifted(self)) return { ok: false, reason: 'gateway-itself' };
  }
  for (const special of SPECIAL) {
    const range = special.blocks.find((b) => contains(b, addr));
    if (range !== undefined && !lifted(range)) return { ok: false, reason: special.reason };
  }
  if (policy.allow.length > 0 && allow.length === 0) return { ok: false, reason: 'not-allowed' };
  return { ok: true };
}

/** An address or a CIDR as a block; `::ffff:a.b.c.d/n` (n ≥ 96) as its IPv4 block. */
function block(entry: string): Block {
  const [address = '', bits] = entry.split('/');
  let net = ipaddr.parse(address);
  let size = bits === undefined ? (net.kind() === 'ipv4' ? 32 : 128) : Number(bits);
  if (net instanceof ipaddr.IPv6 && net.isIPv4MappedAddress() && size >= 96) {
    net = net.toIPv4Address();
    size -= 96;
  }
  return [net, size];
}

function contains([net, bits]: Block, addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return net.kind() === addr.kind() && addr.match([net, bits] as [typeof net, number]);
}

/** `a` lies wholly inside `b`. */
function inside(a: Block, b: Block): boolean {
  return a[1] >= b[1] && contains(b, a[0]);
}
