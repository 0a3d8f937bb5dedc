/**
 * One long-lived `nft -i` fed commands on stdin: no process per pinhole
 * (spawning `nft` costs 3.5 ms per add and 13 ms per delete; a command here
 * costs about 0.3 ms). nft prints nothing on success and names no command in
 * its errors, so every command is followed by a sentinel (`describe tcp
 * dport`, whose answer is one fixed line): what arrives before the sentinel
 * belongs to that command, and an `Error:` line among it fails it.
 * Commands are answered in order; several may be in flight.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { KernelPlaneError } from '../../common/errors.js';
import { endChild, onLines } from './child.js';
import type { ElementDriver } from './ElementDriver.js';
import { type Counter, type ElementOp, parseCounters, renderNft } from './ruleset.js';

const SENTINEL = 'describe tcp dport';
const SENTINEL_ANSWER = 'payload expression, datatype inet_service';
/** A command unanswered for this long means nft is stuck: it is killed and every pending command fails. */
const COMMAND_TIMEOUT_MS = 5_000;

interface Pending {
  readonly op: string;
  readonly lines: string[];
  readonly resolve: (lines: string[]) => void;
  readonly reject: (err: Error) => void;
  readonly sentAt: number;
}

export class NftShell implements ElementDriver {
  readonly name = 'nft';
  private child: ChildProcess | undefined;
  private readonly pending: Pending[] = [];
  private watchdog: NodeJS.Timeout | undefined;
  /** Called once when the process ends (it is not restarted here). */
  onExit: (reason: string) => void = () => undefined;

  constructor(
    private readonly binary = 'nft',
    private readonly commandTimeoutMs = COMMAND_TIMEOUT_MS,
  ) {}

  get alive(): boolean {
    return this.child !== undefined;
  }

  start(): void {
    // One pipe for both streams keeps an error and its sentinel in order.
    const child = spawn('sh', ['-c', `exec ${this.binary} -i 2>&1`], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child = child;
    onLines(child.stdout, (line) => this.onLine(line));
    child.stdin?.on('error', () => undefined); // reported through 'exit'
    child.once('exit', (code, signal) => this.onGone(`nft exited (${code ?? signal})`));
    child.once('error', (err) => this.onGone(`nft failed to start: ${err.message}`));
    this.watchdog = setInterval(() => this.checkStuck(), this.commandTimeoutMs / 5);
    this.watchdog.unref();
  }

  /** Run one line (one transaction); resolves with what nft printed, rejects with KernelPlaneError. */
  run(op: string, command: string): Promise<string[]> {
    if (command.includes('\n')) return Promise.reject(new KernelPlaneError(op, 'a command must be one line'));
    const stdin = this.child?.stdin;
    if (stdin === undefined || stdin === null || stdin.destroyed) return Promise.reject(new KernelPlaneError(op, 'nft is not running'));
    return new Promise((resolve, reject) => {
      this.pending.push({ op, lines: [], resolve, reject, sentAt: performance.now() });
      stdin.write(`${command}\n${SENTINEL}\n`);
    });
  }

  /** One transaction of element ops as one line; the counters nft printed for its `get` ops. */
  async apply(op: string, ops: readonly ElementOp[]): Promise<Counter[]> {
    return parseCounters(await this.run(op, renderNft(ops)));
  }

  /** End nft (stdin closed, then SIGKILL by pid after a bound). */
  async close(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    await endChild(child, () => child.stdin?.end());
  }

  private onLine(line: string): void {
    const current = this.pending[0];
    if (current === undefined) return; // nothing asked: ignore
    if (!line.startsWith(SENTINEL_ANSWER)) {
      current.lines.push(line);
      return;
    }
    this.pending.shift();
    const error = current.lines.find((l) => l.startsWith('Error:'));
    if (error === undefined) current.resolve(current.lines);
    else current.reject(new KernelPlaneError(current.op, error.slice('Error: '.length)));
  }

  private checkStuck(): void {
    const oldest = this.pending[0];
    if (oldest !== undefined && performance.now() - oldest.sentAt > this.commandTimeoutMs) {
      this.child?.kill('SIGKILL'); // 'exit' fails everything pending
    }
  }

  private onGone(reason: string): void {
    if (this.child === undefined) return;
    this.child = undefined;
    clearInterval(this.watchdog);
    for (const p of this.pending.splice(0)) p.reject(new KernelPlaneError(p.op, reason));
    this.onExit(reason);
  }
}
