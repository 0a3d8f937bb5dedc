// HAProxy (Debian's `haproxy`) as a real PROXY protocol peer in a namespace:
// `send-proxy`/`send-proxy-v2` in front of the gateway (a balancer), or
// `accept-proxy` behind it (a parser whose log shows the carried client).
// It runs in the foreground (`-db`), logs raw lines to stdout, and is
// stopped by its pid.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Role, stopChild, type Topology } from './topology.js';

export const HAPROXY_BINARY = '/usr/sbin/haproxy';
const READY_TIMEOUT_MS = 10_000;

export interface TcpProxy {
  /** The frontend's `bind` (address:port and options, e.g. `accept-proxy`). */
  readonly bind: string;
  /** The one server's address:port and options (e.g. `send-proxy-v2`). */
  readonly server: string;
}

export interface RunningHaproxy {
  readonly pid: number;
  /** Every line HAProxy printed (its log lines are `client=<ip>:<port> frontend=<name>`). */
  output(): string;
  stop(): Promise<void>;
}

/** One TCP frontend and backend per proxy, logging the client each connection came from (or the client a PROXY header named). */
export function haproxyConfig(proxies: Readonly<Record<string, TcpProxy>>): string {
  const lines = [
    'global',
    '  log stdout format raw local0',
    'defaults',
    '  mode tcp',
    '  log global',
    '  log-format "client=%ci:%cp frontend=%f status=%ts"',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
  ];
  for (const [name, p] of Object.entries(proxies)) {
    lines.push(`frontend ${name}`, `  bind ${p.bind}`, `  default_backend ${name}_be`);
    lines.push(`backend ${name}_be`, `  server s1 ${p.server}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Start HAProxy in `role`'s namespace; resolves once every frontend's port is listening there. */
export async function startHaproxy(topo: Topology, role: Role, proxies: Readonly<Record<string, TcpProxy>>): Promise<RunningHaproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'ftpalg-e2e-haproxy-'));
  const file = join(dir, 'haproxy.cfg');
  await writeFile(file, haproxyConfig(proxies));
  const child: ChildProcess = topo.spawn(role, HAPROXY_BINARY, ['-db', '-f', file]);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (output += s));
  const stop = async () => {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  const ports = Object.values(proxies).map((p) => Number(/:(\d+)/.exec(p.bind)?.[1]));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const listening = await topo.exec(role, 'ss', ['-Hltn']);
    if (ports.every((port) => listening.stdout.includes(`:${port} `))) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy did not start (exit ${child.exitCode}):\n${output}\n--- config\n${haproxyConfig(proxies)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: child.pid ?? -1, output: () => output, stop };
}
