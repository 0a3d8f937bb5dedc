/**
 * The netlink bytes of the kernel plane's element operations, against what
 * nft 1.0.6 sends for the same commands and what kernel 6.18 answers
 * (captured with `strace -e trace=sendmsg -e write=3 nft '...'` and from a
 * RawNetlinkSocket in a scratch network namespace). No socket here: the
 * driver is exercised against a real kernel by test/e2e/kernel.e2e.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  ackErrno,
  decodeAttrs,
  decodeElementCounter,
  decodeMessages,
  encodeElementMessage,
  encodePart,
  encodeTransaction,
  type NetlinkMessage,
} from '../../../src/data/nftables/nfNetlink.js';
import { address, closeOps, countersOps, type ElementOp, finishOps, openOps, port, probeOps } from '../../../src/data/nftables/ruleset.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const KEY4 = [address(4, '203.0.113.10'), address(4, '203.0.113.1'), port(50000)];
const KEY6 = [address(6, '2001:db8:1::10'), address(6, '2001:db8:1::1'), port(50001)];

/** Whole datagrams nft 1.0.6 sent (batch begin, the element message, batch end). */
const NFT_SENT: [string, ElementOp, string][] = [
  [
    'add element inet ftp_alg_dp pin4 { 203.0.113.10 . 203.0.113.1 . 50000 timeout 15000ms : 192.0.2.10 . 40001 }',
    { op: 'add', set: 'pin4', key: KEY4, data: [address(4, '192.0.2.10'), port(40001)], timeoutMs: 15_000 },
    `140000001000010000000000000000000000000a 700000000c0a01040100000000000000010000000f0001006674705f616c675f6470000009000200
     70696e3400000000080004000000000138000380340001800c0004000000000000003a981400018010000100cb00710acb007101c3500000
     100002800c000100c000020a9c410000 140000001100010002000000000000000000000a`,
  ],
  [
    'add element inet ftp_alg_dp snat6 { 2001:db8:1::10 . 2001:db8:1::1 . 50001 timeout 1000ms : 2001:db8:2::1 }',
    { op: 'add', set: 'snat6', key: KEY6, data: [address(6, '2001:db8:2::1')], timeoutMs: 1_000 },
    `140000001000010000000000000000000000000a 900000000c0a01040100000000000000010000000f0001006674705f616c675f647000000a000200
     736e617436000000080004000000000758000380540001800c00040000000000000003e82c0001802800010020010db8000100000000000000
     00001020010db8000100000000000000000001c3510000180002801400010020010db8000200000000000000000001
     140000001100010002000000000000000000000a`,
  ],
  [
    'delete element inet ftp_alg_dp orig4 { 203.0.113.10 . 203.0.113.1 . 50000 }',
    { op: 'delete', set: 'orig4', key: KEY4 },
    `140000001000010000000000000000000000000a 4c0000000e0a01000100000000000000010000000f0001006674705f616c675f647000000a000200
     6f726967340000001c000380180001801400018010000100cb00710acb007101c3500000 140000001100010002000000000000000000000a`,
  ],
];

/** What the kernel answered a `get` of orig6 (absent) and reply6 (counter packets 9 bytes 100476), and a delete of a missing element. */
const KERNEL_ANSWERS = {
  getMissing: hex(
    `78000000020000006400000005230008feffffff640000000d0a05006400000000000000010000000f0001006674705f616c675f647000000a000200
     6f7269673600000034000380300001802c0001802800010020010db800010000000000000000001020010db8000100000000000000000001c3510000`,
  ),
  getCounter: hex(
    `900000000c0a0000650000000523000801000fb20f0001006674705f616c675f647000000b0002007265706c79360000600003005c0001002c000100
     2800010020010db800010000000000000000001020010db8000100000000000000000001c35100002c0007000c000100636f756e746572001c0002
     000c000100000000000001887c0c0002000000000000000009`,
  ),
  ack: hex('2400000002000001650000000523000800000000640000000d0a05006500000000000000'),
  deleteMissing: hex(
    `60000000020000006700000005230008feffffff4c0000000e0a05006700000000000000010000000f0001006674705f616c675f647000000900
     020061726d34000000001c000380180001801400018010000100cb00710acb00710100010000`,
  ),
};

const attrsOf = (m: NetlinkMessage) => decodeAttrs(m.payload.subarray(4));
const NFTA_SET_ELEM_LIST_SET_ID = 4;

