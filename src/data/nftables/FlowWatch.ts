/**
 * Conntrack events of the gateway's network namespace from one long-lived
 * `conntrack -E` child, handed to whoever watches a (pinhole address, port).
 * (Not a ctnetlink subscription in the process: see ctNetlink.ts for why.)
 * Events rather than polling: a flow's start and end arrive within
 * milliseconds, cost nothing while nothing happens, and an ended flow (both
 * FINs, a reset, or gone) is the signal that gives a port back to its pool.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Family } from '../../common/address.js';
import { endChild, onLines, runTool } from './child.js';
import { type FlowEvent, parseFlowEvent, type Tuple } from './flowEvents.js';

export type FlowListener = (event: FlowEvent) => void;

const EVENT_BUFFER_BYTES = 4 * 1024 * 1024;
const FIRST_DPORT = /\bdport=(\d+)/;


export class FlowWatch {
  private child: ChildProcess | undefined;
  private readonly listeners = new Map<string, FlowListener>();
  /** How many watchers each port has (any address). */
  private readonly ports = new Map<number, number>();
  onExit: (reason: string) => void = () => undefined;

  constructor(private readonly binary = 'conntrack') {}

  /** Resolves once conntrack is listening (it prints a banner on stderr first). */
  start(): Promise<void> {
    // A large socket buffer: a burst of events must not overrun it (a lost end is caught by the idle check).
    const child = spawn(this.binary, ['-E', '-p', 'tcp', '-o', 'id', '-b', String(EVENT_BUFFER_BYTES)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    onLines(child.stdout, (line) => this.onLine(line));
    return new Promise((resolve, reject) => {
      let stderr = '';
      const ready = setTimeout(() => resolve(), 300); // conntrack -E prints nothing when it works
      ready.unref();
      child.stderr?.setEncoding('utf8').on('data', (s: string) => {
        stderr += s;
      });
      child.once('error', (err) => {
        clearTimeout(ready);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(ready);
        const reason = `conntrack exited (${code ?? signal}) ${stderr.trim()}`;
        if (this.child === child) {
          this.child = undefined;
          reject(new Error(reason));
          this.onExit(reason);
        }
      });
    });
  }

  watch(address: string, port: number, listener: FlowListener): void {
    const key = `${address}|${port}`;
    if (!this.listeners.has(key)) this.ports.set(port, (this.ports.get(port) ?? 0) + 1);
    this.listeners.set(key, listener);
  }

  unwatch(address: string, port: number): void {
    if (!this.listeners.delete(`${address}|${port}`)) return;
    const left = (this.ports.get(port) ?? 1) - 1;
    if (left === 0) this.ports.delete(port);
    else this.ports.set(port, left);
  }

  /** Delete one flow with `conntrack -D` (the fallback of NetlinkDriver.cutFlow); resolves whether or not it existed. */
  async cut(family: Family, flow: Tuple): Promise<void> {
    const args = ['-D', '-f', family === 4 ? 'ipv4' : 'ipv6', '-p', 'tcp', '-s', flow.src, '-d', flow.dst, '--sport', `${flow.sport}`, '--dport', `${flow.dport}`];
    await runTool(this.binary, args, undefined, 'cut').catch(() => undefined); // gone already: fine
  }

  async close(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    await endChild(child, () => child.kill('SIGTERM'));
  }

  private onLine(line: string): void {
    // Most events are not a pinhole's (control connections, other traffic): the first dport= is the
    // original destination port, and only a watched one is worth a full parse.
    const dport = FIRST_DPORT.exec(line)?.[1];
    if (dport === undefined || !this.ports.has(Number(dport))) return;
    const event = parseFlowEvent(line);
    if (event !== undefined) this.listeners.get(`${event.orig.dst}|${event.orig.dport}`)?.(event);
  }
}
