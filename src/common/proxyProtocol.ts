/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt), version 1 (one text
 * line) and version 2 (binary): the header a balancer writes first on a
 * connection to name the client it accepted. Pure and total: `parseProxyHeader`
 * takes the bytes received so far and says "need more", "here is the header
 * and how many bytes it took", or why there is none; it never throws on peer
 * input. `formatProxyHeader` writes either version. Shared by edge/ (the
 * listener reads it, the upstream control connection gets it) and data/ (a
 * data connection to the upstream may get it too).
 */
import ipaddr from 'ipaddr.js';

export type ProxyVersion = 1 | 2;
/** What a listener accepts: one version, or whichever comes. */
export type ProxyAccept = 'v1' | 'v2' | 'any';

export interface ProxyEndpoint {
  readonly address: string;
  readonly port: number;
}

/** The connection the balancer accepted, as it names it (both ends in one family). */
export interface ProxyAddresses {
  readonly family: 4 | 6;
  readonly source: ProxyEndpoint;
  readonly destination: ProxyEndpoint;
}

/** A v2 type-length-value extension (ALPN, authority, CRC32c, vendor data...): kept, never interpreted. */
export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

export interface ProxyHeader {
  readonly version: ProxyVersion;
  /** `local`: the balancer's own connection (a health check); use the socket's real addresses. */
  readonly command: 'proxy' | 'local';
  /** The client's connection; undefined for v1 `UNKNOWN`, v2 `LOCAL`, and v2 families other than TCP over IPv4/IPv6. */
  readonly addresses: ProxyAddresses | undefined;
  readonly tlvs: readonly ProxyTlv[];
}

export type ProxyParse =
  | { readonly kind: 'more' }
  | { readonly kind: 'header'; readonly header: ProxyHeader; readonly consumed: number }
  | { readonly kind: 'refused'; readonly reason: ProxyRefusal };

export type ProxyRefusal =
  /** The first bytes are not the signature of an accepted version (an FTP command, a port scan, TLS...). */
  | 'not-proxy'
  | 'too-long'
  | 'bad-v1'
  | 'bad-version'
  | 'bad-command'
  | 'bad-address'
  | 'bad-length'
  | 'bad-tlv';

/** proxy-protocol.txt 2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses). */
export const MAX_V1_BYTES = 107;
/** The v2 signature, then version/command, family/transport and the length of the rest (2.2). */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;
/**
 * Our bound on a whole v2 header. The address block is at most 216 bytes
 * (AF_UNIX); balancers add a few TLVs (AWS: the VPC endpoint, Azure: the
 * link id, HAProxy: ALPN, authority, unique id, SSL fields). A client
 * certificate in a TLV could exceed it; such a header is refused.
 */
export const MAX_V2_BYTES = 4_096;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_VERSION = 0x2;
const V2_COMMAND = { local: 0x0, proxy: 0x1 } as const;
const V2_FAMILY = { unspec: 0x0, inet: 0x1, inet6: 0x2, unix: 0x3 } as const;
const V2_STREAM = 0x1;
/** Bytes of the address block per family (2.2): two addresses and two ports. */
const V2_ADDRESS_BYTES: Record<number, number> = { [V2_FAMILY.unspec]: 0, [V2_FAMILY.inet]: 12, [V2_FAMILY.inet6]: 36, [V2_FAMILY.unix]: 216 };
const CR = 0x0d;
const LF = 0x0a;

const more: ProxyParse = { kind: 'more' };
const refuse = (reason: ProxyRefusal): ProxyParse => ({ kind: 'refused', reason });

/**
 * Parse the header at the start of `bytes` (everything received so far).
 * `more` means every byte so far could begin an accepted header; bytes after
 * the header (the client's first data) are left for the caller (`consumed`).
 */
