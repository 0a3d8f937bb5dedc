/** convict formats for addresses, CIDRs and port ranges (ipaddr.js does every parse). */
import ipaddr from 'ipaddr.js';
import { isHostName } from '../ftp/proxyTarget.js';

/** A dotted-quad IPv4 or an IPv6 address without zone; `127.1`, `0x7f.0.0.1` and `010.0.0.1` are refused, not reinterpreted. */
export function isIp(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  if (value.includes(':')) return ipaddr.IPv6.isValid(value) && !value.includes('%');
  return ipaddr.IPv4.isValidFourPartDecimal(value) && !/(^|\.)0\d/.test(value);
}

export function assertIp(value: unknown): void {
  if (!isIp(value)) throw new Error(`must be an IP address, got ${JSON.stringify(value)}`);
}

export function assertIpOrEmpty(value: unknown): void {
  if (value !== '') assertIp(value);
}

export function assertIpList(value: unknown): void {
  if (!Array.isArray(value)) throw new Error('must be a list of IP addresses');
  value.forEach(assertIp);
}

/** A list of `{ <key>: name, upstream: IP }` (routing tables; names may hold dots, which convict keys may not). */
export function assertRouteList(key: 'user' | 'name') {
  return (value: unknown): void => {
    if (!Array.isArray(value)) throw new Error(`must be a list of { ${key}, upstream }`);
    for (const item of value) {
      const entry = item as Record<string, unknown>;
      const name = entry?.[key];
      if (typeof item !== 'object' || item === null || Object.keys(entry).some((k) => k !== key && k !== 'upstream')) {
        throw new Error(`must be a list of { ${key}, upstream }`);
      }
      if (typeof name !== 'string' || name.length === 0 || /[\0-\x20\x7f]/.test(name)) throw new Error(`${JSON.stringify(name)} is not a usable ${key}`);
      if (!isIp(entry.upstream)) throw new Error(`${JSON.stringify(name)} must map to an IP address, got ${JSON.stringify(entry.upstream)}`);
    }
  };
}

export function assertIpOrAuto(value: unknown): void {
  if (value !== 'auto') assertIp(value);
}

export function assertExternalAddress(value: unknown): void {
  if (value === 'auto') return;
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || list.length > 2) {
    throw new Error('must be "auto", an IP address, or a list of one IPv4 and one IPv6 address');
  }
  list.forEach(assertIp);
  const kinds = list.map((a: string) => ipaddr.parse(a).kind());
  if (kinds.length === 2 && kinds[0] === kinds[1]) throw new Error('may hold at most one address per family');
}

export function assertCidrList(value: unknown): void {
  if (!Array.isArray(value)) throw new Error('must be a list of CIDR blocks');
  for (const cidr of value) {
    if (typeof cidr !== 'string') throw new Error('must be a list of CIDR blocks');
    try {
      ipaddr.parseCIDR(cidr.includes('/') ? cidr : `${cidr}/${ipaddr.parse(cidr).kind() === 'ipv4' ? 32 : 128}`);
    } catch {
      throw new Error(`${JSON.stringify(cidr)} is not a CIDR block`);
    }
  }
}

/** An address or a CIDR block; with `names`, a host name too (forward sites resolve it per session). */
export function destinationEntry(value: unknown, names: boolean): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  if (names && isHostName(value)) return undefined;
  const [address, bits, extra] = value.split('/');
  if (extra === undefined && isIp(address)) {
    const max = address.includes(':') ? 128 : 32;
    if (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max)) return undefined;
  }
  return `${JSON.stringify(value)} is not an address or a CIDR block${names ? ' or a host name' : ''}`;
}

export function assertDestinationList(value: unknown): void {
  if (!Array.isArray(value)) throw new Error('must be a list of addresses, CIDR blocks or host names');
  for (const entry of value) {
    const problem = destinationEntry(entry, true);
    if (problem !== undefined) throw new Error(problem);
  }
}