describe('element messages, against nft 1.0.6', () => {
  it.each(NFT_SENT)('%s', (_cmd, op, sent) => {
    const [begin, nftMsg, end] = decodeMessages(hex(sent));
    expect([begin?.type, end?.type]).toEqual([0x10, 0x11]);
    const ours = decodeMessages(encodeElementMessage('ftp_alg_dp', op, 7));
    expect(ours).toHaveLength(1);
    const mine = ours[0] as NetlinkMessage;
    const theirs = nftMsg as NetlinkMessage;
    expect(mine.type).toBe(theirs.type);
    expect(mine.seq).toBe(7);
    // nft asks no ACK (it learns of errors alone, then waits for the batch end); ours does, to know each one is done.
    expect(mine.flags).toBe(theirs.flags | 0x4);
    expect(mine.payload.subarray(0, 4)).toEqual(theirs.payload.subarray(0, 4)); // nfgenmsg: inet, v0
    // Same table, set and element bytes; nft also names the set's id, which an existing set does not need.
    expect(attrsOf(mine)).toEqual(attrsOf(theirs).filter(([t]) => t !== NFTA_SET_ELEM_LIST_SET_ID));
  });
});

describe('parts: each padded to 4 bytes', () => {
  const rows: [string, Parameters<typeof encodePart>[0], string][] = [
    ['an IPv4 address', address(4, '203.0.113.10'), 'cb00710a'],
    ['an IPv6 address', address(6, '2001:db8::1'), '20010db8000000000000000000000001'],
    ['a port, big-endian then two zero bytes', port(50000), 'c3500000'],
    ['the lowest port', port(1), '00010000'],
    ['the highest port', port(65535), 'ffff0000'],
  ];
  it.each(rows)('%s', (_name, part, bytes) => {
    expect(encodePart(part).toString('hex')).toBe(bytes);
  });

  it('refuses a part that is not its type (a bug of ours, never sent)', () => {
    expect(() => encodePart({ type: 'ipv4_addr', value: '2001:db8::1' })).toThrow('ipv4_addr');
    expect(() => encodePart({ type: 'ipv6_addr', value: '192.0.2.1' })).toThrow('ipv6_addr');
    expect(() => encodePart(port(65536))).toThrow('port');
    expect(() => encodePart(port(1.5))).toThrow('port');
  });

  it('an address met before is still checked against its type, and still right after the cache of parsed addresses overflowed', () => {
    expect(encodePart(address(4, '198.51.100.7')).toString('hex')).toBe('c6336407');
    expect(() => encodePart({ type: 'ipv6_addr', value: '198.51.100.7' })).toThrow('ipv6_addr');
    for (let i = 0; i < 5000; i++) encodePart(address(6, `2001:db8::${i.toString(16)}`));
    expect(encodePart(address(4, '198.51.100.7')).toString('hex')).toBe('c6336407');
    expect(encodePart(address(6, '2001:db8::1387')).toString('hex')).toBe('20010db8000000000000000000001387');
  });
});

