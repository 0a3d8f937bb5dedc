/**
 * Warm upstream control connections (`upstream.warm`): per member in
 * service, a few connections already made and greeted (a complete `220`),
 * so that a new session's client hears its greeting without waiting for the
 * upstream's connect, process start and greeting. A session takes one
 * (`take`) and adopts it as if it had just connected: the greeting bytes go
 * through its core like any upstream line. The member is refilled at once.
 *
 * A warm connection is one the upstream sees idle before login, so it is
 * closed with `QUIT` after `maxAgeMs` (servers end such connections after
 * their login timeout) and replaced; anything the upstream sends on it
 * while it waits (a `421` timeout, a close) drops it, and it is never given
 * to a session. A member whose warm connections fail (refused, no `220`)
 * is retried with a doubling delay: sessions then connect as they would
 * without warm connections, and their own attempts report the member's
 * health, not these.
 */
import net, { type Socket } from 'node:net';
import { LineSplitter } from '../ftp/lineSplitter.js';
import { ReplyReader } from '../ftp/reply.js';
import type { WarmConnection } from '../control/Session.js';
import type { Logger } from '../observe/logger.js';

export interface WarmOptions {
  readonly port: number;
  /** Connections kept ready per member. */
  readonly perMember: number;
  readonly maxAgeMs: number;
  readonly connectMs: number;
  readonly greetingMs: number;
  readonly maxLineBytes: number;
  readonly log: Logger;
  /** Told of each connection once it is up (the gateway's loop guard). */
  readonly track?: (socket: Socket) => void;
}

interface Entry {
  readonly socket: Socket;
  readonly chunks: Buffer[];
  bytes: number;
  ready: boolean;
  timer: NodeJS.Timeout | undefined;
  off: () => void;
}

interface Member {
  readonly entries: Set<Entry>;
  failures: number;
  retry: NodeJS.Timeout | undefined;
}

