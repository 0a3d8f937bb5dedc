/**
 * Load and validate a configuration: convict for the shape of every key,
 * then the checks that span keys and sites. One error names the key.
 */
import { readFileSync } from 'node:fs';
import convict from 'convict';
import ipaddr from 'ipaddr.js';
import { rootSchema, siteSchema } from './schema.js';
import type { GatewayConfig, PortRange, SiteConfig } from './types.js';

export class ConfigError extends Error {
  readonly code = 'ERR_ALG_CONFIG';
  override readonly name = 'ConfigError';
}

convict.addFormat({
  name: 'site-array',
  validate(sites: unknown) {
    if (!Array.isArray(sites) || sites.length === 0) throw new Error('must be a non-empty list of sites');
  },
});

/** Validate a parsed JSON document; the result is deeply frozen. */
export function parseConfig(document: unknown): GatewayConfig {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError('the configuration must be a JSON object');
  }
  checkSections(document as Record<string, unknown>, rootSchema, '');
  const root = convict(rootSchema, { args: [], env: {} });
  try {
    root.load(document);
    root.validate({ allowed: 'strict' });
  } catch (err) {
    throw new ConfigError(convictMessage((err as Error).message));
  }
  const props = root.getProperties();
  const sites = (props.sites as unknown[]).map((site, i) => loadSite(site, i));
  checkSites(sites);
  return deepFreeze({ ...props, sites } as GatewayConfig);
}

export function loadConfigFile(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(document);
}

function loadSite(item: unknown, index: number): SiteConfig {
  const where = `sites[${index}]`;
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    throw new ConfigError(`${where}: must be an object`);
  }
  checkSections(item as Record<string, unknown>, siteSchema, `${where}.`);
  const site = convict(siteSchema, { args: [], env: {} });
  try {
    site.load(item);
    site.validate({ allowed: 'strict' });
  } catch (err) {
    throw new ConfigError(`${where}.${convictMessage((err as Error).message)}`);
  }
  const props = site.getProperties();
  if (props.name === '') throw new ConfigError(`${where}.name: must be a non-empty string`);
  for (const key of ['passivePorts', 'activePorts'] as const) {
    const r = props[key];
    if (r.min > r.max) throw new ConfigError(`${where}.${key}: min ${r.min} is greater than max ${r.max}`);
  }
  const up = props.upstream;
  if (up.host === '' && up.hosts.length === 0 && up.dns === '') {
    throw new ConfigError(`${where}.upstream.host: must be an IP address (or give upstream.hosts or upstream.dns)`);
  }
  const ext = props.externalAddress;
  const externalAddress = ext === 'auto' ? 'auto' : (typeof ext === 'string' ? [ext] : ext).map(normalise);
  return {
    ...props,
    listen: { ...props.listen, host: normalise(props.listen.host) },
    upstream: {
      ...props.upstream,
      host: props.upstream.host === '' ? '' : normalise(props.upstream.host),
      hosts: props.upstream.hosts.map(normalise),
    },
    externalAddress,
  } as SiteConfig;
}

/** Every section of the schema (a key whose children are keys) must be an object in the document. */
function checkSections(document: Record<string, unknown>, schema: object, prefix: string): void {
  for (const [key, node] of Object.entries(schema)) {
    const value = document[key];
    if (value === undefined) continue;
    if (key === 'sites' && prefix === '') {
      if (!Array.isArray(value) || value.length === 0) throw new ConfigError('sites: must be a non-empty list of sites');
      continue;
    }
    const isSection = node !== null && typeof node === 'object' && !('doc' in node && 'default' in node);
    if (!isSection) continue;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ConfigError(`${prefix}${key}: must be an object`);
    }
    checkSections(value as Record<string, unknown>, node as object, `${prefix}${key}.`);
  }
}

/** Names unique; listeners distinct; no two port ranges overlap on one address. */
function checkSites(sites: SiteConfig[]): void {
  const names = new Set<string>();
  sites.forEach((site, i) => {
    if (names.has(site.name)) throw new ConfigError(`sites[${i}].name: "${site.name}" is used by another site`);
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
        throw new ConfigError(`${claim.owner}: listener ${claim.host}:${claim.range.min} duplicates ${clash.owner}`);
      }
      if (clash !== undefined) {
        throw new ConfigError(`${claim.owner}: ports ${describe(claim.range)} overlap ${clash.owner} on ${claim.host}`);
      }
      claims.push(claim);
    }
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

/** convict's first error, as `key: problem`. */
function convictMessage(message: string): string {
  const first = (message.split('\n')[0] ?? message).replace(/: value was .*$/, '');
  const unknown = /configuration param '([^']+)' not declared in the schema/.exec(first);
  if (unknown !== null) return `${unknown[1]}: unknown key`;
  const missing = /configuration param '([^']+)' missing from config/.exec(first);
  return missing === null ? first : `${missing[1]}: missing (its section must be an object)`;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
