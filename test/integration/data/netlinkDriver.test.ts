/**
 * NetlinkDriver's bookkeeping against a stand-in socket that records what
 * is sent and answers like the kernel (an NLMSG_ERROR per message that asked
 * for an ACK, and per failed message whether it asked or not; a NEWSETELEM
 * before the ACK of a get). The real kernel is driven by
 * test/e2e/kernel.e2e.test.ts; the bytes are tested in test/unit/data.
 */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { KernelPlaneError } from '../../../src/common/errors.js';
import { NetlinkDriver, type RawSocket } from '../../../src/data/nftables/NetlinkDriver.js';
import { decodeMessages, NEWSETELEM } from '../../../src/data/nftables/nfNetlink.js';
import { countersOps, finishOps, openOps } from '../../../src/data/nftables/ruleset.js';

const KEY = { family: 4, peer: '203.0.113.10', address: '203.0.113.1', port: 50000 } as const;
const TARGET = { host: '192.0.2.10', port: 40001, source: '192.0.2.1' };
const key = (port: number) => ({ ...KEY, port });

class FakeSocket extends EventEmitter implements RawSocket {
  readonly sent: Buffer[] = [];
  closed = false;
  send(msg: Uint8Array, _options?: object, callback?: (err?: Error) => void): void {
    this.sent.push(Buffer.from(msg));
    callback?.();
  }
  addMembership(): void {}
  close(): void {
    this.closed = true;
  }
  /** The element messages sent so far that asked for an ACK (flag 0x4), in order. */
  acked(): { type: number; seq: number }[] {
    return this.sent.flatMap((d) => decodeMessages(d).filter((m) => (m.flags & 0x4) !== 0));
  }
  /** Every element message sent so far (NEWSETELEM, GETSETELEM, DELSETELEM), in order. */
  elements(): { type: number; seq: number }[] {
    return this.sent.flatMap((d) => decodeMessages(d).filter((m) => m.type >> 8 === 10 && m.type !== 0x0a10 && m.type !== 0x0a11));
  }
  answer(...messages: Buffer[]): void {
    this.emit('message', Buffer.concat(messages));
  }
}

function ack(seq: number, errno = 0): Buffer {
  const out = Buffer.alloc(36);
  out.writeUInt32LE(36, 0);
  out.writeUInt16LE(2, 4); // NLMSG_ERROR
  out.writeUInt32LE(seq, 8);
  out.writeInt32LE(-errno, 16);
  return out;
}

/** A get's answer: a NEWSETELEM holding one element with a counter. */
function counterAnswer(seq: number, packets: number, bytes: number): Buffer {
  const attr = (type: number, payload: Buffer) => {
    const b = Buffer.alloc((4 + payload.length + 3) & ~3);
    b.writeUInt16LE(4 + payload.length, 0);
    b.writeUInt16LE(type, 2);
    payload.copy(b, 4);
    return b;
  };
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(n));
    return b;
  };
  const expr = attr(7, Buffer.concat([attr(1, Buffer.from('counter\0')), attr(2, Buffer.concat([attr(1, u64(bytes)), attr(2, u64(packets))]))]));
  const body = Buffer.concat([Buffer.from([1, 0, 0, 0]), attr(3, attr(1, expr))]);
  const head = Buffer.alloc(16);
  head.writeUInt32LE(16 + body.length, 0);
  head.writeUInt16LE(NEWSETELEM, 4);
  head.writeUInt32LE(seq, 8);
  return Buffer.concat([head, body]);
}

describe('NetlinkDriver', () => {
  let driver: NetlinkDriver | undefined;
  let socket: FakeSocket;
  const start = (timeoutMs?: number): NetlinkDriver => {
    socket = new FakeSocket();
    driver = new NetlinkDriver(() => socket, 'ftp_alg_dp', timeoutMs);
    driver.start();
    return driver;
  };

  afterEach(async () => {
    await driver?.close();
  });

  it('a batch asks one ACK, of its last element message, and resolves on it, not before', async () => {
    const d = start();
    let done = false;
    const open = d.apply('open', openOps(KEY, TARGET, 15_000)).then((c) => {
      done = true;
      return c;
    });
    const elements = socket.elements();
    expect(elements).toHaveLength(5);
    expect(socket.acked()).toEqual([elements[4]]);
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    socket.answer(ack((elements[4] as { seq: number }).seq));
    expect(await open).toEqual([]);
  });

  it('fails the whole transaction on one error of a message that asked no ACK, naming the errno, and ignores its later answers', async () => {
    const d = start();
    const open = d.apply('open', openOps(KEY, TARGET, 15_000));
    const elements = socket.elements();
    socket.answer(ack((elements[1] as { seq: number }).seq, 2), ack((elements[4] as { seq: number }).seq));
    const err = await open.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelPlaneError);
    expect(err).toMatchObject({ code: 'ERR_ALG_KERNEL', op: 'open', message: expect.stringContaining('ENOENT') });
  });

  it('answers the counters of the gets, in op order', async () => {
    const d = start();
    const finish = d.apply('finish', finishOps(KEY, TARGET));
    const msgs = socket.acked();
    const [orig, reply] = msgs.slice(0, 2).map((m) => m.seq) as [number, number];
    socket.answer(counterAnswer(reply, 9, 100476), ack(reply), counterAnswer(orig, 11, 5580), ack(orig));
    socket.answer(...msgs.slice(2).map((m) => ack(m.seq)));
    expect(await finish).toEqual([
      { packets: 11, bytes: 5580 },
      { packets: 9, bytes: 100476 },
    ]);
  });

  it('keeps at most 16 transactions in flight; the rest go, in order, as answers come back', async () => {
    const d = start();
    const all = Array.from({ length: 40 }, (_, i) => d.apply('counters', countersOps(key(50000 + i))));
    expect(socket.sent).toHaveLength(16);
    let answered = 0;
    while (answered < socket.acked().length) {
      const batch = socket.acked().slice(answered);
      answered += batch.length;
      socket.answer(...batch.map((m) => ack(m.seq)));
    }
    await Promise.all(all);
    expect(socket.sent).toHaveLength(40);
    const ports = socket.sent.map((d) => decodeMessages(d)[0]?.payload.subarray(-4, -2).readUInt16BE(0));
    expect(ports).toEqual(Array.from({ length: 40 }, (_, i) => 50000 + i));
  });

  it('fails a transaction the kernel never answers, after the command deadline', async () => {
    const d = start(200);
    await expect(d.apply('open', openOps(KEY, TARGET, 15_000))).rejects.toThrow('no answer');
  });

  it('a flow deletion resolves on ACK and on ENOENT (gone already)', async () => {
    const d = start();
    const flow = { src: '203.0.113.10', dst: '203.0.113.1', sport: 40000, dport: 50000 };
    const first = d.cutFlow(4, flow);
    const second = d.cutFlow(4, flow);
    const [a, b] = socket.acked();
    expect(a?.type).toBe(0x0102); // IPCTNL_MSG_CT_DELETE
    socket.answer(ack(a?.seq as number), ack(b?.seq as number, 2));
    await expect(Promise.all([first, second])).resolves.toEqual([undefined, undefined]);
  });

  it('after close, pending and new transactions fail and the socket is closed', async () => {
    const d = start();
    const pending = d.apply('open', openOps(KEY, TARGET, 15_000));
    await d.close();
    await expect(pending).rejects.toThrow('closed');
    await expect(d.apply('open', openOps(KEY, TARGET, 15_000))).rejects.toThrow('closed');
    expect(socket.closed).toBe(true);
  });
});
