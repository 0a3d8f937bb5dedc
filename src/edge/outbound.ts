/**
 * Outbound sites (issue 15): where a forward site's session goes (the
 * server the client names at login, resolved once, checked against the
 * destination policy), and what a transparent site may connect to. A
 * refusal is prompt (no connection attempt), names its reason, and is
 * logged and counted by Session (`ftp_alg_sessions_refused_total{reason}`).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import { normalise } from '../common/address.js';
import { isIp, parseListenAddress, parsePortSpec } from '../config/formats.js';
import type { Endpoint, GatewayConfig, PortRange, SiteConfig } from '../config/types.js';
import type { RouteResult, UpstreamChooser } from '../control/Session.js';
import type { RouteVerb } from '../control/types.js';
import * as codes from '../ftp/codes.js';
import { type ProxyTarget, isHostName, parseProxyHost, parseProxyUser } from '../ftp/proxyTarget.js';
import { formatReply } from '../ftp/reply.js';
import type { Parsed } from '../ftp/result.js';
import { type DestinationPolicy, type DestinationRefusal, type OwnEndpoint, checkDestination } from './destinations.js';

/** Addresses of a host name, in the resolver's order. */
export type Lookup = (host: string) => Promise<string[]>;

export const systemLookup: Lookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => normalise(a.address));

const DEFAULT_PORT = 21;
/** Refused routes one session may try before it is closed with 421. */
const MAX_REFUSALS = 3;

const TEXT: Record<DestinationRefusal, string> = {
  port: 'that port is not allowed',
  denied: 'that server is denied',
  'not-allowed': 'that server is not in the allowed list',
  loopback: 'loopback addresses are not allowed',
  'link-local': 'link-local addresses are not allowed',
  multicast: 'multicast addresses are not allowed',
  broadcast: 'broadcast addresses are not allowed',
  unspecified: 'unspecified addresses are not allowed',
  'gateway-itself': 'the gateway itself is not a destination',
};

export interface ForwardDeps {
  readonly site: SiteConfig;
  readonly own: () => readonly OwnEndpoint[];
  readonly lookup: Lookup;
}

/**
 * The route of one forward session: `USER user@host[:port]`, `SITE host`,
 * `OPEN host`. A refused route answers 530 and the client may try again,
 * up to MAX_REFUSALS times; then 421 and the end.
 */
export function forwardRoute(deps: ForwardDeps): (verb: RouteVerb, arg: string) => Promise<RouteResult> {
  let refusals = 0;
  const refuse = (reason: string, text: string): RouteResult => {
    refusals++;
    const end = refusals >= MAX_REFUSALS;
    return { ok: false, reason, end, reply: formatReply(end ? codes.SERVICE_NOT_AVAILABLE : codes.NOT_LOGGED_IN, `${text}.`) };
  };
  return async (verb, arg) => {
    const target: Parsed<ProxyTarget> =
      verb === 'USER' ? parseProxyUser(arg) : verb === 'HOST' ? { ok: false, reason: 'host-verb' } : parseProxyHost(arg);
    if (!target.ok) return refuse('bad-target', 'Name the server: USER user@host[:port], SITE host or OPEN host');
    const { host, port = DEFAULT_PORT, user } = target.value;
    const timeoutMs = deps.site.timeouts.upstreamConnectMs;
    const address = target.value.literal ? host : (await resolve(deps.lookup, host, timeoutMs))[0];
    if (address === undefined) return refuse('unresolved', `Cannot resolve ${host}`);
    const policy = await resolvePolicy(deps.site, deps.lookup, timeoutMs);
    if (policy === undefined) return refuse('unresolved-policy', 'Destination policy unavailable (a deny name does not resolve)');
    const verdict = checkDestination(address, port, policy, deps.own());
    if (!verdict.ok) return refuse(`destination-${verdict.reason}`, `Destination refused: ${TEXT[verdict.reason]}`);
    return { ok: true, host: address, port, user };
  };
}

/** The transparent site's check of a redirected connection's original destination. */
export function transparentVerdict(site: SiteConfig, host: string, port: number, own: readonly OwnEndpoint[]): string | undefined {
  const verdict = checkDestination(host, port, policyOf(site), own);
  return verdict.ok ? undefined : `destination-${verdict.reason}`;
}

