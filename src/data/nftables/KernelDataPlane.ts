/**
 * The kernel data plane: pinholes as elements of the gateway's own nftables
 * table (see ruleset.ts), driven over netlink from the process
 * (NetlinkDriver.ts, which also deletes flows) or, when the native module
 * cannot load, through one long-lived `nft -i` (NftShell.ts) and
 * `conntrack -D`; flow starts and ends come from one `conntrack -E`
 * (FlowWatch.ts). The table itself is installed and removed by the `nft` CLI.
 * What the kernel cannot do alone
 * goes to the relay plane, per pinhole, logged and counted: legs of two
 * families, mode conversion (both legs listen or both connect), TLS data, a
 * fixed source port, and everything while nft or conntrack is down.
 */
import { readFileSync } from 'node:fs';
import { familyOf } from '../../common/address.js';
import { KernelPlaneError } from '../../common/errors.js';
import type { PortRange } from '../../config/types.js';
import type { Logger } from '../../observe/logger.js';
import type { Metrics } from '../../observe/metrics.js';
import type { DataPlane, ForwardRequest, PinholeHandle, PinholeRequest } from '../DataPlane.js';
import { flowEnded, parseFlowEvent } from './flowEvents.js';
import { FlowWatch } from './FlowWatch.js';
import type { Tuple } from './flowEvents.js';
import type { Family } from '../../common/address.js';
import { runTool } from './child.js';
import type { ElementDriver } from './ElementDriver.js';
import { ForwardEntry } from './ForwardEntry.js';
import { type KernelLegs, KernelPinhole } from './KernelPinhole.js';
import { loadNetlink, NetlinkDriver } from './NetlinkDriver.js';
import { NftShell } from './NftShell.js';
import { deleteTableCommand, probeOps, tableScript } from './ruleset.js';

const RESTART_DELAY_MS = 1_000;

/** Why a pinhole is relayed instead: the metric's `reason`. */
export type RelayReason = 'family' | 'mode-conversion' | 'tls' | 'kernel-error' | 'source-port' | 'proxy-header';

export interface KernelPlaneOptions {
  readonly fallback: DataPlane;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Every pinhole range of every site at start: flows a killed predecessor left on them are cut. */
  readonly ranges: readonly PortRange[];
}

export class KernelDataPlane implements DataPlane {
  readonly kind = 'nftables';
  private elements: ElementDriver = new NftShell();
  private readonly flows = new FlowWatch();
  /** Ends a flow now: over netlink, or `conntrack -D`. */
  private cut: (family: Family, flow: Tuple) => Promise<void> = (family, flow) => this.flows.cut(family, flow);
  private healthy = false;
  private closing = false;

  constructor(private readonly options: KernelPlaneOptions) {}

  /** The element driver in use: `netlink` or `nft`. */
  get driver(): ElementDriver['name'] {
    return this.elements.name;
  }

  get shards(): number {
    return this.options.fallback.shards;
  }

  /**
   * Install the table (replacing a stale one), start the element driver and
   * the flow events, cut flows left on the ranges. On failure nothing of it is left running (the
   * relay plane it falls back to stays open).
   */
  async start(): Promise<void> {
    try {
      await runTool('nft', ['-f', '-'], tableScript(), 'install');
      this.chooseDrivers();
      await this.flows.start().catch((err: Error) => {
        throw new KernelPlaneError('conntrack', err.message);
      });
      await this.cutStaleFlows();
      this.elements.start();
      await this.elements.apply('probe', probeOps());
    } catch (err) {
      await this.stopTools();
      throw err;
    }
    this.flows.onExit = (reason) => this.lost('conntrack', reason);
    this.healthy = true;
  }

  pinhole(request: PinholeRequest): PinholeHandle {
    const { site, metrics } = request;
    const plan = this.plan(request);
    if (typeof plan === 'string') {
      metrics.pinholesByPlane.inc({ site, plane: 'relay', reason: plan });
      request.log.info({ dir: request.dir, reason: plan }, 'pinhole relayed');
      return this.options.fallback.pinhole(request);
    }
    metrics.pinholesByPlane.inc({ site, plane: 'nftables', reason: 'kernel' });
    const deps = { elements: this.elements, flows: this.flows, cut: this.cut, onError: (op: string) => this.countError(op), shards: this.shards };
    return new KernelPinhole(deps, request, plan);
  }

  /** A transparent site's direct passive flow: one forward entry (fwd4/fwd6), or 425 while the plane is down. */
  forward(request: ForwardRequest): PinholeHandle {
    request.metrics.pinholesByPlane.inc({ site: request.site, plane: 'nftables', reason: 'forward' });
    return new ForwardEntry({ elements: this.elements, healthy: () => this.healthy, onError: (op) => this.countError(op) }, request);
  }

  metricsJson(): Promise<unknown[]> {
    return this.options.fallback.metricsJson();
  }

