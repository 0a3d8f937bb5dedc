/**
 * The ctnetlink message that deletes a flow (IPCTNL_MSG_CT_DELETE), as the
 * kernel (6.18) acked it from a RawNetlinkSocket in a scratch network
 * namespace: the IPv4 bytes below deleted a loopback flow (ACK 0, then ENOENT
 * for the same message again). No socket here: the ABOR and restart tests of
 * test/e2e/kernel.e2e.test.ts cut flows through it.
 */
import { describe, expect, it } from 'vitest';
import { encodeDelete } from '../../../src/data/nftables/ctNetlink.js';
import { decodeAttrs, decodeMessages, findAttr, type NetlinkMessage } from '../../../src/data/nftables/nfNetlink.js';

const T4 = { src: '127.0.0.1', dst: '127.0.0.1', sport: 38050, dport: 35983 };
const T6 = { src: '::1', dst: '::1', sport: 58470, dport: 44389 };

/** The original tuple of a delete message, read back: ((type, bytes) of the addresses, ports). */
function tupleOf(m: NetlinkMessage): { ips: [number, string][]; proto: number[] } {
  const orig = findAttr(decodeAttrs(m.payload.subarray(4)), 1) ?? Buffer.alloc(0);
  const ip = decodeAttrs(findAttr(decodeAttrs(orig), 1) ?? Buffer.alloc(0));
  const proto = decodeAttrs(findAttr(decodeAttrs(orig), 2) ?? Buffer.alloc(0));
  return { ips: ip.map(([t, b]) => [t, b.toString('hex')]), proto: proto.map(([, b]) => (b.length === 1 ? (b[0] as number) : b.readUInt16BE(0))) };
}

describe('deleting a flow', () => {
  it('IPv4: the bytes the kernel acked (IPCTNL_MSG_CT_DELETE, REQUEST|ACK, AF_INET, the original tuple)', () => {
    expect(encodeDelete(4, T4, 77).toString('hex')).toBe(
      '48000000020105004d0000000000000002000000' +
        '3400018014000180080001007f000001080002007f0000011c00028005000100060000000600020094a20000060003008c8f0000',
    );
  });

  it('IPv6: AF_INET6 and the v6 address attributes', () => {
    const m = decodeMessages(encodeDelete(6, T6, 0xffffffff))[0] as NetlinkMessage;
    expect([m.type, m.flags, m.seq, m.payload[0]]).toEqual([0x0102, 0x5, 0xffffffff, 10]);
    expect(tupleOf(m)).toEqual({
      ips: [
        [3, '00000000000000000000000000000001'],
        [4, '00000000000000000000000000000001'],
      ],
      proto: [6, T6.sport, T6.dport],
    });
  });
});
