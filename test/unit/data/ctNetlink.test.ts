/**
 * Conntrack events as ctnetlink delivers them to a subscriber (kernel 6.18,
 * captured from a RawNetlinkSocket in a scratch network namespace: one
 * loopback TCP connection per family, opened, closed, then deleted with
 * encodeDelete), decoded to what flowEvents.ts gives for a `conntrack -E`
 * line. No socket here: test/e2e/kernel.e2e.test.ts runs NetlinkFlowWatch
 * against the kernel.
 */
import { describe, expect, it } from 'vitest';
import { addressKey, decodeFlowEvent, encodeDelete, origDestination } from '../../../src/data/nftables/ctNetlink.js';
import { flowEnded } from '../../../src/data/nftables/flowEvents.js';
import { decodeMessages, type NetlinkMessage } from '../../../src/data/nftables/nfNetlink.js';

const message = (hex: string): NetlinkMessage => decodeMessages(Buffer.from(hex.replace(/\s+/g, ''), 'hex'))[0] as NetlinkMessage;

const V4 = {
  new: message(`c4000000000100060000000000000000020000003400018014000180080001007f000001080002007f0000011c0002800500010006000000
    0600020094a20000060003008c8f00003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200
    8c8f00000600030094a2000008000c00311f163608000300000001880800070000000078300004802c000180050001000100000005000200
    0a000000050003000000000006000400030000000600050000000000`),
  timeWait: message(`c4000000000100000000000000000000020000003400018014000180080001007f000001080002007f0000011c0002800500010006000000
    0600020094a20000060003008c8f00003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200
    8c8f00000600030094a2000008000c00311f1636080003000000018e0800070000000078300004802c000180050001000700000005000200
    0a000000050003000a00000006000400270000000600050023000000`),
  destroy: message(`a400000002010000000000006d184008020000003400018014000180080001007f000001080002007f0000011c0002800500010006000000
    0600020094a20000060003008c8f00003400028014000180080001007f000001080002007f0000011c000280050001000600000006000200
    8c8f00000600030094a2000008000c00311f1636080003000000038e0800070000000077100004800c0001800500010007000000`),
};
const V6 = {
  new: message(`f40000000001000600000000000000000a0000004c0001802c00018014000300000000000000000000000000000000011400040000000000
    0000000000000000000000011c000280050001000600000006000200e466000006000300ad6500004c0002802c0001801400030000000000
    00000000000000000000000114000400000000000000000000000000000000011c000280050001000600000006000200ad65000006000300
    e466000008000c00c1b0532508000300000001880800070000000078300004802c0001800500010001000000050002000a00000005000300
    0000000006000400030000000600050000000000`),
  timeWait: message(`f40000000001000000000000000000000a0000004c0001802c00018014000300000000000000000000000000000000011400040000000000
    0000000000000000000000011c000280050001000600000006000200e466000006000300ad6500004c0002802c0001801400030000000000
    00000000000000000000000114000400000000000000000000000000000000011c000280050001000600000006000200ad65000006000300
    e466000008000c00c1b05325080003000000018e0800070000000078300004802c0001800500010007000000050002000a00000005000300
    0a00000006000400270000000600050023000000`),
  destroy: message(`d40000000201000000000000ae1840080a0000004c0001802c00018014000300000000000000000000000000000000011400040000000000
    0000000000000000000000011c000280050001000600000006000200e466000006000300ad6500004c0002802c0001801400030000000000
    00000000000000000000000114000400000000000000000000000000000000011c000280050001000600000006000200ad65000006000300
    e466000008000c00c1b05325080003000000038e0800070000000077100004800c0001800500010007000000`),
};
const T4 = { src: '127.0.0.1', dst: '127.0.0.1', sport: 38050, dport: 35983 };
const T6 = { src: '::1', dst: '::1', sport: 58470, dport: 44389 };
const reversed = (t: typeof T4) => ({ src: t.dst, dst: t.src, sport: t.dport, dport: t.sport });

describe('conntrack events', () => {
  const rows: [string, NetlinkMessage, object][] = [
    ['IPv4 NEW (NLM_F_CREATE)', V4.new, { type: 'NEW', state: 'SYN_SENT', orig: T4, reply: reversed(T4), id: '824120886' }],
    ['IPv4 UPDATE to TIME_WAIT', V4.timeWait, { type: 'UPDATE', state: 'TIME_WAIT', orig: T4, reply: reversed(T4) }],
    ['IPv4 DESTROY', V4.destroy, { type: 'DESTROY', orig: T4 }],
    ['IPv6 NEW', V6.new, { type: 'NEW', state: 'SYN_SENT', orig: T6, reply: reversed(T6), id: '3249558309' }],
    ['IPv6 UPDATE to TIME_WAIT', V6.timeWait, { type: 'UPDATE', state: 'TIME_WAIT', orig: T6 }],
    ['IPv6 DESTROY', V6.destroy, { type: 'DESTROY', orig: T6 }],
  ];

  it.each(rows)('%s', (_name, m, expected) => {
    expect(decodeFlowEvent(m)).toMatchObject(expected);
  });

  it('a flow has ended at TIME_WAIT and at DESTROY, not at NEW', () => {
    expect([V4.new, V4.timeWait, V4.destroy].map((m) => flowEnded(decodeFlowEvent(m) as never))).toEqual([false, true, true]);
  });

  it("finds a watcher by the original destination's bytes alone", () => {
    expect(origDestination(V4.new)).toEqual({ key: addressKey('127.0.0.1'), port: T4.dport });
    expect(origDestination(V6.destroy)).toEqual({ key: addressKey('::1'), port: T6.dport });
    expect(addressKey('::ffff:127.0.0.1')).toBe(addressKey('127.0.0.1')); // as the gateway normalises addresses
    expect(addressKey('2001:db8:0::1')).toBe(addressKey('2001:db8::1'));
  });

  it('cut at every byte offset, or of another type: undefined, never a throw', () => {
    for (const m of [V4.new, V6.destroy]) {
      for (let cut = 0; cut < m.payload.length; cut++) {
        const short = { ...m, payload: m.payload.subarray(0, cut) };
        expect(() => [decodeFlowEvent(short), origDestination(short)]).not.toThrow();
      }
    }
    const other = { ...V4.new, type: 0x0a0c };
    expect([decodeFlowEvent(other), origDestination(other)]).toEqual([undefined, undefined]);
    const udp = Buffer.from(V4.new.payload);
    udp[udp.indexOf(Buffer.from('0500010006', 'hex')) + 4] = 17; // the original tuple's protocol: UDP
    expect(decodeFlowEvent({ ...V4.new, payload: udp })).toBeUndefined();
  });
});

describe('deleting a flow', () => {
  it('IPCTNL_MSG_CT_DELETE with ACK, the family, and the original tuple (the kernel acked these bytes, then ENOENT for a second one)', () => {
    expect(encodeDelete(4, T4, 77).toString('hex')).toBe(
      '48000000020105004d0000000000000002000000' +
        '3400018014000180080001007f000001080002007f0000011c00028005000100060000000600020094a20000060003008c8f0000',
    );
    const m = decodeMessages(encodeDelete(6, T6, 77))[0] as NetlinkMessage;
    expect([m.type, m.flags, m.seq, m.payload[0]]).toEqual([0x0102, 0x5, 77, 10]);
    expect(origDestination(m)).toEqual({ key: addressKey('::1'), port: T6.dport });
  });
});
