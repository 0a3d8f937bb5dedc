/**
 * The element driver that talks nf_tables netlink itself, over one
 * long-lived NETLINK_NETFILTER socket of the npm `netlink` package's
 * RawNetlinkSocket (a native N-API module). No process, no text, no cache:
 * a pinhole's open is one datagram and one batch of ACKs (the research
 * measured 0.025 ms against 0.3 ms for `nft -i`). Bytes come from
 * nfNetlink.ts; each batch's last element message and each read are
 * acknowledged, and any error fails its whole transaction (the kernel has
 * aborted the batch). The same socket
 * deletes conntrack flows (ctNetlink.ts).
 *
 * The native module aborts the process if the kernel ever overruns the
 * socket's receive buffer, so the answers in flight are bounded: at most
 * MAX_IN_FLIGHT transactions are sent at a time, the rest wait in order.
 */
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { KernelPlaneError } from '../../common/errors.js';
import type { Family } from '../../common/address.js';
import { encodeDelete } from './ctNetlink.js';
import type { ElementDriver } from './ElementDriver.js';
import type { Tuple } from './flowEvents.js';
import { ackErrno, decodeElementCounter, decodeMessages, encodeTransaction, NEWSETELEM, NLMSG_ERROR } from './nfNetlink.js';
import { type Counter, type ElementOp, TABLE } from './ruleset.js';

const NETLINK_NETFILTER = 12;
/** A transaction unanswered for this long fails (the kernel answers in microseconds). */
const COMMAND_TIMEOUT_MS = 5_000;
const RECV_BUFFER_BYTES = 1024 * 1024;
/**
 * Transactions sent and not yet answered. A pinhole's largest (finish) asks
 * 5 answers of some hundred bytes each (two counters, their ACKs, the
 * batch's ACK; an aborted batch adds one error per failed message, 12 at
 * most): 16 of them stay far below the smallest receive buffer Linux gives
 * (rmem_default, 208 KiB).
 */
const MAX_IN_FLIGHT = 16;
const ENOENT = 2;

