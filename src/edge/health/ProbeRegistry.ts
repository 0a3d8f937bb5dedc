/**
 * The process's probers: one per distinct upstream (address, port and
 * check login), shared by every site and pool that uses it, so the IPv4
 * and IPv6 sites of one server, or two sites in front of one pool, probe it
 * once. Each subscriber says when a probe would tell it something; the
 * prober sends one at the earliest such time plus jitter (0-20% of the
 * wait, so instances and sites do not probe in step), and gives the result
 * to every subscriber.
 */
import type { ProbeLogin } from './probeDialog.js';
import { probeOnce, type ProbeResult, type ProbeTarget } from './probe.js';

export interface ProbeSubscriber {
  /** When a probe would tell this subscriber something (performance.now() time), or undefined. */
  probeAt(): number | undefined;
  probed(result: ProbeResult, now: number): void;
  /** Another subscriber's real session reached the same upstream: as good as a probe. */
  reachedElsewhere(now: number): void;
}

export interface ProbeSubscription {
  /** The subscriber's wish changed (a member was ejected): schedule again. */
  wake(): void;
  /** A real session of this subscriber reached the upstream: the others need not probe it. */
  reached(): void;
  cancel(): void;
}

export interface ProbeRegistryOptions {
  /** Told of every probe that succeeded (for the latency histogram), by upstream address. */
  readonly observe?: (upstream: string, seconds: number) => void;
  readonly run?: (target: ProbeTarget) => Promise<ProbeResult>;
  readonly random?: () => number;
}

const JITTER = 0.2;

export class ProbeRegistry {
  private readonly probers = new Map<string, SharedProber>();

  constructor(private readonly options: ProbeRegistryOptions = {}) {}

  /** Probers alive now (one per distinct upstream). */
  get size(): number {
    return this.probers.size;
  }

  subscribe(
    target: { host: string; port: number; login: ProbeLogin | undefined; proxyHeader?: 1 | 2 },
    timeoutMs: number,
    subscriber: ProbeSubscriber,
  ): ProbeSubscription {
    const key = JSON.stringify([target.host, target.port, target.login?.user ?? '', target.login?.password ?? '', target.proxyHeader ?? 0]);
    let prober = this.probers.get(key);
    if (prober === undefined) {
      prober = new SharedProber(target, this.options);
      this.probers.set(key, prober);
    }
    const p = prober;
    p.add(subscriber, timeoutMs);
    return {
      wake: () => p.schedule(),
      reached: () => p.reached(subscriber),
      cancel: () => {
        if (p.remove(subscriber) === 0) this.probers.delete(key);
      },
    };
  }

  close(): void {
    for (const p of this.probers.values()) p.stop();
    this.probers.clear();
  }
}

class SharedProber {
  private readonly subscribers = new Map<ProbeSubscriber, number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private stopped = false;

  constructor(
    private readonly target: { host: string; port: number; login: ProbeLogin | undefined; proxyHeader?: 1 | 2 },
    private readonly options: ProbeRegistryOptions,
  ) {}

  add(subscriber: ProbeSubscriber, timeoutMs: number): void {
    this.subscribers.set(subscriber, timeoutMs);
    this.schedule();
  }

  remove(subscriber: ProbeSubscriber): number {
    this.subscribers.delete(subscriber);
    if (this.subscribers.size === 0) this.stop();
    else this.schedule();
    return this.subscribers.size;
  }

  reached(by: ProbeSubscriber): void {
    if (this.subscribers.size === 1) return; // a timer that fires early finds nothing due and waits again
    const now = performance.now();
    for (const s of [...this.subscribers.keys()]) if (s !== by) s.reachedElsewhere(now);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One timer, for the earliest wish of any subscriber. */
  schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running || this.stopped) return;
    const at = this.earliest();
    if (at === undefined) return;
    const wait = Math.max(0, at - performance.now());
    const jittered = wait * (1 + JITTER * (this.options.random ?? Math.random)());
    this.timer = setTimeout(() => void this.fire(), jittered);
    this.timer.unref();
  }

  private earliest(): number | undefined {
    let at: number | undefined;
    for (const s of this.subscribers.keys()) {
      const t = s.probeAt();
      if (t !== undefined && (at === undefined || t < at)) at = t;
    }
    return at;
  }

  private async fire(): Promise<void> {
    this.timer = undefined;
    const at = this.earliest();
    if (at === undefined || at > performance.now()) return this.schedule();
    this.running = true;
    const timeoutMs = Math.max(...this.subscribers.values());
    const result = await (this.options.run ?? probeOnce)({ ...this.target, timeoutMs });
    this.running = false;
    if (this.stopped) return;
    if (result.ok) this.options.observe?.(this.target.host, result.ms / 1000);
    const now = performance.now();
    for (const s of [...this.subscribers.keys()]) s.probed(result, now);
    this.schedule();
  }
}
