/**
 * The original destination of a redirected connection, for transparent
 * sites. Node exposes neither SO_ORIGINAL_DST nor IP_TRANSPARENT, so it
 * comes from connection tracking: one long-lived `conntrack -E -e NEW`
 * child per listener port (filtered by the reply tuple: source port = the
 * listener), whose events are kept for a few seconds by the reply tuple,
 * which is what the accepted socket sees (client, client port as NAT left
 * it, local address and port). The SYN's event is
 * emitted when the kernel confirms the flow, before the handshake ends, so
 * an accept nearly always finds it waiting (a map lookup); otherwise it
 * waits for it briefly, then asks `conntrack -L` once. Never a guess: no
 * entry, or an entry that was not redirected, is `undefined`.
 *
 * (The kernel data plane drives conntrack the same way, from a child of its
 * own; both read its lines with one parser, data/nftables/flowEvents.ts.)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { endChild, onLines } from '../data/nftables/child.js';
import { parseFlowEvent, type Tuple } from '../data/nftables/flowEvents.js';
import type { Logger } from '../observe/logger.js';

export interface Flow {
  readonly orig: Tuple;
  readonly reply: Tuple;
}

/** The accepted socket's two ends. */
export interface Accepted {
  readonly client: string;
  readonly clientPort: number;
  readonly local: string;
  readonly localPort: number;
}

export interface OriginalDestination {
  readonly host: string;
  readonly port: number;
}

/** `conntrack -E` / `-L` line: its two tuples (the one parser, data/nftables/flowEvents.ts). Total. */
export function parseFlow(line: string): Flow | undefined {
  const event = parseFlowEvent(line);
  return event === undefined ? undefined : { orig: event.orig, reply: event.reply };
}

/** Where `accepted` was going before the edge redirected it; undefined when `flow` is not its flow or was not redirected. */
export function originalDestination(flow: Flow, accepted: Accepted): OriginalDestination | undefined {
  const { orig, reply } = flow;
  // The reply tuple is what the accepted socket sees: NAT may have remapped the client's port (two
  // connections from one client port to two servers would otherwise meet on one listener tuple).
  const mine =
    orig.src === accepted.client &&
    reply.dst === accepted.client &&
    reply.dport === accepted.clientPort &&
    reply.src === accepted.local &&
    reply.sport === accepted.localPort;
  if (!mine) return undefined;
  if (orig.dst === accepted.local && orig.dport === accepted.localPort) return undefined; // dialled the gateway itself
  return { host: orig.dst, port: orig.dport };
}

const key = (client: string, clientPort: number, local: string, localPort: number) => `${client}|${clientPort}|${local}|${localPort}`;

/** Events kept this long for an accept to claim them, and at most this many. */
const KEEP_MS = 10_000;
const MAX_KEPT = 65_536;
const TOOL_TIMEOUT_MS = 2_000;

export interface ConntrackOptions {
  /** The listener's port: only flows redirected to it are kept. */
  readonly port: number;
  readonly log: Logger;
  /** How long an accept waits for its event before asking `conntrack -L`. */
  readonly waitMs?: number;
  readonly binary?: string;
}

export class OriginalDestinations {
  private child: ChildProcess | undefined;
  private readonly flows = new Map<string, { readonly flow: Flow; readonly at: number }>();
  private readonly waiters = new Map<string, (flow: Flow) => void>();
  private closing = false;

  constructor(private readonly options: ConntrackOptions) {}

  /** Resolves once the conntrack child runs (it prints nothing until an event); rejects if it cannot start. */
  start(): Promise<void> {
    const { binary = 'conntrack', port, log } = this.options;
    const child = spawn(binary, ['-E', '-e', 'NEW', '-p', 'tcp', '--reply-port-src', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    onLines(child.stdout, (line) => this.onLine(line));
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr = (stderr + s).slice(-2000);
    });
    return new Promise((resolve, reject) => {
      const ready = setTimeout(resolve, 200);
      child.once('error', (err) => {
        clearTimeout(ready);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(ready);
        if (this.child === child) this.child = undefined;
        const reason = `conntrack exited (${code ?? signal}): ${stderr.trim()}`;
        reject(new Error(reason));
        // Lookups go on through `conntrack -L` alone (slower, still exact).
        if (!this.closing) log.error({ reason }, 'original-destination events lost');
      });
    });
  }

  /** Where the accepted connection was going, or undefined (not found, or not redirected). */
  async lookup(accepted: Accepted): Promise<OriginalDestination | undefined> {
    const k = key(accepted.client, accepted.clientPort, accepted.local, accepted.localPort);
    const kept = this.flows.get(k);
    if (kept !== undefined) {
      this.flows.delete(k);
      return originalDestination(kept.flow, accepted);
    }
    const flow = this.child === undefined ? undefined : await this.waitFor(k, this.options.waitMs ?? 100);
    if (flow !== undefined) return originalDestination(flow, accepted);
    return this.query(accepted);
  }

  async close(): Promise<void> {
    this.closing = true;
    const child = this.child;
    this.child = undefined;
    this.flows.clear();
    if (child !== undefined) await endChild(child, () => child.kill('SIGTERM'));
  }

  private waitFor(k: string, ms: number): Promise<Flow | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(k);
        resolve(undefined);
      }, ms);
      this.waiters.set(k, (flow) => {
        clearTimeout(timer);
        resolve(flow);
      });
    });
  }

  private onLine(line: string): void {
    const flow = parseFlow(line);
    if (flow === undefined) return;
    const k = key(flow.reply.dst, flow.reply.dport, flow.reply.src, flow.reply.sport);
    const waiter = this.waiters.get(k);
    if (waiter !== undefined) {
      this.waiters.delete(k);
      return waiter(flow);
    }
    const now = performance.now();
    this.flows.set(k, { flow, at: now });
    // Oldest first (insertion order): forget what no accept claimed in time.
    for (const [old, entry] of this.flows) {
      if (now - entry.at < KEEP_MS && this.flows.size <= MAX_KEPT) break;
      this.flows.delete(old);
    }
  }

  /** The slow path: one `conntrack -L` for exactly this connection. */
  private query(accepted: Accepted): Promise<OriginalDestination | undefined> {
    const family = accepted.client.includes(':') ? 'ipv6' : 'ipv4';
    const args = ['-L', '-f', family, '-p', 'tcp', '--reply-dst', accepted.client, '--reply-port-dst', String(accepted.clientPort), '--reply-port-src', String(accepted.localPort)];
    return new Promise((resolve) => {
      execFile(this.options.binary ?? 'conntrack', args, { timeout: TOOL_TIMEOUT_MS }, (err, stdout) => {
        if (err !== null && stdout === '') {
          this.options.log.warn({ err: err.message }, 'conntrack -L failed');
          return resolve(undefined);
        }
        for (const line of stdout.split('\n')) {
          const flow = parseFlow(line);
          const found = flow === undefined ? undefined : originalDestination(flow, accepted);
          if (found !== undefined) return resolve(found);
        }
        resolve(undefined);
      });
    });
  }
}