export function parseProxyHeader(bytes: Buffer, accept: ProxyAccept = 'any'): ProxyParse {
  const v1 = accept !== 'v2' && startsLike(bytes, V1_PREFIX);
  const v2 = accept !== 'v1' && startsLike(bytes, V2_SIGNATURE);
  if (!v1 && !v2) return refuse('not-proxy');
  if (v1 && v2) return more; // only the empty buffer starts like both
  return v1 ? parseV1(bytes) : parseV2(bytes);
}

/** `bytes` and `prefix` agree on their common length. */
function startsLike(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.subarray(0, n).equals(prefix.subarray(0, n));
}

// ---- version 1 ---------------------------------------------------------------

function parseV1(bytes: Buffer): ProxyParse {
  const window = bytes.subarray(0, MAX_V1_BYTES);
  const lf = window.indexOf(LF);
  if (lf === -1) {
    // Only printable US-ASCII and the final CR may appear in the line.
    const cr = window.indexOf(CR);
    if (cr !== -1 && cr !== window.length - 1) return refuse('bad-v1');
    if (!printable(window.subarray(0, cr === -1 ? window.length : cr))) return refuse('bad-v1');
    return bytes.length >= MAX_V1_BYTES ? refuse('too-long') : more;
  }
  if (lf === 0 || window[lf - 1] !== CR) return refuse('bad-v1');
  const line = window.subarray(0, lf - 1);
  if (!printable(line)) return refuse('bad-v1');
  const header = v1Fields(line.toString('latin1').split(' '));
  return header === undefined ? refuse('bad-v1') : { kind: 'header', header, consumed: lf + 1 };
}

function printable(bytes: Buffer): boolean {
  for (const b of bytes) if (b < 0x20 || b > 0x7e) return false;
  return true;
}

/** `PROXY TCP4|TCP6 src dst sport dport`, or `PROXY UNKNOWN` followed by anything (2.1). */
function v1Fields(fields: string[]): ProxyHeader | undefined {
  const [, protocol, src, dst, sport, dport, ...extra] = fields;
  const header = { version: 1 as const, command: 'proxy' as const, tlvs: [] };
  if (protocol === 'UNKNOWN') return { ...header, addresses: undefined };
  if ((protocol !== 'TCP4' && protocol !== 'TCP6') || extra.length > 0) return undefined;
  const family = protocol === 'TCP4' ? 4 : 6;
  const source = v1Endpoint(src, sport, family);
  const destination = v1Endpoint(dst, dport, family);
  if (source === undefined || destination === undefined) return undefined;
  return { ...header, addresses: { family, source, destination } };
}

function v1Endpoint(address: string | undefined, port: string | undefined, family: 4 | 6): ProxyEndpoint | undefined {
  const text = family === 4 ? v1Ipv4(address) : v1Ipv6(address);
  // Ports in decimal, 0-65535, without leading zeros (the form every sender writes).
  if (text === undefined || port === undefined || !/^(0|[1-9]\d{0,4})$/.test(port) || Number(port) > 65535) return undefined;
  return { address: text, port: Number(port) };
}

function v1Ipv4(text: string | undefined): string | undefined {
  if (text === undefined || !ipaddr.IPv4.isValidFourPartDecimal(text) || /(^|\.)0\d/.test(text)) return undefined;
  return ipaddr.IPv4.parse(text).toString();
}

function v1Ipv6(text: string | undefined): string | undefined {
  if (text === undefined || text.includes('%') || !ipaddr.IPv6.isValid(text)) return undefined;
  return ipaddr.IPv6.parse(text).toRFC5952String();
}

// ---- version 2 ---------------------------------------------------------------

