/**
 * The kernel plane's pure parts: the nft text of the table and of each
 * pinhole's transaction, `conntrack` lines, and byte counters. The same
 * table is loaded into a real kernel by test/e2e/kernel.e2e.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { flowEnded, parseFlowEvent } from '../../../src/data/nftables/flowEvents.js';
import {
  closeOps,
  countersOps,
  disarmOps,
  finishOps,
  openOps,
  parseCounters,
  payloadBytes,
  renderNft,
  tableScript,
} from '../../../src/data/nftables/ruleset.js';
import { hasElements } from '../../support/nftListing.js';

const KEY4 = { family: 4, peer: '203.0.113.10', address: '203.0.113.1', port: 50000 } as const;
const TARGET4 = { host: '192.0.2.10', port: 40001, source: '192.0.2.1' };
const KEY6 = { family: 6, peer: '2001:db8:1::10', address: '2001:db8:1::1', port: 50001 } as const;
const TARGET6 = { host: '2001:db8:2::10', port: 40002, source: '2001:db8:2::1' };

describe('the table', () => {
  const script = tableScript();

  it('replaces an earlier table of ours in the same transaction and touches no other', () => {
    expect(script.startsWith('add table inet ftp_alg_dp\ndelete table inet ftp_alg_dp\ntable inet ftp_alg_dp {')).toBe(true);
    expect(script).not.toMatch(/flush ruleset|table (ip|ip6|inet) (?!ftp_alg_dp)/);
  });

  it.each([4, 6])('has the maps, the arm set and the counters of IPv%i', (f) => {
    for (const name of [`map pin${f}`, `map snat${f}`, `set arm${f}`, `set orig${f}`, `set reply${f}`]) expect(script).toContain(name);
    expect(script).toContain(`delete @arm${f}`); // consumed in the packet path
  });

  it('never drops a NATed flow (its last segments may come after the elements are gone: a retransmitted FIN)', () => {
    expect(script).not.toMatch(/\bdrop\b/);
  });

  it('DNATs only a SYN (a stray segment of an old flow never takes a pinhole)', () => {
    expect(script).toContain('tcp flags & (syn | ack) == syn ip saddr . ip daddr . tcp dport @arm4 dnat ip to');
  });
});

describe('a pinhole transaction', () => {
  const KEY4_PARTS = [
    { type: 'ipv4_addr', value: '203.0.113.10' },
    { type: 'ipv4_addr', value: '203.0.113.1' },
    { type: 'inet_service', value: 50000 },
  ];

  it('opens with counters and NAT data first and the arm last, as typed element ops', () => {
    expect(openOps(KEY4, TARGET4, 15_000)).toEqual([
      { op: 'add', set: 'orig4', key: KEY4_PARTS },
      { op: 'add', set: 'reply4', key: KEY4_PARTS },
      { op: 'add', set: 'pin4', key: KEY4_PARTS, data: [{ type: 'ipv4_addr', value: '192.0.2.10' }, { type: 'inet_service', value: 40001 }], timeoutMs: 15_000 },
      { op: 'add', set: 'snat4', key: KEY4_PARTS, data: [{ type: 'ipv4_addr', value: '192.0.2.1' }], timeoutMs: 15_000 },
      { op: 'add', set: 'arm4', key: KEY4_PARTS, timeoutMs: 15_000 },
    ]);
  });

  it('renders as nft commands on one line', () => {
    const cmd = renderNft(openOps(KEY4, TARGET4, 15_000));
    expect(cmd).not.toContain('\n');
    expect(cmd.split('; ')).toEqual([
      'add element inet ftp_alg_dp orig4 { 203.0.113.10 . 203.0.113.1 . 50000 }',
      'add element inet ftp_alg_dp reply4 { 203.0.113.10 . 203.0.113.1 . 50000 }',
      'add element inet ftp_alg_dp pin4 { 203.0.113.10 . 203.0.113.1 . 50000 timeout 15000ms : 192.0.2.10 . 40001 }',
      'add element inet ftp_alg_dp snat4 { 203.0.113.10 . 203.0.113.1 . 50000 timeout 15000ms : 192.0.2.1 }',
      'add element inet ftp_alg_dp arm4 { 203.0.113.10 . 203.0.113.1 . 50000 timeout 15000ms }',
    ]);
  });

  it('closes whether or not the kernel consumed the arm: each element re-added (a no-op if present), then deleted', () => {
    const ops = closeOps(KEY6, TARGET6);
    expect(ops.map((e) => `${e.op} ${e.set}`)).toEqual([
      ...['arm6', 'pin6', 'snat6', 'orig6', 'reply6'].map((s) => `add ${s}`),
      ...['arm6', 'pin6', 'snat6', 'orig6', 'reply6'].map((s) => `delete ${s}`),
    ]);
    expect(ops.slice(5).every((e) => e.data === undefined && e.timeoutMs === undefined)).toBe(true);
    const parts = renderNft(ops).split('; ');
    expect(parts[0]).toBe('add element inet ftp_alg_dp arm6 { 2001:db8:1::10 . 2001:db8:1::1 . 50001 timeout 1000ms }');
    expect(parts[1]).toBe('add element inet ftp_alg_dp pin6 { 2001:db8:1::10 . 2001:db8:1::1 . 50001 timeout 1000ms : 2001:db8:2::10 . 40002 }');
    expect(parts[3]).toBe('add element inet ftp_alg_dp orig6 { 2001:db8:1::10 . 2001:db8:1::1 . 50001 }'); // counters never time out
    expect(parts.slice(5)).toEqual(
      ['arm6', 'pin6', 'snat6', 'orig6', 'reply6'].map((s) => `delete element inet ftp_alg_dp ${s} { 2001:db8:1::10 . 2001:db8:1::1 . 50001 }`),
    );
  });

  it('disarms alone: the arm deleted in a transaction of its own (it fails once a SYN consumed the arm)', () => {
    expect(renderNft(disarmOps(KEY4))).toBe('delete element inet ftp_alg_dp arm4 { 203.0.113.10 . 203.0.113.1 . 50000 }');
  });

  it('reads both counters with get element, orig then reply', () => {
    expect(renderNft(countersOps(KEY4))).toBe(
      'get element inet ftp_alg_dp orig4 { 203.0.113.10 . 203.0.113.1 . 50000 }; get element inet ftp_alg_dp reply4 { 203.0.113.10 . 203.0.113.1 . 50000 }',
    );
  });

  it('finishes a used pinhole in one transaction: the counters read, then the removal', () => {
    expect(finishOps(KEY4, TARGET4)).toEqual([...countersOps(KEY4), ...closeOps(KEY4, TARGET4)]);
  });
});

describe('byte counters', () => {
  const set = (name: string, packets: number, bytes: number) => [
    'table inet ftp_alg_dp {',
    `\tset ${name} {`,
    `\t\telements = { 203.0.113.10 . 203.0.113.1 . 50000 counter packets ${packets} bytes ${bytes} }`,
    '\t}',
    '}',
  ];
  const answer = [...set('orig4', 11, 5580), ...set('reply4', 9, 100476)];

  it('parses packets and bytes of each element read, in order; none when the answer has none', () => {
    expect(parseCounters(answer)).toEqual([
      { packets: 11, bytes: 5580 },
      { packets: 9, bytes: 100476 },
    ]);
    expect(parseCounters([])).toEqual([]);
  });

  it('takes the IP and TCP headers off (measured: 100 000 bytes of payload in 9 segments)', () => {
    expect(payloadBytes(4, { packets: 9, bytes: 100476 })).toBe(100_000);
    expect(payloadBytes(4, { packets: 11, bytes: 5580 })).toBe(5_000);
    expect(payloadBytes(6, { packets: 0, bytes: 0 })).toBe(0);
    expect(payloadBytes(4, { packets: 1, bytes: 40 })).toBe(0); // never negative
  });

  // The e2e suites assert an empty table through this test helper: it must see an element when there is one.
  it('test/support/nftListing.ts hasElements sees elements in a listing', () => {
    expect(hasElements(answer.join('\n'))).toBe(true);
    expect(hasElements('table inet ftp_alg_dp {\n\tset arm4 {\n\t}\n}')).toBe(false);
  });
});

describe('conntrack lines', () => {
  const rows: [string, string, { type: string; state: string; orig: object; reply: object } | undefined][] = [
    [
      'a new NATed flow',
      '    [NEW] tcp      6 120 SYN_SENT src=203.0.113.10 dst=203.0.113.1 sport=46340 dport=50000 [UNREPLIED] src=192.0.2.10 dst=192.0.2.1 sport=6000 dport=46340 id=3571714861',
      {
        type: 'NEW',
        state: 'SYN_SENT',
        orig: { src: '203.0.113.10', dst: '203.0.113.1', sport: 46340, dport: 50000 },
        reply: { src: '192.0.2.10', dst: '192.0.2.1', sport: 6000, dport: 46340 },
      },
    ],
    [
      'both FINs seen',
      ' [UPDATE] tcp      6 120 TIME_WAIT src=203.0.113.10 dst=203.0.113.1 sport=46340 dport=50000 src=192.0.2.10 dst=192.0.2.1 sport=6000 dport=46340 [ASSURED] id=3571714861',
      { type: 'UPDATE', state: 'TIME_WAIT', orig: { sport: 46340 }, reply: { sport: 6000 } },
    ],
    [
      'a destroyed flow with counters between the tuples',
      '[DESTROY] tcp      6 120 CLOSE src=203.0.113.10 dst=203.0.113.1 sport=46348 dport=50000 packets=1 bytes=60 [UNREPLIED] src=203.0.113.1 dst=203.0.113.10 sport=50000 dport=46348 packets=1 bytes=40 id=4225418338',
      { type: 'DESTROY', state: 'CLOSE', orig: { dport: 50000 }, reply: { src: '203.0.113.1', dport: 46348 } },
    ],
    [
      'IPv6, normalised',
      '    [NEW] tcp      6 120 SYN_SENT src=2001:db8:1:0::10 dst=2001:db8:1::1 sport=1 dport=50001 [UNREPLIED] src=2001:db8:2::10 dst=2001:db8:2::1 sport=2 dport=1 id=1',
      { type: 'NEW', state: 'SYN_SENT', orig: { src: '2001:db8:1::10' }, reply: { src: '2001:db8:2::10' } },
    ],
    [
      'a line of conntrack -L (reads as NEW)',
      'tcp      6 431999 ESTABLISHED src=203.0.113.10 dst=203.0.113.1 sport=1 dport=50000 src=192.0.2.10 dst=192.0.2.1 sport=2 dport=1 [ASSURED] mark=0 use=1',
      { type: 'NEW', state: 'ESTABLISHED', orig: { dport: 50000 }, reply: { src: '192.0.2.10' } },
    ],
    ['udp', '    [NEW] udp      17 30 src=203.0.113.10 dst=203.0.113.1 sport=1 dport=2 [UNREPLIED] src=203.0.113.1 dst=203.0.113.10 sport=2 dport=1', undefined],
    ['one tuple only', '    [NEW] tcp      6 120 SYN_SENT src=203.0.113.10 dst=203.0.113.1 sport=1 dport=2', undefined],
    ['a bad address', '    [NEW] tcp      6 120 SYN_SENT src=nope dst=203.0.113.1 sport=1 dport=2 src=a dst=b sport=2 dport=1', undefined],
    ['the banner', 'conntrack v1.4.7 (conntrack-tools): 3 flow events have been shown.', undefined],
    ['empty', '', undefined],
  ];

  it.each(rows)('%s', (_name, line, expected) => {
    const e = parseFlowEvent(line);
    if (expected === undefined) expect(e).toBeUndefined();
    else expect(e).toMatchObject(expected);
  });

  it('a flow has ended at TIME_WAIT, CLOSE or DESTROY, not before', () => {
    const at = (type: string, state: string) => parseFlowEvent(`[${type}] tcp 6 1 ${state} src=192.0.2.1 dst=192.0.2.2 sport=1 dport=2 src=192.0.2.2 dst=192.0.2.1 sport=2 dport=1`);
    expect(['ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK'].map((s) => flowEnded(at('UPDATE', s) as never))).toEqual([false, false, false, false]);
    expect(['TIME_WAIT', 'CLOSE'].map((s) => flowEnded(at('UPDATE', s) as never))).toEqual([true, true]);
    expect(flowEnded(at('DESTROY', '') as never)).toBe(true);
  });

  it('addresses come out normalised whatever their spelling, and a bad one never does, also once the cache of normalised addresses overflowed', () => {
    const src = (a: string) => parseFlowEvent(`[NEW] tcp 6 120 SYN_SENT src=${a} dst=2001:db8::2 sport=1 dport=2 src=2001:db8::2 dst=${a} sport=2 dport=1`)?.orig.src;
    const spellings = () => [src('2001:DB8:0::1'), src('2001:db8::1'), src('::ffff:192.0.2.1'), src('not-an-address')];
    expect(spellings()).toEqual(['2001:db8::1', '2001:db8::1', '192.0.2.1', undefined]);
    for (let i = 0; i < 5000; i++) src(`2001:db8::${i.toString(16)}`);
    expect(spellings()).toEqual(['2001:db8::1', '2001:db8::1', '192.0.2.1', undefined]);
  });
});
