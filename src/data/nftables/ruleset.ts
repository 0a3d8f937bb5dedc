/**
 * The gateway's own nftables table, as text for `nft`: pure, no I/O.
 *
 * A pinhole is keyed by (expected peer . pinhole address . pinhole port):
 * - `pin4`/`pin6` map the key to the target (address . port) for DNAT;
 * - `snat4`/`snat6` map it to the source the far leg must come from (the
 *   private address of the upstream control connection, or the external
 *   address the client sees);
 * - `arm4`/`arm6` hold the key until the first SYN uses it: the `oneshot`
 *   chain deletes it in the packet path, so a second connection finds no
 *   DNAT, reaches the edge itself and is refused (RST);
 * - `orig4`/`reply4` (and v6) count the bytes of each direction of the flow;
 * - `fwd4`/`fwd6` (transparent sites' direct passive data, no NAT) hold
 *   (client . server . port) until the client's first SYN: the `gate`
 *   chain consumes the element and sets DIRECT_MARK on the flow, which the
 *   edge's own forward chain accepts (one flow, then nothing).
 * Every element but the counters has the accept deadline as its timeout.
 * A flow outlives its elements: conntrack keeps its NAT until the flow is
 * gone (a retransmitted FIN after TIME_WAIT must still pass), so nothing
 * here drops a NATed flow; a flow an earlier run left is cut at start.
 */
import type { Family } from '../../common/address.js';

export const TABLE = 'ftp_alg_dp';
const T = `inet ${TABLE}`;
/**
 * The ct mark bit of a flow admitted by a forward entry (fwd4/fwd6), set
 * with `or` (other bits stay the operator's). A forward chain with `policy
 * drop` lets those flows through with `ct mark & 0x10000000 == 0x10000000 accept`.
 */
export const DIRECT_MARK = 0x10000000;
export const DIRECT_MARK_HEX = `0x${DIRECT_MARK.toString(16).padStart(8, '0')}`;

export interface PinholeKey {
  readonly family: Family;
  /** The only address that may connect. */
  readonly peer: string;
  /** The edge address the peer connects to. */
  readonly address: string;
  readonly port: number;
}

export interface PinholeTarget {
  readonly host: string;
  readonly port: number;
  /** Source address of the forwarded leg (SNAT). */
  readonly source: string;
}

function addrType(f: Family): string {
  return f === 4 ? 'ipv4_addr' : 'ipv6_addr';
}

function familySets(f: Family): string {
  const a = addrType(f);
  const key = `${a} . ${a} . inet_service`;
  return [
    `\tmap pin${f} { type ${key} : ${a} . inet_service; flags timeout; size 65535; }`,
    `\tmap snat${f} { type ${key} : ${a}; flags timeout; size 65535; }`,
    `\tset arm${f} { type ${key}; flags timeout; size 65535; }`,
    `\tset orig${f} { type ${key}; flags timeout; size 65535; counter; }`,
    `\tset reply${f} { type ${key}; flags timeout; size 65535; counter; }`,
    `\tset fwd${f} { type ${key}; flags timeout; size 65535; }`,
  ].join('\n');
}

function ctKey(f: Family): string {
  const ip = f === 4 ? 'ip' : 'ip6';
  return `ct original ${ip} saddr . ct original ${ip} daddr . ct original proto-dst`;
}

function rules(f: Family): { pre: string; oneshot: string; post: string; gate: string } {
  const ip = f === 4 ? 'ip' : 'ip6';
  const key = `${ip} saddr . ${ip} daddr . tcp dport`;
  return {
    // Only a SYN opens a flow: a stray segment of an old flow never takes a pinhole.
    pre: `\t\ttcp flags & (syn | ack) == syn ${key} @arm${f} dnat ${ip} to ${key} map @pin${f}`,
    oneshot: `\t\tct state new ct status dnat meta l4proto tcp delete @arm${f} { ${ip} saddr . ct original ${ip} daddr . ct original proto-dst }`,
    post: `\t\tct status dnat meta l4proto tcp snat ${ip} to ${ctKey(f)} map @snat${f}`,
    gate: [
      // A forward entry admits the first SYN of exactly its flow and is gone; the mark carries the flow on.
      `\t\ttcp flags & (syn | ack) == syn ct state new ${key} @fwd${f} ct mark set ct mark or ${DIRECT_MARK_HEX} delete @fwd${f} { ${key} } accept`,
      `\t\tct status dnat meta l4proto tcp ct direction original ${ctKey(f)} @orig${f} accept`,
      `\t\tct status dnat meta l4proto tcp ct direction reply ${ctKey(f)} @reply${f} accept`,
    ].join('\n'),
  };
}