/** The part of the `netlink` package's RawNetlinkSocket used here. */
export interface RawSocket {
  on(event: 'message', listener: (msg: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  send(msg: Uint8Array, options?: object, callback?: (err?: Error) => void): void;
  addMembership(group: number): void;
  close(): void;
}
/** A NETLINK_NETFILTER socket. */
export type RawSocketFactory = (options: { recvBufferSize?: number }) => RawSocket;

/**
 * The native socket's constructor, or why it cannot load (no prebuild for
 * this platform, an ABI it does not support): then the plane uses `nft -i`.
 */
export function loadNetlink(): RawSocketFactory | Error {
  try {
    const require = createRequire(import.meta.url);
    const mod = require('netlink/dist/raw.js') as { RawNetlinkSocket: new (protocol: number, options?: object) => RawSocket };
    const Socket = mod.RawNetlinkSocket;
    return (options) => new Socket(NETLINK_NETFILTER, options);
  } catch (err) {
    return err as Error;
  }
}

interface Pending {
  readonly op: string;
  readonly datagrams: readonly Buffer[];
  /** An errno that counts as success (ENOENT for a flow deletion: gone already). */
  readonly harmless?: number;
  readonly seqs: readonly number[];
  readonly unanswered: Set<number>;
  readonly gets: readonly number[];
  readonly counters: Map<number, Counter>;
  readonly resolve: (counters: Counter[]) => void;
  readonly reject: (err: Error) => void;
  sentAt: number;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

export class NetlinkDriver implements ElementDriver {
  readonly name = 'netlink';
  private socket: RawSocket | undefined;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly bySeq = new Map<number, Pending>();
  private readonly waiting: Pending[] = [];
  private inFlight = 0;
  private watchdog: NodeJS.Timeout | undefined;
  /** A socket does not die on its own: never called. */
  onExit: (reason: string) => void = () => undefined;

  constructor(
    private readonly factory: RawSocketFactory,
    private readonly table = TABLE,
    private readonly commandTimeoutMs = COMMAND_TIMEOUT_MS,
  ) {}

  /** Open the socket (throws if the kernel refuses one). */
  start(): void {
    const socket = this.factory({ recvBufferSize: RECV_BUFFER_BYTES });
    socket.on('message', (msg) => this.onDatagram(msg));
    // A lost answer (ENOBUFS) or a dead socket: what is pending can no longer be trusted.
    socket.on('error', (err) => this.failAll(`netlink socket: ${err.message}`));
    // Not unref'd: the native module aborts the process if an answer arrives while Node exits, so close() ends it.
    this.socket = socket;
    this.watchdog = setInterval(() => this.checkStuck(), this.commandTimeoutMs / 5);
    this.watchdog.unref();
  }

  apply(op: string, ops: readonly ElementOp[]): Promise<Counter[]> {
    if (ops.length === 0) return Promise.resolve([]);
    const datagrams = encodeTransaction(this.table, ops, () => this.nextSeq());
    return new Promise((resolve, reject) => {
      this.enqueue({
        op,
        datagrams: datagrams.map((d) => d.bytes),
        seqs: datagrams.flatMap((d) => d.seqs),
        unanswered: new Set(datagrams.flatMap((d) => d.acked)),
        gets: datagrams.flatMap((d) => d.gets),
        counters: new Map(),
        resolve,
        reject,
        sentAt: 0,
      });
    });
  }

  /** Delete one flow from conntrack; resolves whether or not it existed (or when the socket is gone). */
  cutFlow(family: Family, flow: Tuple): Promise<void> {
    const seq = this.nextSeq();
    return new Promise((resolve) => {
      const done = () => resolve();
      const datagrams = [encodeDelete(family, flow, seq)];
      this.enqueue({ op: 'cut', datagrams, harmless: ENOENT, seqs: [seq], unanswered: new Set([seq]), gets: [], counters: new Map(), resolve: done, reject: done, sentAt: 0 });
    });
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    return this.seq;
  }

  private enqueue(p: Pending): void {
    if (this.socket === undefined) return p.reject(new KernelPlaneError(p.op, 'netlink socket closed'));
    this.waiting.push(p);
    this.sendWaiting();
  }

  private sendWaiting(): void {
    const socket = this.socket;
    while (socket !== undefined && this.inFlight < MAX_IN_FLIGHT) {
      const p = this.waiting.shift();
      if (p === undefined) return;
      this.inFlight++;
      p.sentAt = performance.now();
      for (const s of p.seqs) this.bySeq.set(s, p);
      for (const d of p.datagrams) {
        socket.send(d, {}, (err) => {
          if (err !== undefined) this.fail(p, `send: ${err.message}`);
        });
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.watchdog);
    const socketGone = new KernelPlaneError('close', 'netlink socket closed');
    for (const p of this.waiting.splice(0)) p.reject(socketGone);
    this.failAll('netlink socket closed');
    this.socket?.close();
    this.socket = undefined;
  }

  private onDatagram(buf: Buffer): void {
    for (const m of decodeMessages(buf)) {
      const p = this.bySeq.get(m.seq);
      if (p === undefined) continue; // a transaction already failed or timed out
      if (m.type === NEWSETELEM) {
        const counter = decodeElementCounter(m);
        if (counter !== undefined) p.counters.set(m.seq, counter);
      } else if (m.type === NLMSG_ERROR) {
        const errno = ackErrno(m);
        if (errno === undefined) this.fail(p, 'malformed answer');
        else if (errno !== 0 && errno !== p.harmless) this.fail(p, `${ERRNO_NAMES.get(errno) ?? 'errno'} ${errno}`);
        else this.answered(p, m.seq);
      }
    }
  }

  private answered(p: Pending, seq: number): void {
    p.unanswered.delete(seq);
    if (p.unanswered.size > 0) return;
    this.forget(p);
    p.resolve(p.gets.map((s) => p.counters.get(s) ?? { packets: 0, bytes: 0 }));
  }

  private fail(p: Pending, reason: string): void {
    if (this.bySeq.get(p.seqs[0] as number) !== p) return; // already settled
    this.forget(p);
    p.reject(new KernelPlaneError(p.op, reason));
  }

  /** Settled: its answers are no longer awaited, and the next waiting transaction may go. */
  private forget(p: Pending): void {
    for (const s of p.seqs) this.bySeq.delete(s);
    this.inFlight--;
    this.sendWaiting();
  }

  private failAll(reason: string): void {
    for (const p of new Set(this.bySeq.values())) this.fail(p, reason);
  }

  private checkStuck(): void {
    const now = performance.now();
    for (const p of new Set(this.bySeq.values())) if (now - p.sentAt > this.commandTimeoutMs) this.fail(p, 'no answer from the kernel');
  }
}