/** A greeting longer than this is not a greeting. */
const MAX_GREETING_BYTES = 64 * 1024;
const QUIT = Buffer.from('QUIT\r\n');
const QUIT_GRACE_MS = 2_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export class WarmUpstreams {
  private readonly members = new Map<string, Member>();
  private stopped = false;

  constructor(private readonly options: WarmOptions) {}

  /** Connections to `host` ready for a session now. */
  readyFor(host: string): number {
    let n = 0;
    for (const entry of this.members.get(host)?.entries ?? []) if (entry.ready) n++;
    return n;
  }

  /** The members in service now: new ones are filled, ones gone have their connections closed. */
  setMembers(hosts: readonly string[]): void {
    if (this.stopped) return;
    for (const [host, m] of this.members) {
      if (hosts.includes(host)) continue;
      this.members.delete(host);
      this.dropMember(m);
    }
    for (const host of hosts) {
      if (this.members.has(host)) continue;
      this.members.set(host, { entries: new Set(), failures: 0, retry: undefined });
      this.fill(host);
    }
  }

  /** A ready connection to `host`, now the caller's (its listeners are gone); undefined if none is ready. */
  take(host: string): WarmConnection | undefined {
    const m = this.members.get(host);
    if (m === undefined) return undefined;
    for (const entry of m.entries) {
      if (!entry.ready) continue;
      m.entries.delete(entry);
      this.release(entry);
      setImmediate(() => this.fill(host));
      return { socket: entry.socket, greeting: Buffer.concat(entry.chunks, entry.bytes) };
    }
    return undefined;
  }

  /** A session reached `host` (it greeted): a member waiting out a backoff is filled at once. */
  reached(host: string): void {
    const m = this.members.get(host);
    if (m === undefined || m.retry === undefined) return;
    clearTimeout(m.retry);
    m.retry = undefined;
    this.fill(host);
  }

  /** Close every warm connection and make no more. */
  stop(): void {
    this.stopped = true;
    for (const m of this.members.values()) this.dropMember(m);
    this.members.clear();
  }

  private fill(host: string): void {
    const m = this.members.get(host);
    if (m === undefined || this.stopped || m.retry !== undefined) return;
    while (m.entries.size < this.options.perMember) this.dial(host, m);
  }

  private dial(host: string, m: Member): void {
    const { port, connectMs, greetingMs, maxLineBytes, track } = this.options;
    const socket = net.connect({ host, port });
    if (track !== undefined) socket.once('connect', () => track(socket));
    const reader = new ReplyReader();
    const entry: Entry = { socket, chunks: [], bytes: 0, ready: false, timer: undefined, off: () => undefined };
    m.entries.add(entry);
    const splitter = new LineSplitter(maxLineBytes, {
      line: (raw) => {
        if (entry.ready) return;
        const r = reader.read(raw);
        if (r.kind === 'malformed') return this.failed(host, entry, 'malformed greeting');
        if (r.kind !== 'final') return;
        if (r.code !== 220) return this.failed(host, entry, `greeting ${r.code}`);
        this.greeted(host, entry);
      },
      fault: () => this.failed(host, entry, 'greeting line too long'),
    });
    const onData = (chunk: Buffer) => {
      // Anything after the greeting (a timeout's 421, say) makes the connection unfit for a session.
      if (entry.ready) return this.dropped(host, entry);
      entry.chunks.push(chunk);
      entry.bytes += chunk.length;
      if (entry.bytes > MAX_GREETING_BYTES) return this.failed(host, entry, 'greeting too long');
      splitter.push(chunk);
    };
    const onError = (err: Error) => (entry.ready ? this.dropped(host, entry) : this.failed(host, entry, err.message));
    const onGone = () => (entry.ready ? this.dropped(host, entry) : this.failed(host, entry, 'closed before the greeting'));
    socket.on('data', onData).on('error', onError).on('end', onGone).on('close', onGone);
    entry.off = () => socket.off('data', onData).off('error', onError).off('end', onGone).off('close', onGone);
    entry.timer = setTimeout(() => this.failed(host, entry, 'no greeting in time'), connectMs + greetingMs);
    entry.timer.unref();
  }

  private greeted(host: string, entry: Entry): void {
    const m = this.members.get(host);
    if (m === undefined || !m.entries.has(entry)) return;
    clearTimeout(entry.timer);
    entry.ready = true;
    entry.socket.setNoDelay(true);
    entry.timer = setTimeout(() => this.aged(host, entry), this.options.maxAgeMs);
    entry.timer.unref();
    if (m.failures > 0) this.options.log.info({ upstream: host, failures: m.failures }, 'warm upstream connections work again');
    m.failures = 0;
  }

  /** Not taken in time: said goodbye to, and replaced. */
  private aged(host: string, entry: Entry): void {
    const m = this.members.get(host);
    if (m === undefined || !m.entries.delete(entry)) return;
    this.release(entry);
    quit(entry.socket);
    this.fill(host);
  }

  /** A ready connection the upstream closed or wrote to: replaced at once (the member greeted it). */
  private dropped(host: string, entry: Entry): void {
    const m = this.members.get(host);
    if (m === undefined || !m.entries.delete(entry)) return;
    this.release(entry);
    entry.socket.destroy();
    this.fill(host);
  }

  /** Refused, reset, silent or a greeting other than 220: retried after a doubling delay. */
  private failed(host: string, entry: Entry, reason: string): void {
    const m = this.members.get(host);
    if (m === undefined || !m.entries.delete(entry)) return;
    this.release(entry);
    entry.socket.destroy();
    m.failures++;
    if (m.failures === 1) this.options.log.warn({ upstream: host, reason }, 'warm upstream connection failed; retrying with backoff');
    if (m.retry !== undefined) return;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (m.failures - 1));
    m.retry = setTimeout(() => {
      m.retry = undefined;
      this.fill(host);
    }, delay);
    m.retry.unref();
  }

  private release(entry: Entry): void {
    clearTimeout(entry.timer);
    entry.off();
    entry.socket.on('error', () => undefined); // whoever holds it now listens too; this one only keeps a late error quiet
  }

  private dropMember(m: Member): void {
    clearTimeout(m.retry);
    m.retry = undefined;
    for (const entry of m.entries) {
      this.release(entry);
      if (entry.ready) quit(entry.socket);
      else entry.socket.destroy();
    }
    m.entries.clear();
  }
}

/** QUIT, read the 221, and close; destroyed if the upstream does not close in time. */
function quit(socket: Socket): void {
  socket.setTimeout(QUIT_GRACE_MS, () => socket.destroy());
  socket.resume();
  socket.end(QUIT);
}
