// The gateway under test, run from the build (`node dist/cli.js --config f`)
// inside the edge namespace. It logs pino JSON lines to stdout, one line with
// "msg":"listening" per listener once ready.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATEWAY_CLI } from './prereq.js';
import { ADDR, stopChild, type Topology } from './topology.js';

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const MAX_LOG_CHARS = 2_000_000;

export const GATEWAY_PASSIVE_PORTS = { min: 50000, max: 50099 } as const;
export const GATEWAY_ACTIVE_PORTS = { min: 50100, max: 50199 } as const;
export const GATEWAY_PORT = 21;

/** A site's `tls` section (src/config/schema.ts). */
export interface GatewaySiteTls {
  certFile: string;
  keyFile: string;
  client?: 'optional' | 'required';
  implicit?: boolean;
  upstream?: 'plain' | 'explicit' | 'implicit';
  upstreamCaFile?: string;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  requireProtP?: boolean;
}

export interface GatewayConfig {
  log: { level: string };
  dataPlane?: { kind?: 'relay' | 'nftables' | 'auto'; workers?: number };
  /** The metrics endpoint, e.g. "127.0.0.1:0" (any free port: see RunningGateway.metricsAddress). */
  metrics?: { listen: string };
  sites: Array<{
    name: string;
    listen: { host: string; port: number; proxyProtocol?: 'off' | 'v1' | 'v2' | 'any'; trustedProxies?: string[] };
    upstream: { host?: string; port: number; hosts?: string[]; health?: Record<string, unknown>; maxAttempts?: number; proxyProtocol?: 'off' | 'v1' | 'v2'; warm?: number; warmMaxAgeMs?: number };
    /** One address, or one IPv4 and one IPv6. */
    externalAddress: string | string[];
    passivePorts: { min: number; max: number };
    activePorts: { min: number; max: number };
    upstreamDataMode?: 'client' | 'passive' | 'active';
    timeouts?: Record<string, number>;
    privateAddress?: string;
    limits?: { maxPinholesPerSession?: number };
    tls?: GatewaySiteTls;
  }>;
}

/** Outbound sites (role forward or transparent): no upstream, and further keys as the config file takes them. */
export interface OutboundGatewayConfig {
  log: { level: string };
  dataPlane?: { kind?: 'relay' | 'nftables' | 'auto' };
  metrics?: { listen: string };
  sites: Array<{ name: string; listen: { host: string; port: number }; [key: string]: unknown }>;
}

/** The one-site configuration of the e2e topology. */
export function e2eConfig(level = process.env.E2E_GATEWAY_LOG_LEVEL ?? 'info'): GatewayConfig {
  return {
    log: { level },
    sites: [
      {
        name: 'e2e',
        listen: { host: ADDR.edgePublic, port: GATEWAY_PORT },
        upstream: { host: ADDR.server, port: 21 },
        externalAddress: ADDR.edgePublic,
        passivePorts: { ...GATEWAY_PASSIVE_PORTS },
        activePorts: { ...GATEWAY_ACTIVE_PORTS },
      },
    ],
  };
}

export interface RunningGateway {
  pid: number;
  configFile: string;
  /** Everything the gateway printed so far (stdout then stderr lines, interleaved). */
  output(): string;
  /** True while the process has not exited. */
  alive(): boolean;
  /** How it exited, once it has. */
  exit(): { code: number | null; signal: NodeJS.Signals | null } | null;
  /** SIGTERM by pid, SIGKILL after a bound; idempotent. */
  stop(): Promise<void>;
  /** "host:port" of the metrics endpoint from its "metrics listening" line, once logged. */
  metricsAddress(): string | undefined;
}

function parseJsonLine(line: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The gateway's pino lines, parsed (other lines left out). */
export function jsonLines(output: string): Record<string, unknown>[] {
  return output.split('\n').flatMap((line) => {
    const v = parseJsonLine(line);
    return v === null ? [] : [v];
  });
}

/** Starts `cli` (the build under test unless told otherwise: a bench compares builds) with `config` in the edge namespace. */
export async function startGateway(topo: Topology, config: GatewayConfig | OutboundGatewayConfig = e2eConfig(), cli = GATEWAY_CLI): Promise<RunningGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'ftpalg-e2e-gw-'));
  const configFile = join(dir, 'gateway.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const child: ChildProcess = topo.spawn('edge', process.execPath, [cli, '--config', configFile]);
  let output = '';
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const append = (s: string): void => {
    output = (output + s).slice(-MAX_LOG_CHARS);
  };
  child.stdout?.setEncoding('utf8').on('data', append);
  child.stderr?.setEncoding('utf8').on('data', (s: string) => append(`[stderr] ${s}`));
  child.once('exit', (code, signal) => {
    exitInfo = { code, signal };
  });

  const wanted = config.sites.length;
  const listening = (): number =>
    output
      .split('\n')
      .map(parseJsonLine)
      .filter((o) => o !== null && o.msg === 'listening').length;

  // Bounded wait for one "listening" line per site.
  const ready = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(() => done(`no "listening" line within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
    const check = (): void => {
      if (listening() >= wanted) done(null);
    };
    const onExit = (): void => done(`gateway exited before listening (${JSON.stringify(exitInfo)})`);
    function done(reason: string | null): void {
      clearTimeout(timer);
      child.stdout?.off('data', check);
      child.off('exit', onExit);
      resolve(reason);
    }
    child.stdout?.on('data', check);
    child.once('exit', onExit);
    check();
  });

  let stopped = false;
  const gw: RunningGateway = {
    pid: child.pid ?? -1,
    configFile,
    output: () => output,
    alive: () => exitInfo === null,
    exit: () => exitInfo,
    metricsAddress: () => {
      const line = output
        .split('\n')
        .map(parseJsonLine)
        .find((o) => o !== null && o.msg === 'metrics listening');
      return typeof line?.http === 'string' ? line.http : undefined;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild(child, STOP_TIMEOUT_MS);
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (ready !== null) {
    await gw.stop();
    throw new Error(`gateway did not start: ${ready}\n--- config\n${JSON.stringify(config)}\n--- output\n${output}`);
  }
  return gw;
}
