// Three network namespaces that model a NAT edge:
//
//   client ns                 edge ns                          server ns
//   203.0.113.10/24  ──veth── 203.0.113.1/24
//   2001:db8:1::10/64         2001:db8:1::1/64
//                             192.0.2.1/24     ──veth──        192.0.2.10/24
//
// The client has only its connected routes, so 192.0.2.0/24 is unreachable
// from it; the edge does not forward. The only way from the client to the
// server is an application-layer gateway running in the edge namespace.
//
// Both sides have IPv6 too: 2001:db8:1::/64 inside (client ::10, edge ::1),
// 2001:db8:2::/64 outside (edge ::1, server ::10), with the same reachability.
//
// The `outbound` layout reverses the roles (issue 15): the client is inside
// (203.0.113.0/24, its default route via the edge), the server outside with
// no route back to the inside at all, and the edge forwards and masquerades
// out of 192.0.2.1, its external address, with no FTP conntrack helper.
// Namespace names carry the creating process id and a random suffix, so test
// files running in parallel never collide, and a later run can remove the
// namespaces of a run that died before its teardown.
import {
  execFile,
  execFileSync,
  spawn as spawnChild,
  type ChildProcess,
  type SpawnOptions,
} from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const ADDR = {
  client: '203.0.113.10',
  edgePublic: '203.0.113.1',
  edgePrivate: '192.0.2.1',
  server: '192.0.2.10',
  client6: '2001:db8:1::10',
  edge6: '2001:db8:1::1',
  edgePrivate6: '2001:db8:2::1',
  server6: '2001:db8:2::10',
  privateNet: '192.0.2.0/24',
} as const;

const NS_PREFIX = 'ftpalg-e2e';
const NS_NAME = /^ftpalg-e2e-(\d+)-[0-9a-f]+-(client|edge|server)$/;
const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
const KILL_WAIT_MS = 5_000;

export type Role = 'client' | 'edge' | 'server';

export interface ExecResult {
  /** Exit code, or null when the process was ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface ExecOptions {
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Topology {
  id: string;
  ns: Record<Role, string>;
  addr: typeof ADDR;
  exec(role: Role, cmd: string, args: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  spawn(role: Role, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
  destroy(): Promise<void>;
}

/** Runs a command on the host, never throwing for a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const started = Date.now();
  const timeout = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise((resolve) => {
    execFile(
      cmd,
      [...args],
      { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, cwd: opts.cwd, env: opts.env },
      (err, stdout, stderr) => {
        const ms = Date.now() - started;
        if (err === null) {
          resolve({ code: 0, signal: null, stdout, stderr, timedOut: false, ms });
          return;
        }
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null };
        const code = typeof e.code === 'number' ? e.code : null;
        const extra = typeof e.code === 'string' ? `${e.code}: ${e.message}\n` : '';
        resolve({
          code,
          signal: e.signal ?? null,
          stdout,
          stderr: stderr + extra,
          timedOut: e.killed === true && ms >= timeout,
          ms,
        });
      },
    );
  });
}

/** Runs a command inside a namespace (`ip netns exec` execs it in place). */
export function exec(
  ns: string,
  cmd: string,
  args: readonly string[],
  opts: ExecOptions = {},
): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

const children = new Set<ChildProcess>();
const liveNamespaces = new Set<string>();

/**
 * Starts a long-running process inside a namespace. `ip netns exec` replaces
 * itself with the command, so the child's pid is the command's pid.
 */
export function spawn(
  ns: string,
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions = {},
): ChildProcess {
  const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...opts,
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Sends SIGTERM to a child we started, then SIGKILL after a bound. */
export async function stopChild(child: ChildProcess, waitMs = KILL_WAIT_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), waitMs);
  await exited;
  clearTimeout(timer);
}

