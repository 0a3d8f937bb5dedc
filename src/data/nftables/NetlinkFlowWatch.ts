/**
 * Conntrack events straight from ctnetlink: one NETLINK_NETFILTER socket
 * subscribed to the NEW, UPDATE and DESTROY groups, decoded in the process
 * (ctNetlink.ts). Against `conntrack -E` this saves a process, its text and
 * its pipe, and the latency of both: most events of the namespace are not
 * the gateway's (control connections, other traffic), and those cost a
 * lookup of the original destination only. A second socket deletes flows
 * (IPCTNL_MSG_CT_DELETE), which `conntrack -D` did with a process per flow.
 */
import type { Family } from '../../common/address.js';
import { addressKey, decodeFlowEvent, encodeDelete, NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, origDestination } from './ctNetlink.js';
import type { FlowListener, FlowSource } from './FlowWatch.js';
import type { Tuple } from './flowEvents.js';
import type { RawSocket, RawSocketFactory } from './NetlinkDriver.js';
import { ackErrno, decodeMessages, NLMSG_ERROR } from './nfNetlink.js';

/** A burst of events must not overrun the socket (a lost end is caught by the pinhole's idle check). */
const EVENT_BUFFER_BYTES = 4 * 1024 * 1024;
/** A deletion unanswered for this long is taken as done (the flow ends by itself later). */
const CUT_TIMEOUT_MS = 1_000;

export class NetlinkFlowWatch implements FlowSource {
  readonly name = 'netlink';
  private events: RawSocket | undefined;
  private control: RawSocket | undefined;
  private readonly listeners = new Map<string, FlowListener>();
  private readonly cuts = new Map<number, () => void>();
  private seq = Math.floor(Math.random() * 0x7fffffff);
  /** Sockets do not exit: never called. */
  onExit: (reason: string) => void = () => undefined;
  /** Events were lost (the receive buffer overran). */
  onLoss: (reason: string) => void = () => undefined;

  constructor(private readonly factory: RawSocketFactory) {}

  async start(): Promise<void> {
    const events = this.factory({ recvBufferSize: EVENT_BUFFER_BYTES });
    this.events = events;
    for (const group of [NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY]) events.addMembership(group);
    events.on('message', (msg) => this.onEvents(msg));
    events.on('error', (err) => this.onLoss(err.message));
    const control = this.factory({});
    this.control = control;
    control.on('message', (msg) => this.onAnswers(msg));
    control.on('error', () => this.settleCuts());
  }

  watch(address: string, port: number, listener: FlowListener): void {
    this.listeners.set(`${addressKey(address)}|${port}`, listener);
  }

  unwatch(address: string, port: number): void {
    this.listeners.delete(`${addressKey(address)}|${port}`);
  }

  cut(family: Family, flow: Tuple): Promise<void> {
    const control = this.control;
    if (control === undefined) return Promise.resolve();
    const seq = (this.seq = (this.seq + 1) >>> 0);
    return new Promise((resolve) => {
      const timer = setTimeout(done, CUT_TIMEOUT_MS);
      const cuts = this.cuts;
      function done(): void {
        clearTimeout(timer);
        cuts.delete(seq);
        resolve();
      }
      this.cuts.set(seq, done);
      control.send(encodeDelete(family, flow, seq), {}, (err) => {
        if (err !== undefined) done();
      });
    });
  }

  async close(): Promise<void> {
    this.settleCuts();
    this.events?.close();
    this.control?.close();
    this.events = undefined;
    this.control = undefined;
  }

  private onEvents(buf: Buffer): void {
    for (const m of decodeMessages(buf)) {
      const at = origDestination(m);
      const listener = at === undefined ? undefined : this.listeners.get(`${at.key}|${at.port}`);
      if (listener === undefined) continue;
      const event = decodeFlowEvent(m);
      if (event !== undefined) listener(event);
    }
  }

  /** An ACK or an error (ENOENT: gone already) ends a deletion either way. */
  private onAnswers(buf: Buffer): void {
    for (const m of decodeMessages(buf)) if (m.type === NLMSG_ERROR && ackErrno(m) !== undefined) this.cuts.get(m.seq)?.();
  }

  private settleCuts(): void {
    for (const done of [...this.cuts.values()]) done();
  }
}
