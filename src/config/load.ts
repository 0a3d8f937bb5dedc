/**
 * Load and validate a configuration: convict for the shape of every key,
 * then the checks that span keys and sites. One error names the key.
 */
import { readFileSync } from 'node:fs';
import convict from 'convict';
import ipaddr from 'ipaddr.js';
import { destinationEntry, isIp, parsePortSpec } from './formats.js';
import { rootSchema, siteSchema, tlsSchema } from './schema.js';
import { type Position, readSource, SyntaxProblem } from './source.js';
import { readTlsMaterial, TlsFileError } from './tlsFiles.js';
import type { Destinations, GatewayConfig, PortRange, SiteConfig, SiteRole, SiteTlsConfig, UpstreamHealthConfig } from './types.js';

/**
 * One refusal: the key path it is about ('' for the whole document) and the
 * problem; read from a file, also the file and, when the key is written
 * there, its line and column. The message is `[file[:line:column]: ][key: ]problem`.
 */
export class ConfigError extends Error {
  readonly code = 'ERR_ALG_CONFIG';
  override readonly name = 'ConfigError';

  constructor(
    readonly key: string,
    readonly problem: string,
    readonly file?: string,
    readonly position?: Position,
  ) {
    const where = file === undefined ? '' : `${file}${position === undefined ? '' : `:${position.line}:${position.column}`}: `;
    super(`${where}${key === '' ? '' : `${key}: `}${problem}`);
  }

  /** The line of the key in the file, if it is written there. */
  get line(): number | undefined {
    return this.position?.line;
  }
}

convict.addFormat({
  name: 'site-array',
  validate(sites: unknown) {
    if (!Array.isArray(sites) || sites.length === 0) throw new Error('must be a non-empty list of sites');
  },
});

/** Validate a parsed document (from JSON or YAML); the result is deeply frozen. */
export function parseConfig(document: unknown): GatewayConfig {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError('', 'the configuration must be an object (a JSON object or a YAML mapping)');
  }
  checkSections(document as Record<string, unknown>, rootSchema, '');
  const root = convict(rootSchema, { args: [], env: {} });
  try {
    root.load(document);
    root.validate({ allowed: 'strict' });
  } catch (err) {
    throw convictError((err as Error).message, '');
  }
  const props = root.getProperties();
  const sites = (props.sites as unknown[]).map((site, i) => loadSite(site, i));
  checkSites(sites);
  checkInstance(props.instance, sites);
  return deepFreeze({ ...props, sites } as GatewayConfig);
}

/**
 * A loaded config as a document `parseConfig` reads back to the same config:
 * what generated files (a Kubernetes ConfigMap) hold. The loaded form keys
 * routing by user and by host name; the document lists them.
 */
export function configDocument(config: GatewayConfig): Record<string, unknown> {
  const sites = config.sites.map((site) => ({
    ...site,
    routing: {
      by: site.routing.by,
      users: Object.entries(site.routing.users).map(([user, upstream]) => ({ user, upstream })),
      hosts: Object.entries(site.routing.hosts).map(([name, upstream]) => ({ name, upstream })),
    },
  }));
  return { ...config, sites };
}

/**
 * Read, parse (YAML for `.yaml`/`.yml`, JSON otherwise) and validate a file.
 * Every refusal names the file and, when the key is written in it, its line.
 */
export function loadConfigFile(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, path);
  }
  const source = readSource(path, text);
  if (source instanceof SyntaxProblem) throw new ConfigError('', source.problem, path, source.position);
  try {
    return parseConfig(source.document);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new ConfigError(err.key, err.problem, path, err.key === '' ? undefined : source.locate(keyPath(err.key)));
  }
}

/** `sites[0].listen.host` as `['sites', 0, 'listen', 'host']`. */
export function keyPath(key: string): (string | number)[] {
  return [...key.matchAll(/\[(\d+)\]|[^.[\]]+/g)].map((m) => (m[1] === undefined ? m[0] : Number(m[1])));
}