/** The whole table, replacing any earlier one in the same transaction (a crash leaves nothing that forwards). */
export function tableScript(): string {
  const [r4, r6] = [rules(4), rules(6)];
  return [
    `add table ${T}`,
    `delete table ${T}`,
    `table ${T} {`,
    familySets(4),
    familySets(6),
    '\tchain pre {',
    '\t\ttype nat hook prerouting priority dstnat - 10; policy accept;',
    r4.pre,
    r6.pre,
    '\t}',
    '\tchain oneshot {',
    // After NAT has bound (a nat chain is terminal): the port is already rewritten, hence ct original.
    '\t\ttype filter hook prerouting priority dstnat + 10; policy accept;',
    r4.oneshot,
    r6.oneshot,
    '\t}',
    '\tchain post {',
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;',
    r4.post,
    r6.post,
    '\t}',
    '\tchain gate {',
    '\t\ttype filter hook forward priority filter - 10; policy accept;',
    r4.gate,
    r6.gate,
    '\t}',
    '}',
    '',
  ].join('\n');
}

export function deleteTableCommand(): string {
  return `delete table ${T}`;
}

/**
 * One component of an element's key or data, typed as the set declares it
 * (nft's type names). The nft text and the netlink bytes are both rendered
 * from these: an address as its text, a port as its number.
 */
export type Part =
  | { readonly type: 'ipv4_addr'; readonly value: string }
  | { readonly type: 'ipv6_addr'; readonly value: string }
  | { readonly type: 'inet_service'; readonly value: number };

/**
 * One operation on one element of a set or map of the table. `add` of an
 * element that exists is a no-op (never an error); `delete` of one that does
 * not exist fails the transaction; `get` reads the element (its counter).
 * A list of them is one transaction, applied in order, all or nothing.
 */
export interface ElementOp {
  readonly op: 'add' | 'delete' | 'get';
  readonly set: string;
  readonly key: readonly Part[];
  /** A map's value; only on `add` to a map. */
  readonly data?: readonly Part[];
  /** Only on `add` to a set with `flags timeout`. */
  readonly timeoutMs?: number;
}

export function address(family: Family, value: string): Part {
  return family === 4 ? { type: 'ipv4_addr', value } : { type: 'ipv6_addr', value };
}

export function port(value: number): Part {
  return { type: 'inet_service', value };
}

function keyParts(k: PinholeKey): Part[] {
  return [address(k.family, k.peer), address(k.family, k.address), port(k.port)];
}

/** Timeout of the elements a close re-adds before deleting them (they never outlive the transaction). */
const READD_TIMEOUT_MS = 1_000;

/** A pinhole's elements, in the order they go live: counters, NAT data, then the arm that makes it live. */
function pinholeElements(k: PinholeKey, t: PinholeTarget, timeoutMs: number): ElementOp[] {
  const key = keyParts(k);
  const f = k.family;
  return [
    { op: 'add', set: `orig${f}`, key },
    { op: 'add', set: `reply${f}`, key },
    { op: 'add', set: `pin${f}`, key, data: [address(f, t.host), port(t.port)], timeoutMs },
    { op: 'add', set: `snat${f}`, key, data: [address(f, t.source)], timeoutMs },
    { op: 'add', set: `arm${f}`, key, timeoutMs },
  ];
}

/** One transaction: counters, NAT data, then the arm that makes it live. */
export function openOps(k: PinholeKey, t: PinholeTarget, timeoutMs: number): ElementOp[] {
  return pinholeElements(k, t, timeoutMs);
}

/**
 * One transaction that removes every element of a pinhole whether or not the
 * kernel already consumed the arm or timed elements out: each element is
 * (re)added, which is a no-op when present, then deleted. The arm goes first.
 */