function parseV2(bytes: Buffer): ProxyParse {
  if (bytes.length < V2_FIXED_BYTES) return bytes.length > V2_SIGNATURE.length ? earlyV2(bytes) : more;
  const verCmd = bytes[12] as number;
  const famProto = bytes[13] as number;
  const early = earlyV2(bytes);
  if (early.kind === 'refused') return early;
  const total = V2_FIXED_BYTES + bytes.readUInt16BE(14);
  if (total > MAX_V2_BYTES) return refuse('too-long');
  if (bytes.length < total) return more;
  const block = bytes.subarray(V2_FIXED_BYTES, total);
  const command = (verCmd & 0x0f) === V2_COMMAND.local ? 'local' : 'proxy';
  const family = famProto >> 4;
  const addressBytes = V2_ADDRESS_BYTES[family] ?? 0;
  if (command === 'proxy' && block.length < addressBytes) return refuse('bad-length');
  // LOCAL: the address block, if any, is to be ignored (2.2); TLVs may still follow one.
  const skip = command === 'local' ? Math.min(addressBytes, block.length) : addressBytes;
  const tlvs = v2Tlvs(block.subarray(skip));
  if (tlvs === undefined) return refuse('bad-tlv');
  const stream = (famProto & 0x0f) === V2_STREAM;
  const addresses = command === 'proxy' && stream ? v2Addresses(family, block) : undefined;
  return { kind: 'header', header: { version: 2, command, addresses, tlvs }, consumed: total };
}

/** What can be refused from the 13th and 14th bytes on, before the length is known. */
function earlyV2(bytes: Buffer): ProxyParse {
  const verCmd = bytes[12] as number;
  if (verCmd >> 4 !== V2_VERSION) return refuse('bad-version');
  if ((verCmd & 0x0f) > V2_COMMAND.proxy) return refuse('bad-command');
  if (bytes.length < 14) return more;
  const famProto = bytes[13] as number;
  if (famProto >> 4 > V2_FAMILY.unix || (famProto & 0x0f) > 0x2) return refuse('bad-address');
  return more;
}

function v2Addresses(family: number, block: Buffer): ProxyAddresses | undefined {
  if (family === V2_FAMILY.inet) {
    const address = (at: number) => ipaddr.fromByteArray([...block.subarray(at, at + 4)]).toString();
    return { family: 4, source: { address: address(0), port: block.readUInt16BE(8) }, destination: { address: address(4), port: block.readUInt16BE(10) } };
  }
  if (family === V2_FAMILY.inet6) {
    const address = (at: number) => (ipaddr.fromByteArray([...block.subarray(at, at + 16)]) as ipaddr.IPv6).toRFC5952String();
    return { family: 6, source: { address: address(0), port: block.readUInt16BE(32) }, destination: { address: address(16), port: block.readUInt16BE(34) } };
  }
  return undefined; // UNSPEC or AF_UNIX: the receiver uses the real connection's addresses
}

/** Type (1 byte), length (2 bytes), value; each must fit inside the block. */
function v2Tlvs(bytes: Buffer): ProxyTlv[] | undefined {
  const tlvs: ProxyTlv[] = [];
  for (let at = 0; at < bytes.length; ) {
    if (bytes.length - at < 3) return undefined;
    const length = bytes.readUInt16BE(at + 1);
    if (at + 3 + length > bytes.length) return undefined;
    tlvs.push({ type: bytes[at] as number, value: Buffer.from(bytes.subarray(at + 3, at + 3 + length)) });
    at += 3 + length;
  }
  return tlvs;
}

// ---- writing -----------------------------------------------------------------

/**
 * The header naming `addresses` (undefined: v1 `UNKNOWN`, v2 `PROXY` with an
 * unspecified family) or, with command `local`, the sender's own connection.
 * Addresses must be valid IPs of `family` and ports 0-65535: anything else is
 * our own bug and throws.
 */
export function formatProxyHeader(header: ProxyHeader): Buffer {
  return header.version === 1 ? formatV1(header) : formatV2(header);
}

