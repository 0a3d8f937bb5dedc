/**
 * A pinhole forwarded by the kernel: nftables elements admit exactly one
 * connection from the expected peer and NAT it to the target; the gateway
 * never touches a byte. Conntrack events say when the flow starts (state
 * `relaying`) and ends; only then, once the byte counters are read and the
 * elements removed, does the port go back to its pool.
 */
import { familyOf } from '../../common/address.js';
import { PortExhaustedError } from '../../common/errors.js';
import { LazyChild, type Logger } from '../../observe/logger.js';
import type { PinholeHandle, PinholeRequest } from '../DataPlane.js';
import type { PinholeLeg, PinholeState } from '../Pinhole.js';
import type { PortPool } from '../PortPool.js';
import type { ShardedPool } from '../ShardedPool.js';
import { logTransfer } from '../transferLog.js';
import { type FlowEvent, type Tuple, flowEnded } from './flowEvents.js';
import type { FlowWatch } from './FlowWatch.js';
import type { ElementDriver } from './ElementDriver.js';
import { type PinholeKey, type PinholeTarget, type Counter, closeOps, countersOps, disarmOps, finishOps, openOps, payloadBytes } from './ruleset.js';

/** After a pinhole closed unused, how long a flow the kernel admitted just before may still show up. */
const LATE_FLOW_GRACE_MS = 250;
/**
 * Close reasons after which a transfer that had already started runs on (the
 * relay plane closes only pinholes still waiting for them); ABOR, REIN and a
 * refusal by the upstream cut it.
 */
const STARTED_RUNS_ON = new Set(['replaced', 'session-end']);
/** How long a pinhole whose arm a SYN consumed waits for that flow's first event (conntrack -E lags under load). */
const LATE_START_WAIT_MS = 2_000;
/** Reads of a flow's counters per data idle deadline, and the shortest period between two. */
const IDLE_CHECKS = 4;
const MIN_IDLE_CHECK_MS = 250;
/** A flow the gateway cut must be gone from conntrack within this bound, or the port is given back anyway. */
const CUT_WAIT_MS = 5_000;

export interface KernelPinholeDeps {
  readonly elements: ElementDriver;
  readonly flows: FlowWatch;
  /** Ends a flow now; resolves whether or not it existed. */
  readonly cut: (family: 4 | 6, flow: Tuple) => Promise<void>;
  readonly onError: (op: string) => void;
  /** How many shards the pools have (one per relay worker). */
  readonly shards: number;
}

export interface KernelLegs {
  /** The leg the peer connects to (its port comes from the pool). */
  readonly listen: { readonly name: 'client' | 'upstream'; readonly host: string; readonly pool: ShardedPool; readonly expectedPeer: string };
  readonly connect: Extract<PinholeLeg, { kind: 'connect' }> & { readonly localAddress: string };
}

export class KernelPinhole implements PinholeHandle {
  state: PinholeState = 'new';
  command = '';
  bytes = { up: 0, down: 0 };
  private key: PinholeKey | undefined;
  private held: { pool: PortPool; port: number } | undefined;
  private readonly target: PinholeTarget;
  private flow: Tuple | undefined;
  private flowOver = false;
  private deadline: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closeReason = '';
  private finished = false;
  private finishing = false;
  /** The removal of a pinhole closed unused: a late flow's finish has no counters to read, nor elements to remove. */
  private removal: Promise<void> | undefined;
  /**
   * After a close while waiting: `awaiting` while a flow whose SYN consumed the
   * arm may still show up (it had started before the close); `running` once it
   * did and runs on (see runOnAfterClose).
   */
  private afterClose: 'none' | 'awaiting' | 'running' = 'none';
  /** How long `awaiting` lasts (LATE_START_WAIT_MS). */
  private lateStart: NodeJS.Timeout | undefined;
  private readonly closeWaiters: (() => void)[] = [];
  /** The session's logger, with {port, dir, plane} once open (made when a line is first written). */
  private readonly logs: LazyChild;