export function closeOps(k: PinholeKey, t: PinholeTarget): ElementOp[] {
  const [orig, reply, pin, snat, arm] = pinholeElements(k, t, READD_TIMEOUT_MS) as [ElementOp, ElementOp, ElementOp, ElementOp, ElementOp];
  const adds = [arm, pin, snat, orig, reply];
  return [...adds, ...adds.map(({ set, key }): ElementOp => ({ op: 'delete', set, key }))];
}

/** A transparent site's direct passive data: (client . server . port) admitted once, within the accept deadline. */
export interface ForwardKey {
  readonly family: Family;
  readonly client: string;
  readonly server: string;
  readonly port: number;
}

function forwardParts(k: ForwardKey): Part[] {
  return [address(k.family, k.client), address(k.family, k.server), port(k.port)];
}

export function forwardOpenOps(k: ForwardKey, timeoutMs: number): ElementOp[] {
  return [{ op: 'add', set: `fwd${k.family}`, key: forwardParts(k), timeoutMs }];
}

/** Removes the entry whether or not the first SYN consumed it (re-added first: a no-op when present). */
export function forwardCloseOps(k: ForwardKey): ElementOp[] {
  const key = forwardParts(k);
  return [
    { op: 'add', set: `fwd${k.family}`, key, timeoutMs: READD_TIMEOUT_MS },
    { op: 'delete', set: `fwd${k.family}`, key },
  ];
}

/** Both counters of a pinhole: the answer holds orig's, then reply's. */
export function countersOps(k: PinholeKey): ElementOp[] {
  const key = keyParts(k);
  return [
    { op: 'get', set: `orig${k.family}`, key },
    { op: 'get', set: `reply${k.family}`, key },
  ];
}

/**
 * The arm removed alone: from its commit no SYN can use the pinhole, and it
 * fails (the element is gone) if the kernel already let one through.
 */
export function disarmOps(k: PinholeKey): ElementOp[] {
  return [{ op: 'delete', set: `arm${k.family}`, key: keyParts(k) }];
}

/**
 * The end of a used pinhole in one round trip: the reads are answered first
 * and the removal committed after them, so the counters are the final ones.
 */
export function finishOps(k: PinholeKey, t: PinholeTarget): ElementOp[] {
  return [...countersOps(k), ...closeOps(k, t)];
}

/**
 * A write the kernel must accept before the plane takes pinholes: an element
 * of no pinhole (port 0 is never in a range) added and removed in one
 * transaction; proves the table, the set and the privilege.
 */
export function probeOps(): ElementOp[] {
  const key = [address(4, '0.0.0.0'), address(4, '0.0.0.0'), port(0)];
  return [
    { op: 'add', set: 'arm4', key, timeoutMs: READD_TIMEOUT_MS },
    { op: 'delete', set: 'arm4', key },
  ];
}

function partText(p: Part): string {
  return String(p.value);
}

function elementText(e: ElementOp): string {
  const key = e.key.map(partText).join(' . ');
  const timeout = e.timeoutMs === undefined ? '' : ` timeout ${e.timeoutMs}ms`;
  const data = e.data === undefined ? '' : ` : ${e.data.map(partText).join(' . ')}`;
  return `${key}${timeout}${data}`;
}

/** A transaction as one line of nft commands (for `nft -i`). */
export function renderNft(ops: readonly ElementOp[]): string {
  return ops.map((e) => `${e.op} element ${T} ${e.set} { ${elementText(e)} }`).join('; ');
}

export interface Counter {
  readonly packets: number;
  readonly bytes: number;
}

/** The counters nft printed for the `get` ops of a transaction, in order. */
export function parseCounters(lines: readonly string[]): Counter[] {
  return lines.flatMap((line) => {
    const m = /counter packets (\d+) bytes (\d+)/.exec(line);
    return m === null ? [] : [{ packets: Number(m[1]), bytes: Number(m[2]) }];
  });
}

/**
 * TCP payload from an element's IP-layer counter: every segment carries an IP
 * header and a TCP header with timestamps (Linux's default), and the SYN's
 * options are 8 bytes longer. An estimate where peers turn timestamps off.
 */
export function payloadBytes(family: Family, counter: { packets: number; bytes: number }): number {
  if (counter.packets === 0) return 0;
  const perPacket = (family === 4 ? 20 : 40) + 32;
  return Math.max(0, counter.bytes - counter.packets * perPacket - 8);
}