/** Allow and deny with their host names resolved (once per session); undefined when a deny name does not resolve. */
async function resolvePolicy(site: SiteConfig, lookup: Lookup, timeoutMs: number): Promise<DestinationPolicy | undefined> {
  const { allow, deny, ports } = policyOf(site);
  const expand = async (list: readonly string[]) =>
    Promise.all(list.map(async (entry) => (isHostName(entry) ? { entry, addresses: await resolve(lookup, entry, timeoutMs) } : { entry, addresses: [entry] })));
  const [a, d] = await Promise.all([expand(allow), expand(deny)]);
  // A deny name that resolves to nothing cannot be enforced: refuse rather than let through what it names.
  if (d.some((x) => x.addresses.length === 0)) return undefined;
  return { allow: a.flatMap((x) => x.addresses), deny: d.flatMap((x) => x.addresses), ports };
}

/** The site's destinations with its ports as ranges (names in allow and deny not yet resolved). */
function policyOf(site: SiteConfig): DestinationPolicy {
  const { allow = [], deny = [], ports = [DEFAULT_PORT] } = site.destinations ?? {};
  return { allow, deny, ports: ports.flatMap((spec) => parsePortSpec(spec) ?? []) };
}

/** Addresses of `host`, [] when it does not resolve in time. */
async function resolve(lookup: Lookup, host: string, timeoutMs: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<string[]>((r) => {
    timer = setTimeout(() => r([]), timeoutMs);
  });
  try {
    return await Promise.race([lookup(host).catch(() => []), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Every address:port range the gateway itself listens on: each site's
 * listener and pinhole ranges and the metrics listener (as bound: a port 0
 * in the config is the kernel's pick); a wildcard stands for every local
 * address of its family (or both, for `::`).
 */
export function ownEndpoints(
  config: GatewayConfig,
  bound: { readonly listeners: readonly Endpoint[]; readonly metrics: Endpoint | undefined },
  locals: readonly string[] = readLocalAddresses(),
): OwnEndpoint[] {
  const out: OwnEndpoint[] = [];
  const add = (host: string, ports: PortRange) => {
    for (const h of concrete(host, locals)) out.push({ host: h, ports });
  };
  for (const site of config.sites) {
    add(site.listen.host, site.passivePorts);
    add(site.privateAddress, site.activePorts);
  }
  const metrics = bound.metrics ?? parseListenAddress(config.metrics.listen);
  for (const l of [...bound.listeners, ...(metrics === undefined ? [] : [metrics])]) add(l.host, { min: l.port, max: l.port });
  return out;
}

function concrete(host: string, locals: readonly string[]): string[] {
  if (isIp(host) && ipaddr.parse(host).range() !== 'unspecified') return [normalise(host)];
  const v4only = host === '0.0.0.0';
  return [...(v4only ? ['0.0.0.0'] : ['0.0.0.0', '::']), ...locals.filter((a) => !v4only || !a.includes(':'))];
}

/** The gateway's own endpoints are worked out again at most this often: reading the host's addresses (getifaddrs) and expanding them cost every transparent session 0.5-0.7 ms on the 2-core bench. */
export const OWN_ENDPOINTS_TTL_MS = 1_000;

/**
 * ownEndpoints, worked out once per OWN_ENDPOINTS_TTL_MS, again at once when
 * `key` (the config) changes or after `invalidate()` (the gateway calls it
 * once its listeners are bound). An address added to an interface meanwhile
 * is known within that time; a connection to it is not redirected anyway
 * (the redirect rule skips local destinations), and a forward site's name
 * resolving to it within that second is the only case left.
 */
export class OwnEndpointsCache {
  private cached: { readonly at: number; readonly key: unknown; readonly endpoints: readonly OwnEndpoint[] } | undefined;

  constructor(
    private readonly compute: () => readonly OwnEndpoint[],
    private readonly ttlMs = OWN_ENDPOINTS_TTL_MS,
  ) {}

  get(key: unknown, now = performance.now()): readonly OwnEndpoint[] {
    const c = this.cached;
    if (c === undefined || c.key !== key || now - c.at >= this.ttlMs || now < c.at) this.cached = { at: now, key, endpoints: this.compute() };
    return (this.cached as { endpoints: readonly OwnEndpoint[] }).endpoints;
  }

  invalidate(): void {
    this.cached = undefined;
  }
}

function readLocalAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((i) => normalise(i.address))
    .filter((a) => a !== '');
}

/** An outbound session's one upstream (chosen per session): no pool, no retry on another member. */
export function singleUpstream(port: number): UpstreamChooser {
  return { port, maxAttempts: 1, take: () => undefined, give: () => undefined, report: () => undefined };
}