  constructor(
    private readonly deps: KernelPinholeDeps,
    private readonly request: PinholeRequest,
    private readonly legs: KernelLegs,
  ) {
    const { host, port, localAddress } = legs.connect;
    this.target = { host, port, source: localAddress };
    this.logs = new LazyChild(request.log);
  }

  private get log(): Logger {
    return this.logs.log;
  }

  private debug(fields: object, msg: string): void {
    this.logs.at('debug').debug(fields, msg);
  }

  get clientPort(): number | undefined {
    return this.legs.listen.name === 'client' ? this.held?.port : undefined;
  }

  get upstreamPort(): number | undefined {
    return this.legs.listen.name === 'upstream' ? this.held?.port : undefined;
  }

  async open(): Promise<void> {
    const { listen } = this.legs;
    const { site, dir, metrics, acceptTimeoutMs } = this.request;
    this.held = allocate(listen.pool, this.deps.shards);
    if (this.held === undefined) throw new PortExhaustedError(`${dir} ports of ${site}`);
    const port = this.held.port;
    const key: PinholeKey = { family: familyOf(listen.host), peer: listen.expectedPeer, address: listen.host, port };
    this.key = key;
    this.deps.flows.watch(key.address, port, (e) => this.onFlow(e));
    try {
      await this.deps.elements.apply('open', openOps(key, this.target, acceptTimeoutMs));
    } catch (err) {
      this.deps.onError('open');
      this.deps.flows.unwatch(key.address, port);
      this.held.pool.release(port);
      this.held = undefined;
      this.state = 'closed';
      this.wake();
      throw err;
    }
    if (this.state === 'closed') return; // closed while opening: close() removes the elements
    this.state = 'waiting';
    metrics.pinholesOpened.inc({ site, dir });
    metrics.pinholesOpen.inc({ site, dir });
    this.logs.bind({ port, dir, plane: 'nftables' });
    this.debug({ peer: key.peer, target: `${this.target.host}:${this.target.port}` }, 'pinhole open');
    this.deadline = setTimeout(() => this.close('accept-timeout'), acceptTimeoutMs);
  }

  close(reason: string): void {
    if (this.state === 'closed') return this.closeAgain(reason);
    const wasOpen = this.state !== 'new';
    this.state = 'closed';
    this.closeReason = reason;
    clearTimeout(this.deadline);
    clearInterval(this.idleTimer);
    const { site, dir, metrics } = this.request;
    if (wasOpen) metrics.pinholesOpen.dec({ site, dir });
    if (reason === 'accept-timeout' && this.flow === undefined) metrics.pinholesExpired.inc({ site, dir });
    if (this.key === undefined) return; // open() failed or never ran
    if (this.flow !== undefined && !this.flowOver) {
      void this.cutFlow(); // ABOR, REIN, session killed: the transfer is cut (the peers see a reset)
      return;
    }
    if (this.flow !== undefined) {
      void this.finish();
      return;
    }
    void this.closeUnused();
  }