// Safety net for a worker that exits without running its hooks: kill the
// children we started and remove our namespaces, synchronously.
process.once('exit', () => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
  }
  for (const ns of liveNamespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

async function ip(args: readonly string[]): Promise<void> {
  const r = await run('ip', args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
}

async function nsExec(ns: string, cmd: string, args: readonly string[]): Promise<void> {
  const r = await exec(ns, cmd, args, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${ns} failed (${r.code}): ${r.stderr.trim()}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes namespaces left by runs of this harness whose process is gone. */
async function removeStaleNamespaces(): Promise<void> {
  const r = await run('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  for (const line of r.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NS_NAME.exec(name);
    if (m === null || m[1] === undefined) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !isAlive(pid)) await run('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
  }
}

export type Layout = 'reverse' | 'outbound';

export async function createTopology(layout: Layout = 'reverse'): Promise<Topology> {
  await removeStaleNamespaces();
  const id = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const ns: Record<Role, string> = {
    client: `${NS_PREFIX}-${id}-client`,
    edge: `${NS_PREFIX}-${id}-edge`,
    server: `${NS_PREFIX}-${id}-server`,
  };
  const roles: Role[] = ['client', 'edge', 'server'];
  const destroy = async (): Promise<void> => {
    for (const role of roles) {
      const name = ns[role];
      if (!liveNamespaces.has(name)) continue;
      await run('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
      liveNamespaces.delete(name);
    }
  };
  try {
    for (const role of roles) {
      await ip(['netns', 'add', ns[role]]);
      liveNamespaces.add(ns[role]);
      await ip(['-n', ns[role], 'link', 'set', 'lo', 'up']);
    }
    // Each veth pair is created with both ends already in their namespaces.
    await ip(['-n', ns.client, 'link', 'add', 'name', 'to-edge', 'type', 'veth', 'peer', 'name', 'to-client', 'netns', ns.edge]);
    await ip(['-n', ns.edge, 'link', 'add', 'name', 'to-server', 'type', 'veth', 'peer', 'name', 'to-edge', 'netns', ns.server]);

    await ip(['-n', ns.client, 'addr', 'add', `${ADDR.client}/24`, 'dev', 'to-edge']);
    await ip(['-n', ns.client, 'addr', 'add', `${ADDR.client6}/64`, 'dev', 'to-edge', 'nodad']);
    await ip(['-n', ns.edge, 'addr', 'add', `${ADDR.edgePublic}/24`, 'dev', 'to-client']);
    await ip(['-n', ns.edge, 'addr', 'add', `${ADDR.edge6}/64`, 'dev', 'to-client', 'nodad']);
    await ip(['-n', ns.edge, 'addr', 'add', `${ADDR.edgePrivate}/24`, 'dev', 'to-server']);
    await ip(['-n', ns.edge, 'addr', 'add', `${ADDR.edgePrivate6}/64`, 'dev', 'to-server', 'nodad']);
    await ip(['-n', ns.server, 'addr', 'add', `${ADDR.server}/24`, 'dev', 'to-edge']);
    await ip(['-n', ns.server, 'addr', 'add', `${ADDR.server6}/64`, 'dev', 'to-edge', 'nodad']);

    await ip(['-n', ns.client, 'link', 'set', 'to-edge', 'up']);
    await ip(['-n', ns.edge, 'link', 'set', 'to-client', 'up']);
    await ip(['-n', ns.edge, 'link', 'set', 'to-server', 'up']);
    await ip(['-n', ns.server, 'link', 'set', 'to-edge', 'up']);

    if (layout === 'reverse') {
      // The server answers the edge through it; the client gets no such route.
      await ip(['-n', ns.server, 'route', 'add', 'default', 'via', ADDR.edgePrivate]);
      await nsExec(ns.edge, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0']);
    } else {
      // Inside clients reach everything through the edge; the server knows only its own link.
      await ip(['-n', ns.client, 'route', 'add', 'default', 'via', ADDR.edgePublic]);
      await ip(['-n', ns.client, '-6', 'route', 'add', 'default', 'via', ADDR.edge6]);
      await nsExec(ns.edge, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
      const masquerade = 'table inet e2e_nat { chain postrouting { type nat hook postrouting priority srcnat; oifname "to-server" masquerade; }; }';
      await nsExec(ns.edge, 'nft', [masquerade]);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    id,
    ns,
    addr: ADDR,
    exec: (role, cmd, args, opts) => exec(ns[role], cmd, args, opts),
    spawn: (role, cmd, args, opts) => spawn(ns[role], cmd, args, opts),
    destroy,
  };
}

/** Runs a command in `role`'s namespace; its stdout, or an error naming the command and its stderr. */
export async function execOrThrow(topo: Topology, role: Role, cmd: string, args: readonly string[]): Promise<string> {
  const r = await topo.exec(role, cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${role} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Names of the namespaces that currently exist (for teardown checks). */
export async function listNamespaces(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  return r.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.length > 0);
}

/** The kernel data plane forwards: IPv4 and IPv6 forwarding on in the edge (the client still has no route inside). */
export async function enableForwarding(topo: Topology): Promise<void> {
  const r = await topo.exec('edge', 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`sysctl forwarding in the edge failed: ${r.stderr.trim()}`);
}