function formatV1(header: ProxyHeader): Buffer {
  const a = header.addresses;
  if (header.command === 'local' || a === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const text = (e: ProxyEndpoint) => ipaddr.parse(checked(e, a.family)).toString();
  const line = `PROXY TCP${a.family} ${text(a.source)} ${text(a.destination)} ${a.source.port} ${a.destination.port}\r\n`;
  return Buffer.from(line, 'latin1');
}

function formatV2(header: ProxyHeader): Buffer {
  const a = header.command === 'proxy' ? header.addresses : undefined;
  const family = a === undefined ? V2_FAMILY.unspec : a.family === 4 ? V2_FAMILY.inet : V2_FAMILY.inet6;
  const addressBlock = a === undefined ? Buffer.alloc(0) : v2AddressBlock(a);
  const tlvs = header.tlvs.map((t) => {
    const head = Buffer.from([t.type & 0xff, 0, 0]);
    head.writeUInt16BE(t.value.length, 1);
    return Buffer.concat([head, t.value]);
  });
  const rest = Buffer.concat([addressBlock, ...tlvs]);
  if (V2_FIXED_BYTES + rest.length > MAX_V2_BYTES) throw new RangeError(`PROXY v2 header of ${V2_FIXED_BYTES + rest.length} bytes`);
  const fixed = Buffer.alloc(V2_FIXED_BYTES);
  V2_SIGNATURE.copy(fixed);
  fixed[12] = (V2_VERSION << 4) | V2_COMMAND[header.command];
  fixed[13] = a === undefined ? 0 : (family << 4) | V2_STREAM;
  fixed.writeUInt16BE(rest.length, 14);
  return Buffer.concat([fixed, rest]);
}

function v2AddressBlock(a: ProxyAddresses): Buffer {
  const bytes = (e: ProxyEndpoint) => Buffer.from(ipaddr.parse(checked(e, a.family)).toByteArray());
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(a.source.port, 0);
  ports.writeUInt16BE(a.destination.port, 2);
  return Buffer.concat([bytes(a.source), bytes(a.destination), ports]);
}

function checked(e: ProxyEndpoint, family: 4 | 6): string {
  const kind = ipaddr.isValid(e.address) ? ipaddr.parse(e.address).kind() : undefined;
  if (kind !== (family === 4 ? 'ipv4' : 'ipv6') || !Number.isInteger(e.port) || e.port < 0 || e.port > 65535) {
    throw new RangeError(`not a TCP${family} endpoint: ${e.address} ${e.port}`);
  }
  return e.address;
}

/**
 * The addresses of a header for a connection from `source` to `destination`,
 * given as the sockets name them. One family is required: when they differ
 * (an IPv6 client in front of an IPv4 upstream), the IPv4 one is written
 * IPv4-mapped (`::ffff:a.b.c.d`); an IPv4-mapped pair becomes plain IPv4.
 */
export function proxyAddresses(source: ProxyEndpoint, destination: ProxyEndpoint): ProxyAddresses | undefined {
  if (!ipaddr.isValid(source.address) || !ipaddr.isValid(destination.address)) return undefined;
  const src = ipaddr.process(source.address);
  const dst = ipaddr.process(destination.address);
  if (src.kind() === dst.kind()) {
    const text = (a: ipaddr.IPv4 | ipaddr.IPv6) => (a instanceof ipaddr.IPv6 ? a.toRFC5952String() : a.toString());
    return { family: src.kind() === 'ipv4' ? 4 : 6, source: { address: text(src), port: source.port }, destination: { address: text(dst), port: destination.port } };
  }
  const v6 = (a: ipaddr.IPv4 | ipaddr.IPv6) => (a instanceof ipaddr.IPv4 ? a.toIPv4MappedAddress() : a).toRFC5952String();
  return { family: 6, source: { address: v6(src), port: source.port }, destination: { address: v6(dst), port: destination.port } };
}

/** The ends of a connection as a socket names them (a `net.Socket` is one). */
export interface ConnectionEnds {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}

/** The header naming a connection a peer made to us: the peer as source, our end as destination (UNKNOWN if unnamed). */
export function proxyHeaderFor(version: ProxyVersion, connection: ConnectionEnds): Buffer {
  const source = { address: connection.remoteAddress ?? '', port: connection.remotePort ?? 0 };
  const destination = { address: connection.localAddress ?? '', port: connection.localPort ?? 0 };
  return formatProxyHeader({ version, command: 'proxy', addresses: proxyAddresses(source, destination), tlvs: [] });
}
