/**
 * The balancer's health checks (`ftp-alg --balancer-agent`): every interval
 * it asks each instance's /readyz (the metrics listener's port on the
 * instance's address) and points the control map of the generated balancer
 * (balancer.ts) at the instances that answer 2xx within the interval.
 * FALL_CHECKS failed checks in a row take an instance out (a refused
 * connection, no answer in time, 503 while it drains); RISE_CHECKS good ones
 * in a row bring it back. So a failed instance stops getting new sessions
 * within FALL_CHECKS intervals of its failure (plus one probe timeout, an
 * interval, if it hangs instead of refusing). The map is rewritten in one
 * nft transaction when its targets change, after a failed write, and every
 * REWRITE_EVERY_CHECKS checks anyway (a ruleset loaded again under a
 * running agent starts with every slot on its owner). Connections already
 * made keep their DNAT in conntrack, so nothing running is moved. Passive slices are not touched: a slice has one
 * owner, and its sessions live and die with it.
 */
import { execFile } from 'node:child_process';
import ipaddr from 'ipaddr.js';
import { parseListenAddress } from '../config/formats.js';
import type { GatewayConfig } from '../config/types.js';
import type { Logger } from '../observe/logger.js';
import { BalancerError, controlMapUpdate, slotTargets } from './balancer.js';
import { healthUrl } from './healthUrl.js';

/** Failed checks in a row before an instance is taken out (one slow answer on a busy host is not a failure). */
export const FALL_CHECKS = 2;
/** Good checks in a row before an instance that was down gets new sessions again. */
export const RISE_CHECKS = 2;
/** Checks between two writes of an unchanged map. */
export const REWRITE_EVERY_CHECKS = 30;
export const DEFAULT_CHECK_INTERVAL_MS = 1_000;
export const MIN_CHECK_INTERVAL_MS = 100;
const NFT_TIMEOUT_MS = 5_000;

export interface AgentOptions {
  /** Each instance's address, in instance order. */
  readonly instances: readonly string[];
  /** Each instance's /readyz URL, in instance order. */
  readonly urls: readonly string[];
  readonly intervalMs: number;
  readonly log: Logger;
  /** Runs an nft script (default: `nft -f -`). */
  readonly apply?: (script: string) => Promise<void>;
  /** Answers whether `url` said 2xx within `timeoutMs` (default: fetch). */
  readonly probe?: (url: string, timeoutMs: number) => Promise<ProbeResult>;
}

export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Each instance's /readyz: the port of the config's metrics.listen, on the instance's address. */
export function probeUrls(config: GatewayConfig, instances: readonly string[]): string[] {
  const listen = config.metrics.listen;
  const address = parseListenAddress(listen);
  if (listen === '' || address === undefined) {
    throw new BalancerError('the agent asks each instance\'s /readyz: set metrics.listen (e.g. "0.0.0.0:9464") on every instance');
  }
  if (address.port === 0) throw new BalancerError(`metrics.listen ${listen}: port 0 cannot be probed, give a port`);
  if (ipaddr.parse(address.host).range() === 'loopback') {
    throw new BalancerError(`metrics.listen ${listen} is loopback only: the balancer cannot reach it, bind the instance's address or 0.0.0.0`);
  }
  return instances.map((host) => healthUrl(host, address.port, '/readyz'));
}

export class BalancerAgent {
  private readonly apply: (script: string) => Promise<void>;
  private readonly probe: (url: string, timeoutMs: number) => Promise<ProbeResult>;
  /** Per instance: up (undefined: not yet checked), and checks in a row against that state. */
  private readonly state: { up: boolean | undefined; against: number }[];
  private written: string | undefined;
  private checksSinceWrite = 0;
  private failedWrites = 0;
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: AgentOptions) {
    this.apply = options.apply ?? runNft;
    this.probe = options.probe ?? probeHttp;
    this.state = options.instances.map(() => ({ up: undefined, against: 0 }));
  }

  /** Checks now, then every interval until stop(). */
  start(): void {
    this.options.log.info({ instances: this.options.instances, urls: this.options.urls, intervalMs: this.options.intervalMs }, 'balancer agent started');
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.round;
  }

  /** One round: probe every instance, then write the map if its targets changed. */
  async check(): Promise<void> {
    const results = await Promise.all(this.options.urls.map((url) => this.probe(url, this.options.intervalMs)));
    results.forEach((result, i) => this.record(i, result));
    const up = this.state.map((s) => s.up === true);
    const targets = slotTargets(this.options.instances, up);
    const script = controlMapUpdate(targets);
    this.checksSinceWrite += 1;
    const changed = script !== this.written;
    if (!changed && this.checksSinceWrite < REWRITE_EVERY_CHECKS) return;
    if (changed && !up.some(Boolean)) this.options.log.error('no instance is up: every control slot goes to its owner');
    try {
      await this.apply(script);
      this.written = script;
      this.checksSinceWrite = 0;
      this.failedWrites = 0;
      if (changed) this.options.log.info({ targets, up: this.options.instances.filter((_, i) => up[i]) }, 'control map updated');
    } catch (err) {
      this.written = undefined;
      this.failedWrites += 1;
      // Once, then every REWRITE_EVERY_CHECKS failures: a missing ruleset must not flood the journal.
      if (this.failedWrites % REWRITE_EVERY_CHECKS === 1) {
        this.options.log.error({ err, failedWrites: this.failedWrites }, 'control map not updated (is the balancer ruleset loaded?); trying again next check');
      }
    }
  }

  /** The first check decides at once; after that FALL_CHECKS or RISE_CHECKS in a row change the state. */
  private record(i: number, result: ProbeResult): void {
    const s = this.state[i];
    if (s === undefined) return;
    if (s.up === result.ok) {
      s.against = 0;
      return;
    }
    s.against += 1;
    if (s.up !== undefined && s.against < (result.ok ? RISE_CHECKS : FALL_CHECKS)) return;
    s.up = result.ok;
    s.against = 0;
    const instance = this.options.instances[i];
    if (result.ok) this.options.log.info({ instance }, 'instance up');
    else this.options.log.warn({ instance, reason: result.reason }, 'instance down');
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const started = Date.now();
      this.round = this.check().finally(() => this.schedule(Math.max(0, this.options.intervalMs - (Date.now() - started))));
    }, delayMs);
  }
}

async function probeHttp(url: string, timeoutMs: number): Promise<ProbeResult> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return response.ok ? { ok: true } : { ok: false, reason: `HTTP ${response.status}` };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { ok: false, reason: cause ?? (err as Error).message };
  }
}

function runNft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], { timeout: NFT_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(new BalancerError(`nft: ${stderr.trim() || err.message}`));
    });
    child.stdin?.end(script);
  });
}