function loadSite(item: unknown, index: number): SiteConfig {
  const where = `sites[${index}]`;
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw new ConfigError(where, 'must be an object');
  }
  const { tls: tlsItem, ...rest } = item as Record<string, unknown>;
  checkSections(rest, siteSchema, `${where}.`);
  const site = convict(siteSchema, { args: [], env: {} });
  try {
    site.load(rest);
    site.validate({ allowed: 'strict' });
  } catch (err) {
    throw convictError((err as Error).message, `${where}.`);
  }
  const props = site.getProperties();
  if (props.name === '') throw new ConfigError(`${where}.name`, 'must be a non-empty string');
  for (const key of ['passivePorts', 'activePorts'] as const) {
    const r = props[key];
    if (r.min > r.max) throw new ConfigError(`${where}.${key}`, `min ${r.min} is greater than max ${r.max}`);
  }
  const role = props.role as SiteRole;
  const given = item as Record<string, unknown>;
  const up = props.upstream;
  if (role === 'reverse' && up.host === '' && up.hosts.length === 0 && up.dns === '') {
    throw new ConfigError(`${where}.upstream.host`, 'must be an IP address (or give upstream.hosts or upstream.dns)');
  }
  // The deprecated key is folded into health and not kept: the loaded config (and what is generated from it) has one.
  const { healthCheckIntervalMs, ...upstream } = props.upstream;
  const health = upstreamHealth(upstream.health, healthCheckIntervalMs, where);
  if (props.listen.proxyProtocol !== 'off' && props.listen.trustedProxies.length === 0) {
    throw new ConfigError(`${where}.listen.trustedProxies`, 'must list the balancers allowed to send PROXY headers (listen.proxyProtocol is on)');
  }
  if (up.proxyProtocolData && up.proxyProtocol === 'off') {
    throw new ConfigError(`${where}.upstream.proxyProtocolData`, 'needs upstream.proxyProtocol "v1" or "v2"');
  }
  const destinations = outboundChecks(role, given, props, normalise(props.listen.host), where);
  const tls = tlsItem === undefined ? undefined : loadTls(tlsItem, `${where}.tls`);
  warmChecks(up.warm, { role, proxyProtocol: up.proxyProtocol, routing: props.routing.by, tlsUpstream: tls?.upstream }, where);
  const ext = props.externalAddress;
  const externalAddress = ext === 'auto' ? 'auto' : (typeof ext === 'string' ? [ext] : ext).map(normalise);
  return {
    ...props,
    listen: { ...props.listen, host: normalise(props.listen.host) },
    upstream: {
      ...upstream,
      host: upstream.host === '' ? '' : normalise(upstream.host),
      hosts: upstream.hosts.map(normalise),
      health,
    },
    externalAddress,
    routing: {
      by: props.routing.by,
      users: Object.fromEntries(props.routing.users.map((r) => [r.user, normalise(r.upstream)])),
      hosts: Object.fromEntries(props.routing.hosts.map((r) => [r.name.toLowerCase(), normalise(r.upstream)])),
    },
    ...(tls !== undefined && { tls }),
    ...outboundKeys(role, destinations, props.transparentPassive as 'direct' | 'pinhole'),
  } as SiteConfig;
}

const MAX_WARM = 64;

/** Warm upstream connections are made before any client is known: only where nothing about the client goes first. */
function warmChecks(warm: number, site: { role: SiteRole; proxyProtocol: string; routing: string; tlsUpstream: string | undefined }, where: string): void {
  if (warm === 0) return;
  const key = `${where}.upstream.warm`;
  if (warm > MAX_WARM) throw new ConfigError(key, `${warm} is more than ${MAX_WARM} per member`);
  if (site.role !== 'reverse') throw new ConfigError(key, `a ${site.role} site has no upstream to keep connections to`);
  if (site.proxyProtocol !== 'off') throw new ConfigError(key, 'not with upstream.proxyProtocol: its header names the client, who is not known before the connection is made');
  if (site.routing !== 'none') throw new ConfigError(key, 'not with routing by user or host: the member is chosen after the client speaks');
  if (site.tlsUpstream === 'implicit') throw new ConfigError(key, 'not with tls.upstream "implicit"');
}

/** The optional `tls` section: its own schema, then the files (readable, key matching the certificate). */
function loadTls(item: unknown, where: string): SiteTlsConfig {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new ConfigError(where, 'must be an object');
  checkSections(item as Record<string, unknown>, tlsSchema, `${where}.`);
  const section = convict(tlsSchema, { args: [], env: {} });
  try {
    section.load(item);
    section.validate({ allowed: 'strict' });
  } catch (err) {
    throw convictError((err as Error).message, `${where}.`);
  }
  const props = section.getProperties();
  const tls = { ...props, requireProtP: props.requireProtP ?? props.client === 'required' } as SiteTlsConfig;
  if (tls.upstream === 'plain' && tls.upstreamCaFile !== '') {
    throw new ConfigError(`${where}.upstreamCaFile`, 'set, but upstream is "plain" (no TLS toward the upstream)');
  }
  if (tls.upstreamInsecure && tls.upstreamCaFile !== '') {
    throw new ConfigError(`${where}.upstreamInsecure`, 'true disables the verification upstreamCaFile is for; set one of them');
  }
  try {
    readTlsMaterial(tls);
  } catch (err) {
    if (err instanceof TlsFileError) throw new ConfigError(`${where}.${err.key}`, err.message);
    throw err;
  }
  return tls;
}

