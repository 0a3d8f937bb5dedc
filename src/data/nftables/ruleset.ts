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
 * - `orig4`/`reply4` (and v6) count the bytes of each direction of the flow.
 * Every element but the counters has the accept deadline as its timeout.
 * A flow outlives its elements: conntrack keeps its NAT until the flow is
 * gone (a retransmitted FIN after TIME_WAIT must still pass), so nothing
 * here drops a NATed flow; a flow an earlier run left is cut at start.
 */
import type { Family } from '../../common/address.js';

export const TABLE = 'ftp_alg_dp';
const T = `inet ${TABLE}`;

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

function keyText(k: PinholeKey): string {
  return `${k.peer} . ${k.address} . ${k.port}`;
}

/** One transaction: counters, NAT data, then the arm that makes it live. */
export function openCommand(k: PinholeKey, t: PinholeTarget, timeoutMs: number): string {
  const key = keyText(k);
  const f = k.family;
  return [
    `add element ${T} orig${f} { ${key} }`,
    `add element ${T} reply${f} { ${key} }`,
    `add element ${T} pin${f} { ${key} timeout ${timeoutMs}ms : ${t.host} . ${t.port} }`,
    `add element ${T} snat${f} { ${key} timeout ${timeoutMs}ms : ${t.source} }`,
    `add element ${T} arm${f} { ${key} timeout ${timeoutMs}ms }`,
  ].join('; ');
}

/**
 * One transaction that removes every element of a pinhole whether or not the
 * kernel already consumed the arm or timed elements out: each element is
 * (re)added, which is a no-op when present, then deleted.
 */
export function closeCommand(k: PinholeKey, t: PinholeTarget): string {
  const key = keyText(k);
  const f = k.family;
  const parts: string[] = [];
  const elements: [string, string][] = [
    [`arm${f}`, `${key} timeout 1s`],
    [`pin${f}`, `${key} timeout 1s : ${t.host} . ${t.port}`],
    [`snat${f}`, `${key} timeout 1s : ${t.source}`],
    [`orig${f}`, key],
    [`reply${f}`, key],
  ];
  for (const [set, element] of elements) parts.push(`add element ${T} ${set} { ${element} }`);
  for (const [set] of elements) parts.push(`delete element ${T} ${set} { ${key} }`);
  return parts.join('; ');
}

/** Both counters of a pinhole in one command line: the answer holds orig's, then reply's. */
export function countersCommand(k: PinholeKey): string {
  return (['orig', 'reply'] as const).map((d) => `get element ${T} ${d}${k.family} { ${keyText(k)} }`).join('; ');
}

/**
 * The end of a used pinhole in one round trip: nft answers the reads at once
 * and commits the removal after them, so the counters are the final ones.
 */
export function finishCommand(k: PinholeKey, t: PinholeTarget): string {
  return `${countersCommand(k)}; ${closeCommand(k, t)}`;
}

export interface Counter {
  readonly packets: number;
  readonly bytes: number;
}

/** The orig and reply counters of a `countersCommand` answer; zero where absent. */
export function parseCounters(lines: readonly string[]): { orig: Counter; reply: Counter } {
  const found = lines.flatMap((line) => {
    const m = /counter packets (\d+) bytes (\d+)/.exec(line);
    return m === null ? [] : [{ packets: Number(m[1]), bytes: Number(m[2]) }];
  });
  const none = { packets: 0, bytes: 0 };
  return { orig: found[0] ?? none, reply: found[1] ?? none };
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