  /** Remove the table, end nft and conntrack, close the relay plane. */
  async close(): Promise<void> {
    await this.stopTools();
    await this.options.fallback.close();
  }

  private async stopTools(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.healthy = false;
    await this.elements.close();
    await runTool('nft', deleteTableCommand().split(' '), undefined, 'teardown').catch(() => undefined);
    await this.flows.close();
  }

  /** The kernel's legs, or why the relay must carry this pinhole. */
  private plan(request: PinholeRequest): KernelLegs | RelayReason {
    if (request.tls?.client !== undefined || request.tls?.upstream !== undefined) return 'tls';
    if (!this.healthy) return 'kernel-error';
    const { client, upstream } = request;
    if (client.kind === upstream.kind) return 'mode-conversion';
    const [listenReq, connect] = client.kind === 'listen' ? [client, upstream] : [upstream, client];
    if (listenReq.kind !== 'listen' || connect.kind !== 'connect') return 'mode-conversion';
    if (connect.localPort !== undefined) return 'source-port';
    if (connect.proxyHeader !== undefined) return 'proxy-header'; // the kernel cannot write a PROXY header into a flow
    const source = connect.localAddress;
    const families = [listenReq.host, listenReq.expectedPeer, connect.host, source ?? ''].map(familyOrZero);
    if (source === undefined || families.some((f) => f !== families[0] || f === 0)) return 'family';
    const name = listenReq === client ? 'client' : 'upstream';
    return { listen: { name, host: listenReq.host, pool: listenReq.pool, expectedPeer: listenReq.expectedPeer }, connect: { ...connect, localAddress: source } };
  }

  /** Netlink for elements and flow deletions unless its native module cannot load: then `nft -i` and `conntrack -D`. Logged either way. */
  private chooseDrivers(): void {
    const factory = loadNetlink();
    if (!(factory instanceof Error)) {
      const netlink = new NetlinkDriver(factory);
      this.elements = netlink;
      this.cut = (family, flow) => netlink.cutFlow(family, flow);
      this.options.log.info({ driver: 'netlink', events: 'conntrack' }, 'nftables driver');
      return;
    }
    const shell = new NftShell();
    shell.onExit = (reason) => this.lost('nft', reason);
    this.elements = shell;
    this.options.log.info({ driver: 'nft', events: 'conntrack', why: factory.message }, 'nftables driver');
  }

  /** nft or conntrack died: new pinholes go to the relay until nft runs again (conntrack loss is final). */
  private lost(tool: 'nft' | 'conntrack', reason: string): void {
    if (this.closing) return;
    this.healthy = false;
    this.countError(tool);
    this.options.log.error({ tool, reason }, 'kernel data plane tool exited; new pinholes are relayed');
    if (tool !== 'nft') return;
    const timer = setTimeout(() => {
      if (this.closing) return;
      this.elements.start();
      this.healthy = true;
      this.options.log.info('kernel data plane: nft restarted');
    }, RESTART_DELAY_MS);
    timer.unref();
  }

  private countError(op: string): void {
    this.options.metrics.kernelPlaneErrors.inc({ op });
  }

  /** NATed flows on our ranges outlive a killed gateway in conntrack; a new one must not share their ports. */
  private async cutStaleFlows(): Promise<void> {
    const listing = await runTool('conntrack', ['-L', '-p', 'tcp'], undefined, 'list').catch(() => '');
    const inRange = (port: number) => this.options.ranges.some((r) => port >= r.min && port <= r.max);
    for (const line of listing.split('\n')) {
      const e = parseFlowEvent(line);
      // An ended flow (TIME_WAIT, CLOSE) is safe: a new SYN on its tuple makes conntrack drop it and start afresh.
      if (e === undefined || e.reply.src === e.orig.dst || !inRange(e.orig.dport) || flowEnded(e)) continue;
      await this.cut(familyOf(e.orig.src), e.orig);
      this.options.log.warn({ src: e.orig.src, port: e.orig.dport }, 'stale forwarded flow from an earlier run cut');
    }
  }
}

function familyOrZero(address: string): 4 | 6 | 0 {
  try {
    return familyOf(address);
  } catch {
    return 0;
  }
}

/** Can this process run the kernel plane? CAP_NET_ADMIN in effect, and IPv4 forwarding on. */
export function kernelPlaneUsable(): { usable: boolean; why: string } {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0';
    const CAP_NET_ADMIN = 12n;
    if (((BigInt(`0x${capEff}`) >> CAP_NET_ADMIN) & 1n) === 0n) return { usable: false, why: 'no CAP_NET_ADMIN' };
    const forwarding = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
    if (forwarding !== '1') return { usable: false, why: 'net.ipv4.ip_forward is 0' };
    return { usable: true, why: 'CAP_NET_ADMIN and forwarding' };
  } catch (err) {
    return { usable: false, why: (err as Error).message };
  }
}