/** The deprecated healthCheckIntervalMs becomes idleProbeMs; the ejection times must make sense together. */
function upstreamHealth(health: UpstreamHealthConfig, legacyIntervalMs: number, where: string): UpstreamHealthConfig {
  if (health.baseEjectionMs > health.maxEjectionMs) {
    throw new ConfigError(`${where}.upstream.health.baseEjectionMs`, `${health.baseEjectionMs} is greater than maxEjectionMs ${health.maxEjectionMs}`);
  }
  if (health.check.password !== '' && health.check.user === '') {
    throw new ConfigError(`${where}.upstream.health.check.password`, 'set without check.user');
  }
  if (legacyIntervalMs === 0) return health;
  if (health.idleProbeMs !== 0 && health.idleProbeMs !== legacyIntervalMs) {
    throw new ConfigError(`${where}.upstream.healthCheckIntervalMs`, 'deprecated, and contradicts health.idleProbeMs (give only health.idleProbeMs)');
  }
  return { ...health, idleProbeMs: legacyIntervalMs };
}

/** The outbound keys of a site: none on a reverse site (its config then reads back exactly as before). */
function outboundKeys(role: SiteRole, destinations: Destinations, transparentPassive: 'direct' | 'pinhole'): Partial<SiteConfig> {
  if (role === 'reverse') return { role: undefined, destinations: undefined, transparentPassive: undefined };
  return role === 'forward' ? { role, destinations, transparentPassive: undefined } : { role, destinations, transparentPassive };
}

/**
 * A forward or transparent site names no upstream (the server is chosen per
 * session); only they take `destinations`, host names only on forward sites;
 * a forward site reachable from other hosts must say which servers it
 * serves, else it is an open proxy.
 */
function outboundChecks(
  role: SiteRole,
  given: Record<string, unknown>,
  props: {
    destinations: { allow: string[]; deny: string[]; ports: (number | string)[] };
    upstream: { host: string; hosts: string[]; dns: string };
    routing: { by: string };
  },
  listenHost: string,
  where: string,
): Destinations {
  const raw = props.destinations;
  const up = props.upstream;
  if (role === 'reverse') {
    for (const key of ['destinations', 'transparentPassive']) {
      if (given[key] !== undefined) throw new ConfigError(`${where}.${key}`, 'only for sites with role "forward" or "transparent"');
    }
  } else if (props.routing.by !== 'none') {
    throw new ConfigError(`${where}.routing.by`, `a ${role} site routes by what the client names itself; routing is for reverse sites`);
  }
  if (role !== 'reverse' && (up.host !== '' || up.hosts.length > 0 || up.dns !== '')) {
    throw new ConfigError(`${where}.upstream`, `a ${role} site has no upstream: the server is chosen per session`);
  }
  if (role !== 'transparent' && given.transparentPassive !== undefined) {
    throw new ConfigError(`${where}.transparentPassive`, 'only for sites with role "transparent"');
  }
  for (const list of ['allow', 'deny'] as const) {
    raw[list].forEach((entry, i) => {
      const problem = destinationEntry(entry, role === 'forward');
      if (problem !== undefined) throw new ConfigError(`${where}.destinations.${list}[${i}]`, `${problem} (host names only on forward sites)`);
    });
  }
  if (role === 'forward' && raw.allow.length === 0 && ipaddr.parse(listenHost).range() !== 'loopback') {
    throw new ConfigError(
      `${where}.destinations.allow`,
      `a forward site listening on ${listenHost} (not loopback) needs an allow list, else it is an open proxy; list the servers or networks it may reach`,
    );
  }
  const ip = (entry: string) => (isIp(entry.split('/')[0]) ? normaliseEntry(entry) : entry.toLowerCase());
  return {
    allow: raw.allow.map(ip),
    deny: raw.deny.map(ip),
    ports: raw.ports.map((spec) => (typeof spec === 'string' ? describe(parsePortSpec(spec) as PortRange) : spec)),
  };
}

/** `::ffff:192.0.2.1/120` stays as written but normalised: `2001:DB8::1` → `2001:db8::1`. */
function normaliseEntry(entry: string): string {
  const [address = '', bits] = entry.split('/');
  return bits === undefined ? normalise(address) : `${ipaddr.parse(address).toString()}/${bits}`;
}

/**
 * Every section of the schema (a key whose children are keys) must be an
 * object in the document, and a key whose default is a number or a boolean
 * must be one: convict would coerce the string "no" to true and "2121" to a
 * number, and YAML 1.2 reads `enabled: no` as that string.
 */