describe('transactions', () => {
  const seqFrom = (n: number) => () => n++;
  const TARGET = { host: '192.0.2.10', port: 40001, source: '192.0.2.1' };
  const KEY = { family: 4, peer: '203.0.113.10', address: '203.0.113.1', port: 50000 } as const;

  it('writes are one batch: begin, one message per op in order, end; only the last asks for an ACK (an error comes unasked, before it)', () => {
    const [d, more] = encodeTransaction('ftp_alg_dp', openOps(KEY, TARGET, 15_000), seqFrom(10));
    expect(more).toBeUndefined();
    const msgs = decodeMessages(d?.bytes ?? Buffer.alloc(0));
    expect(msgs.map((m) => [m.type, m.seq])).toEqual([[0x10, 10], ...[11, 12, 13, 14, 15].map((s) => [0x0a0c, s]), [0x11, 16]]);
    expect(msgs[0]?.payload.toString('hex')).toBe('0000000a'); // AF_UNSPEC, v0, res_id NFNL_SUBSYS_NFTABLES
    expect(d).toMatchObject({ seqs: [10, 11, 12, 13, 14, 15, 16], acked: [15], gets: [] });
    expect(msgs.slice(1, -1).map((m) => m.flags)).toEqual([0x401, 0x401, 0x401, 0x401, 0x405]); // REQUEST|CREATE, the last |ACK
    const sets = msgs.slice(1, -1).map((m) => attrsOf(m).find(([t]) => t === 2)?.[1].toString('latin1'));
    expect(sets).toEqual(['orig4\0', 'reply4\0', 'pin4\0', 'snat4\0', 'arm4\0']);
  });

  it('a close is one batch of adds then deletes; deletes carry no flags, and only the last one ACK', () => {
    const [d] = encodeTransaction('ftp_alg_dp', closeOps(KEY, TARGET), seqFrom(1));
    const msgs = decodeMessages(d?.bytes ?? Buffer.alloc(0)).slice(1, -1);
    expect(msgs.map((m) => [m.type, m.flags])).toEqual([...Array(5).fill([0x0a0c, 0x401]), ...Array(4).fill([0x0a0e, 0x1]), [0x0a0e, 0x5]]);
  });

  it('a finish reads first (GETSETELEM, not batched), then commits the removal in a batch', () => {
    const [reads, writes, more] = encodeTransaction('ftp_alg_dp', finishOps(KEY, TARGET), seqFrom(100));
    expect(more).toBeUndefined();
    expect(decodeMessages(reads?.bytes ?? Buffer.alloc(0)).map((m) => [m.type, m.flags, m.seq])).toEqual([
      [0x0a0d, 0x5, 100],
      [0x0a0d, 0x5, 101],
    ]);
    expect(reads).toMatchObject({ acked: [100, 101], gets: [100, 101] });
    expect(writes?.seqs).toEqual([102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113]); // begin, 10 elements, end
    expect(writes?.acked).toEqual([112]); // the batch's last element message
    expect(writes?.gets).toEqual([]);
    expect(countersOps(KEY).every((e) => e.op === 'get')).toBe(true);
  });

  it('sequence numbers are whole u32s up to 2^32 - 1', () => {
    const given = [0xfffffffe, 0xffffffff, 0, 1];
    const [d] = encodeTransaction('ftp_alg_dp', probeOps(), () => given.shift() as number);
    expect(decodeMessages(d?.bytes ?? Buffer.alloc(0)).map((m) => m.seq)).toEqual([0xfffffffe, 0xffffffff, 0, 1]);
  });
});

describe("the kernel's answers", () => {
  it('an ACK is errno 0; an error its errno, with the sequence number of the message it answers', () => {
    const [ack] = decodeMessages(KERNEL_ANSWERS.ack);
    expect([ack?.seq, ackErrno(ack as NetlinkMessage)]).toEqual([0x65, 0]);
    const [missing] = decodeMessages(KERNEL_ANSWERS.deleteMissing);
    expect([missing?.seq, ackErrno(missing as NetlinkMessage)]).toEqual([0x67, 2]); // ENOENT
    const [getMissing] = decodeMessages(KERNEL_ANSWERS.getMissing);
    expect(ackErrno(getMissing as NetlinkMessage)).toBe(2);
  });

  it("reads the counter of a get's element; none in an ACK or an error", () => {
    const [answer] = decodeMessages(KERNEL_ANSWERS.getCounter);
    expect(answer?.seq).toBe(0x65);
    expect(decodeElementCounter(answer as NetlinkMessage)).toEqual({ packets: 9, bytes: 100476 });
    expect(decodeElementCounter(decodeMessages(KERNEL_ANSWERS.ack)[0] as NetlinkMessage)).toBeUndefined();
    expect(decodeElementCounter(decodeMessages(KERNEL_ANSWERS.getMissing)[0] as NetlinkMessage)).toBeUndefined();
  });

  it('several messages in one datagram are read in order', () => {
    const both = Buffer.concat([KERNEL_ANSWERS.getCounter, KERNEL_ANSWERS.ack]);
    expect(decodeMessages(both).map((m) => m.type)).toEqual([0x0a0c, 2]);
  });

  it.each(Object.entries(KERNEL_ANSWERS))('%s cut at every byte offset: never throws, never a message it does not hold', (_name, bytes) => {
    for (let cut = 0; cut < bytes.length; cut++) {
      const msgs = decodeMessages(bytes.subarray(0, cut));
      expect(msgs).toEqual([]);
      const junk = Buffer.concat([bytes.subarray(0, cut), Buffer.alloc(3, 0xff)]);
      expect(() => decodeMessages(junk).map((m) => [ackErrno(m), decodeElementCounter(m)])).not.toThrow();
    }
  });

  it('a counter whose fields are cut short reads as none', () => {
    const [answer] = decodeMessages(KERNEL_ANSWERS.getCounter);
    const payload = Buffer.from((answer as NetlinkMessage).payload);
    payload.writeUInt16LE(0x0b, payload.length - 12); // PACKETS attribute claims 7 bytes: not a u64
    expect(decodeElementCounter({ ...(answer as NetlinkMessage), payload })).toBeUndefined();
  });
});