/** `21`, or `"lo-hi"`: the destination ports a forward or transparent site may connect to. */
export function parsePortSpec(value: unknown): { min: number; max: number } | undefined {
  const valid = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (typeof value === 'number') return valid(value) ? { min: value, max: value } : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value);
  if (m === null) return undefined;
  const min = Number(m[1]);
  const max = Number(m[2] ?? m[1]);
  return valid(min) && valid(max) && min <= max ? { min, max } : undefined;
}

export function assertPortSpecList(value: unknown): void {
  if (!Array.isArray(value) || value.length === 0) throw new Error('must be a non-empty list of ports (21) or ranges ("2000-2100")');
  for (const spec of value) {
    if (parsePortSpec(spec) === undefined) throw new Error(`${JSON.stringify(spec)} is not a port from 1 to 65535 or a range "lo-hi"`);
  }
}

export const MIN_RANGE_PORT = 1024;

export function assertRangePort(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < MIN_RANGE_PORT || (value as number) > 65535) {
    throw new Error(`must be an integer port from ${MIN_RANGE_PORT} to 65535, got ${JSON.stringify(value)}`);
  }
}

export function assertPort(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 65535) {
    throw new Error(`must be an integer port from 0 to 65535, got ${JSON.stringify(value)}`);
  }
}

export function assertPositiveInt(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 1) {
    throw new Error(`must be a positive integer, got ${JSON.stringify(value)}`);
  }
}

export function assertNonNegativeInt(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 0) {
    throw new Error(`must be an integer of 0 or more, got ${JSON.stringify(value)}`);
  }
}

export function assertPercent(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 100) {
    throw new Error(`must be an integer from 1 to 100, got ${JSON.stringify(value)}`);
  }
}

/** Text the gateway will write on a control connection: no CR, LF or NUL, at most 256 characters. */
export function assertLineText(value: unknown): void {
  if (typeof value !== 'string' || /[\r\n\0]/.test(value) || value.length > 256) {
    throw new Error('must be a string of at most 256 characters without CR, LF or NUL');
  }
}

/** `host:port` or `[v6]:port`, or "" for off. */
export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (!isIp(host) || port > 65535) return undefined;
  return { host, port };
}

export function assertListenAddressOrOff(value: unknown): void {
  if (value === '') return;
  if (typeof value !== 'string' || parseListenAddress(value) === undefined) {
    throw new Error(`must be "" (off) or "host:port" ("[v6]:port"), got ${JSON.stringify(value)}`);
  }
}

export function assertCount(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 64) {
    throw new Error(`must be an integer from 0 to 64, got ${JSON.stringify(value)}`);
  }
}

export function assertNice(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 19) {
    throw new Error(`must be an integer from 0 to 19, got ${JSON.stringify(value)}`);
  }
}

/** A nice value that raises a thread above the ordinary priority: -20 to 0. */
export function assertRaisingNice(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < -20 || (value as number) > 0) {
    throw new Error(`must be an integer from -20 to 0, got ${JSON.stringify(value)}`);
  }
}

/** CPU numbers for a thread's affinity: distinct integers from 0 to 1023 ([]: none). */
export function assertCpuList(value: unknown): void {
  const ok = Array.isArray(value) && value.every((c) => Number.isInteger(c) && (c as number) >= 0 && (c as number) <= 1023) && new Set(value).size === value.length;
  if (!ok) throw new Error(`must be a list of distinct CPU numbers from 0 to 1023, got ${JSON.stringify(value)}`);
}

/** A Linux real-time priority (SCHED_RR, SCHED_FIFO): 1 to 99. */
export function assertRealtimePriority(value: unknown): void {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 99) {
    throw new Error(`must be an integer from 1 to 99, got ${JSON.stringify(value)}`);
  }
}

export function assertBooleanOrNull(value: unknown): void {
  if (value !== null && typeof value !== 'boolean') throw new Error(`must be true, false or null, got ${JSON.stringify(value)}`);
}