  closed(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  private onFlow(e: FlowEvent): void {
    const key = this.key as PinholeKey;
    // A flow's first event may be lost (conntrack -E drops events when it cannot keep up): its next one starts it.
    const unseen = this.flow === undefined && e.type === 'UPDATE' && e.orig.src === key.peer && !flowEnded(e);
    if (e.type === 'NEW' || unseen) {
      const natted = e.reply.src === this.target.host && e.reply.sport === this.target.port;
      if (e.orig.src !== key.peer) return this.wrongPeer(e.orig.src);
      if (!natted || this.flow !== undefined) {
        this.debug({ sport: e.orig.sport }, 'pinhole second connection refused');
        return;
      }
      this.flow = e.orig;
      if (this.state === 'waiting') {
        clearTimeout(this.deadline);
        this.state = 'relaying';
        this.startedAt = performance.now();
        this.watchIdle();
      } else if (this.afterClose === 'awaiting') {
        this.runOnAfterClose();
      } else {
        this.log.warn({ sport: e.orig.sport, reason: this.closeReason }, 'pinhole flow admitted as it closed: cut');
        void this.cutFlow(); // admitted just before the pinhole closed: it must not run on
      }
      return;
    }
    const flow = this.flow;
    if (flow === undefined || e.orig.src !== flow.src || e.orig.sport !== flow.sport || !flowEnded(e)) return;
    if (this.flowOver) return;
    this.flowOver = true;
    if (this.state === 'relaying') this.close('done');
    else void this.finish();
  }

  /**
   * The data idle deadline: the kernel tells nothing per packet, so the
   * flow's packet counters are read a few times per deadline; a flow whose
   * counters stood still for the whole deadline is cut like an idle relay.
   */
  private watchIdle(): void {
    const idleMs = this.request.dataIdleMs;
    let lastPackets = Number.NaN;
    let lastChange = performance.now();
    this.idleTimer = setInterval(() => {
      void this.packets().then((packets) => {
        const now = performance.now();
        if (packets !== lastPackets) {
          lastPackets = packets;
          lastChange = now;
        } else if (now - lastChange >= idleMs && this.state === 'relaying') {
          this.close('data-idle');
        } else if (now - lastChange >= idleMs && this.state === 'closed' && !this.flowOver) {
          clearInterval(this.idleTimer);
          void this.cutFlow(); // a flow that runs on after its pinhole closed (runOnAfterClose)
        }
      });
    }, Math.max(MIN_IDLE_CHECK_MS, Math.floor(idleMs / IDLE_CHECKS)));
    this.idleTimer.unref();
  }

  /** Packets of both directions so far; NaN when unreadable (never equal, so never idle). */
  private async packets(): Promise<number> {
    try {
      const { orig, reply } = await this.counters();
      return orig.packets + reply.packets;
    } catch {
      return Number.NaN;
    }
  }

  /** The flow's counters: from the connecting peer (orig) and back to it (reply). */
  private async counters(): Promise<{ orig: Counter; reply: Counter }> {
    return origReply(await this.deps.elements.apply('counters', countersOps(this.key as PinholeKey)));
  }

  private wrongPeer(peer: string): void {
    const { site, dir, metrics } = this.request;
    metrics.pinholesWrongPeer.inc({ site, dir });
    this.log.warn({ peer, expected: this.key?.peer, leg: this.legs.listen.name }, 'pinhole connection from wrong peer refused');
  }

  /**
   * Closed before any event of a flow arrived. For a new PASV or the end of
   * the session, the arm is removed first, alone: that shuts the pinhole at
   * once and says whether the kernel already forwarded a SYN. Then the flow
   * started before the close, as an accepted connection of the relay plane,
   * and runs on once its late events arrive.
   */
  private async closeUnused(): Promise<void> {
    if (STARTED_RUNS_ON.has(this.closeReason)) {
      this.afterClose = 'awaiting';
      const consumed = await this.disarm();
      if (this.flow !== undefined) return; // its first event came while we asked: runs on
      if (consumed && this.afterClose === 'awaiting') {
        this.lateStart = setTimeout(() => {
          this.afterClose = 'none';
          void this.removeUnused();
        }, LATE_START_WAIT_MS);
        return;
      }
      this.afterClose = 'none';
    }
    await this.removeUnused();
  }

  /** Remove the arm; true if it was gone already (a SYN from the peer went through), false if removed or on another error. */
  private async disarm(): Promise<boolean> {
    try {
      await this.deps.elements.apply('disarm', disarmOps(this.key as PinholeKey));
      return false;
    } catch (err) {
      return /ENOENT|No such file or directory/.test((err as Error).message);
    }
  }

  /** A flow that started before its pinhole closed: it runs on, watched for idleness, until it ends. */
  private runOnAfterClose(): void {
    this.afterClose = 'running';
    clearTimeout(this.lateStart);
    this.startedAt = performance.now();
    this.debug({ sport: this.flow?.sport, reason: this.closeReason }, 'pinhole flow had started before the close: runs on');
    this.watchIdle();
  }

  /** ABOR, REIN, the upstream's refusal after a close that let a started flow run on: now it is cut, or will be when it shows up. */
  private closeAgain(reason: string): void {
    if (STARTED_RUNS_ON.has(reason) || this.afterClose === 'none') return;
    this.closeReason = reason;
    const running = this.afterClose === 'running';
    this.afterClose = 'none';
    if (running && !this.flowOver) {
      clearInterval(this.idleTimer);
      void this.cutFlow();
    }
  }

  /** Unused: remove the elements, then give a flow admitted at the last moment time to show itself. */
  private async removeUnused(): Promise<void> {
    this.removal = this.removeElements();
    await this.removal;
    await new Promise((resolve) => setTimeout(resolve, LATE_FLOW_GRACE_MS));
    if (this.flow === undefined) void this.finish();
    this.debug({ reason: this.closeReason }, 'pinhole closed unused');
  }

  private async cutFlow(): Promise<void> {
    const flow = this.flow as Tuple;
    await this.deps.cut((this.key as PinholeKey).family, flow);
    const bound = setTimeout(() => {
      this.flowOver = true;
      void this.finish();
    }, CUT_WAIT_MS);
    bound.unref();
    void this.closed().then(() => clearTimeout(bound));
  }

  /** The flow is over (or never came): read the counters, remove the elements, give the port back. */
  private async finish(): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    clearInterval(this.idleTimer);
    clearTimeout(this.lateStart);
    const key = this.key as PinholeKey;
    let gone = false;
    if (this.removal !== undefined) {
      await this.removal; // closed unused (then perhaps a flow admitted at the last moment was cut): nothing left
      gone = true;
    } else if (this.flow !== undefined) gone = await this.readCountersAndRemove(key);
    if (!gone) await this.removeElements();
    this.deps.flows.unwatch(key.address, key.port);
    this.held?.pool.release(key.port);
    this.held = undefined;
    if (this.flow !== undefined) this.logTransfer();
    this.wake();
  }