function checkSections(document: Record<string, unknown>, schema: object, prefix: string): void {
  for (const [key, node] of Object.entries(schema)) {
    const value = document[key];
    if (value === undefined) continue;
    if (key === 'sites' && prefix === '') {
      if (!Array.isArray(value) || value.length === 0) throw new ConfigError('sites', 'must be a non-empty list of sites');
      continue;
    }
    const isSection = node !== null && typeof node === 'object' && !('doc' in node && 'default' in node);
    if (!isSection) {
      checkType(value, (node as { default: unknown }).default, `${prefix}${key}`);
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ConfigError(`${prefix}${key}`, 'must be an object');
    }
    checkSections(value as Record<string, unknown>, node as object, `${prefix}${key}.`);
  }
}

function checkType(value: unknown, fallback: unknown, key: string): void {
  // convict merges an object into a list's default: {"0": 3} would become [3] and {"office": "198.51.100.0/24"} an empty allow list (everyone).
  if (Array.isArray(fallback) && !Array.isArray(value)) throw new ConfigError(key, `must be a list, got ${JSON.stringify(value)}`);
  if (typeof fallback === 'boolean' && typeof value !== 'boolean') throw new ConfigError(key, `must be true or false, got ${JSON.stringify(value)}`);
  if (typeof fallback === 'number' && typeof value !== 'number') throw new ConfigError(key, `must be a number, got ${JSON.stringify(value)}`);
}

/** Names unique; listeners distinct; no two port ranges overlap on one address. */
function checkSites(sites: SiteConfig[]): void {
  const names = new Set<string>();
  sites.forEach((site, i) => {
    if (names.has(site.name)) throw new ConfigError(`sites[${i}].name`, `"${site.name}" is used by another site`);
    names.add(site.name);
  });
  const claims: { owner: string; host: string; range: PortRange }[] = [];
  sites.forEach((site, i) => {
    const listenPort = site.listen.port;
    const own = [
      { owner: `sites[${i}].listen`, host: site.listen.host, range: { min: listenPort, max: listenPort } },
      { owner: `sites[${i}].passivePorts`, host: site.listen.host, range: site.passivePorts },
      { owner: `sites[${i}].activePorts`, host: site.privateAddress, range: site.activePorts },
    ];
    for (const claim of own) {
      if (claim.range.min === 0) continue; // listen port 0: the kernel picks a free one
      const clash = claims.find((c) => sameAddress(c.host, claim.host) && overlaps(c.range, claim.range));
      if (clash !== undefined && claim.owner.endsWith('.listen') && clash.owner.endsWith('.listen')) {
        throw new ConfigError(claim.owner, `listener ${claim.host}:${claim.range.min} duplicates ${clash.owner}`);
      }
      if (clash !== undefined) {
        throw new ConfigError(claim.owner, `ports ${describe(claim.range)} overlap ${clash.owner} on ${claim.host}`);
      }
      claims.push(claim);
    }
  });
}

/** The index names one of the instances, and every passive range has a port for each. */
function checkInstance(instance: { index: number; count: number }, sites: SiteConfig[]): void {
  if (instance.index >= instance.count) throw new ConfigError('instance.index', `must be below instance.count (${instance.count}), got ${instance.index}`);
  sites.forEach((site, i) => {
    const size = site.passivePorts.max - site.passivePorts.min + 1;
    if (size < instance.count) throw new ConfigError(`sites[${i}].passivePorts`, `${size} ports cannot be cut into ${instance.count} instance slices`);
  });
}

function overlaps(a: PortRange, b: PortRange): boolean {
  return a.min <= b.max && b.min <= a.max;
}

/** Two bind addresses collide if equal, or if either is a wildcard or `auto`. */
function sameAddress(a: string, b: string): boolean {
  const wild = (h: string) => h === 'auto' || ipaddr.parse(h).range() === 'unspecified';
  return a === b || wild(a) || wild(b);
}

function describe(r: PortRange): string {
  return r.min === r.max ? `${r.min}` : `${r.min}-${r.max}`;
}

function normalise(address: string): string {
  return ipaddr.process(address).toString();
}

/** convict's first error as a refusal of its key (`prefix` places a site's keys under `sites[i].`). */
function convictError(message: string, prefix: string): ConfigError {
  const first = (message.split('\n')[0] ?? message).replace(/: value was .*$/, '');
  const unknown = /configuration param '([^']+)' not declared in the schema/.exec(first);
  if (unknown !== null) return new ConfigError(`${prefix}${unknown[1]}`, 'unknown key');
  const missing = /configuration param '([^']+)' missing from config/.exec(first);
  if (missing !== null) return new ConfigError(`${prefix}${missing[1]}`, 'missing (its section must be an object)');
  const colon = first.indexOf(': ');
  return colon === -1 ? new ConfigError(prefix.replace(/\.$/, ''), first) : new ConfigError(`${prefix}${first.slice(0, colon)}`, first.slice(colon + 2));
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