  /** One round trip: the final counters, and the elements removed. False if nft refused (the caller removes them alone). */
  private async readCountersAndRemove(key: PinholeKey): Promise<boolean> {
    try {
      const { orig, reply } = origReply(await this.deps.elements.apply('finish', finishOps(key, this.target)));
      const fromPeer = payloadBytes(key.family, orig);
      const toPeer = payloadBytes(key.family, reply);
      // The peer is the client on a passive pinhole (its bytes go up) and the upstream on an active one.
      this.bytes = this.legs.listen.name === 'client' ? { up: fromPeer, down: toPeer } : { up: toPeer, down: fromPeer };
      return true;
    } catch (err) {
      this.deps.onError('counters');
      this.log.warn({ err }, 'pinhole byte counters unreadable');
      return false;
    }
  }

  private async removeElements(): Promise<void> {
    try {
      await this.deps.elements.apply('close', closeOps(this.key as PinholeKey, this.target));
    } catch (err) {
      this.deps.onError('close');
      this.log.warn({ err }, 'pinhole elements not removed (they time out by themselves)');
    }
  }

  private wake(): void {
    this.finished = true;
    for (const wake of this.closeWaiters.splice(0)) wake();
  }

  private logTransfer(): void {
    const { up, down } = this.bytes;
    const { site, metrics } = this.request;
    logTransfer(this.logs.at('info'), metrics, { site, command: this.command, up, down, startedAt: this.startedAt, reason: this.closeReason });
  }

}

/** The two counters a `countersOps` read answers with; zero where absent. */
function origReply(counters: readonly Counter[]): { orig: Counter; reply: Counter } {
  const none = { packets: 0, bytes: 0 };
  return { orig: counters[0] ?? none, reply: counters[1] ?? none };
}

/** A free port from any shard of the pool (the kernel plane binds nothing, so any shard will do). */
function allocate(pool: ShardedPool, shards: number): { pool: PortPool; port: number } | undefined {
  const start = Math.floor(Math.random() * shards);
  for (let i = 0; i < shards; i++) {
    const shard = pool.shard(start + i);
    const port = shard.allocate();
    if (port !== undefined) return { pool: shard, port };
  }
  return undefined;
}
