// Issue 12 item 5: the balancer host's own fail-over with keepalived (VRRP).
//
//   client ns 198.51.100.10 on bridge `lan` (in the client namespace) ──┬── lb A (the topology's edge ns)   198.51.100.11
//                                                                       └── lb B (the topology's server ns) 198.51.100.12
//   VIP 198.51.100.1 moves between A and B; each runs keepalived with the config of
//   `ftp-alg --balancer keepalived` (unicast peers, ADVERT_MS), loads the ruleset of
//   `ftp-alg --balancer nftables` (which its check asks for), and serves a tiny TCP listener on
//   LISTENER_PORT that answers with the host's name, so a connection to the VIP says who holds it.
//
// A starts first and takes the VIP. Its keepalived is SIGKILLed by pid (the parent stopped
// first so it cannot respawn its VRRP child): B takes the VIP within 3 adverts + skew + margin,
// seen by `ip addr` and by a connection to the VIP. A comes back with the higher priority and
// does not take the VIP back (nopreempt). Then B's ruleset is deleted: B's check fails, B
// gives the VIP up and A takes it.
import type { ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY_CLI, suitePrereq } from './lib/prereq.js';
import { useE2eSuite } from './lib/suite.js';
import { execOrThrow, run, stopChild, type Role, type Topology } from './lib/topology.js';

const HOOK_TIMEOUT_MS = 60_000;
const VIP = '198.51.100.1';
const CLIENT = '198.51.100.10';
const LISTENER_PORT = 2100;
const ROUTER_ID = 42;
/** VRRP advert interval; a backup declares the master down after 3 of them plus a skew under one. */
const ADVERT_MS = 500;
/** On top of VRRP's own bound: starting processes and scheduling on a busy two-core machine. */
const MARGIN_MS = 2_500;
const TAKEOVER_BOUND_MS = 4 * ADVERT_MS + MARGIN_MS;
/** The ruleset check: 1 s interval, 2 failures in a row (keepalived.ts), then the takeover above. */
const CHECK_BOUND_MS = 3_000 + TAKEOVER_BOUND_MS;
const POLL_MS = 100;

interface Host {
  readonly name: 'A' | 'B';
  readonly role: Role;
  readonly address: string;
  readonly priority: number;
  readonly peer: string;
}
const HOSTS: readonly Host[] = [
  { name: 'A', role: 'edge', address: '198.51.100.11', priority: 150, peer: '198.51.100.12' },
  { name: 'B', role: 'server', address: '198.51.100.12', priority: 100, peer: '198.51.100.11' },
];
const [A, B] = HOSTS as [Host, Host];

const prereq = suitePrereq('balancerFailover.e2e', { servers: false, clients: false, gateway: true, tools: ['keepalived', 'nft'] });

describe.skipIf(prereq.skip)('balancer host fail-over with keepalived (issue 12)', () => {
  const env = useE2eSuite({ prereq, workPrefix: 'ftpalg-e2e-vrrp-', hookTimeoutMs: HOOK_TIMEOUT_MS });
  const { t } = env;
  const keepalived = new Map<string, { child: ChildProcess; output: () => string; vrrpPidFile: string }>();
  const listeners: ChildProcess[] = [];

  const inNs = (role: Role, cmd: string, args: string[]): Promise<string> => execOrThrow(t(), role, cmd, args);

  /** A shared link: bridge `lan` in the client namespace, a veth from it into each balancer namespace. */
  async function buildLan(topo: Topology): Promise<void> {
    await inNs('client', 'ip', ['link', 'add', 'lan', 'type', 'bridge']);
    for (const host of HOSTS) {
      const port = `lan-${host.name}`;
      await inNs('client', 'ip', ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'lan0', 'netns', topo.ns[host.role]]);
      await inNs('client', 'ip', ['link', 'set', port, 'master', 'lan', 'up']);
      await inNs(host.role, 'ip', ['addr', 'add', `${host.address}/24`, 'dev', 'lan0']);
      await inNs(host.role, 'ip', ['link', 'set', 'lan0', 'up']);
    }
    await inNs('client', 'ip', ['addr', 'add', `${CLIENT}/24`, 'dev', 'lan']);
    await inNs('client', 'ip', ['link', 'set', 'lan', 'up']);
  }

  /** What the built CLI generates for the example config, in `host`'s namespace's own terms. */
  async function generate(host: Host): Promise<{ ruleset: string; keepalived: string }> {
    const config = join(process.cwd(), 'deploy/balancer/ftp-alg.json');
    const cli = (args: string[]) => run(process.execPath, [GATEWAY_CLI, ...args]);
    const rules = await cli(['--balancer', 'nftables', '--config', config, '--instances', '192.0.2.21,192.0.2.22', '--vip', VIP]);
    const conf = await cli([
      '--balancer', 'keepalived', '--config', config, '--vip', `${VIP}/24`, '--interface', 'lan0', '--router-id', String(ROUTER_ID),
      '--priority', String(host.priority), '--peers', host.peer, '--advert-ms', String(ADVERT_MS), '--agent-unit', 'none',
    ]);
    for (const r of [rules, conf]) if (r.code !== 0) throw new Error(`generator failed: ${r.stderr}`);
    return { ruleset: rules.stdout, keepalived: conf.stdout };
  }

  async function loadRuleset(host: Host): Promise<void> {
    const path = join(env.work, `balancer-${host.name}.nft`);
    await writeFile(path, (await generate(host)).ruleset);
    await inNs(host.role, 'nft', ['-f', path]);
  }

  /** Fresh pid files on every start, as a reboot's empty /run: a killed VRRP child may linger as a zombie, which keepalived takes for a running daemon. */
  let starts = 0;
  function startKeepalived(host: Host): void {
    const dir = env.work;
    starts += 1;
    const pidFiles = { parent: join(dir, `keepalived-${host.name}-${starts}.pid`), vrrp: join(dir, `vrrp-${host.name}-${starts}.pid`) };
    const args = ['-n', '-l', '-D', '-G', '-P', '-f', join(dir, `keepalived-${host.name}.conf`), '-p', pidFiles.parent, '-r', pidFiles.vrrp];
    const child = t().spawn(host.role, 'keepalived', args);
    let text = '';
    child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
    keepalived.set(host.name, { child, output: () => text, vrrpPidFile: pidFiles.vrrp });
  }

  /** SIGKILL by pid, as a crash: the parent is stopped first so it cannot respawn the VRRP child, which gets no chance to drop the VIP. */
  async function crashKeepalived(host: Host): Promise<number> {
    const running = keepalived.get(host.name);
    const pid = running?.child.pid;
    if (running === undefined || pid === undefined) throw new Error(`no keepalived on ${host.name}`);
    const vrrpPid = Number((await readFile(running.vrrpPidFile, 'utf8')).trim());
    expect(vrrpPid).toBeGreaterThan(0);
    const exited = new Promise<void>((resolve) => running.child.once('exit', () => resolve()));
    process.kill(pid, 'SIGSTOP');
    const killedAt = Date.now();
    process.kill(vrrpPid, 'SIGKILL');
    process.kill(pid, 'SIGKILL');
    await exited;
    // The VRRP child dies too (a SIGKILL lands when it is next scheduled), without a word to its peer.
    const deadline = Date.now() + 2_000;
    while ((await isRunning(vrrpPid)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await isRunning(vrrpPid)).toBe(false);
    keepalived.delete(host.name);
    return killedAt;
  }

  /** The process exists and is not a zombie (a killed orphan may wait a while for its reaper). */
  async function isRunning(pid: number): Promise<boolean> {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  }

  const holdsVip = async (host: Host): Promise<boolean> => (await inNs(host.role, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'lan0'])).includes(` ${VIP}/24 `);

  /** The name the listener behind the VIP answers with, or why none. */
  async function askVip(): Promise<string> {
    const script = `const s=require('net').connect(${LISTENER_PORT},'${VIP}');let d='';s.setTimeout(1000,()=>{process.stdout.write('timeout');process.exit(0)});s.on('data',c=>d+=c).on('end',()=>process.stdout.write(d)).on('error',e=>process.stdout.write(e.code??'error'))`;
    const r = await t().exec('client', process.execPath, ['-e', script], { timeoutMs: 5_000 });
    return r.stdout.trim();
  }

  /** Polls until `host` alone holds the VIP and the listener behind it answers with `host`'s name; the ms it took, or a failure naming what was seen. */
  async function waitForOwner(host: Host, boundMs: number, started = Date.now()): Promise<number> {
    let seen = '';
    while (Date.now() - started < boundMs) {
      const held = await Promise.all(HOSTS.map(holdsVip));
      const other = HOSTS.find((h) => h !== host);
      const answer = await askVip();
      seen = `A holds: ${held[0]}, B holds: ${held[1]}, VIP answers: ${answer}`;
      const otherMayHold = other !== undefined && !keepalived.has(other.name); // a crashed keepalived leaves its address behind
      if (held[HOSTS.indexOf(host)] === true && (otherMayHold || held[HOSTS.indexOf(other ?? host)] === false) && answer === host.name) return Date.now() - started;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    throw new Error(`${host.name} did not take the VIP within ${boundMs} ms (${seen})\n${logs()}`);
  }

  const logs = () =>
    listeners.map((l, i) => `listener ${HOSTS[i]?.name ?? ''}: ${l.exitCode === null && l.signalCode === null ? 'running' : `exited ${l.exitCode ?? l.signalCode ?? ''}`}\n`).join('') +
    [...keepalived.entries()].map(([name, k]) => `--- keepalived ${name}:\n${k.output().split('\n').slice(-40).join('\n')}`).join('\n');

  beforeAll(async () => {
    await buildLan(t());
    for (const host of HOSTS) {
      await writeFile(join(env.work, `keepalived-${host.name}.conf`), (await generate(host)).keepalived);
      await loadRuleset(host);
      const listener = t().spawn(host.role, process.execPath, ['-e', `require('net').createServer(s=>s.on('error',()=>{}).end('${host.name}')).listen(${LISTENER_PORT})`]);
      listeners.push(listener);
    }
  }, HOOK_TIMEOUT_MS);

  afterAll(async () => {
    for (const k of keepalived.values()) await stopChild(k.child);
    for (const l of listeners) await stopChild(l);
  }, HOOK_TIMEOUT_MS);

  it('control: with no keepalived running, nothing holds the VIP and the client reaches nothing', async () => {
    expect(await holdsVip(A)).toBe(false);
    expect(await holdsVip(B)).toBe(false);
    expect(await askVip()).not.toMatch(/^[AB]$/);
  }, 30_000);

  it('A, started first, takes the VIP; B, started next, stays backup', async () => {
    startKeepalived(A);
    await waitForOwner(A, 5_000 + TAKEOVER_BOUND_MS); // init_fail: two passing ruleset checks first
    startKeepalived(B);
    await new Promise((resolve) => setTimeout(resolve, 3_000 + 4 * ADVERT_MS)); // B's checks pass, it hears A's adverts
    expect(await holdsVip(B), logs()).toBe(false);
    expect(await askVip()).toBe('A');
  }, 60_000);

  it(`A's keepalived SIGKILLed: B takes the VIP within 3 adverts + skew + margin (${TAKEOVER_BOUND_MS} ms), and the client reaches B`, async () => {
    const ms = await waitForOwner(B, TAKEOVER_BOUND_MS, await crashKeepalived(A));
    console.log(`balancerFailover.e2e: B took the VIP ${ms} ms after A's keepalived was killed (advert ${ADVERT_MS} ms)`);
  }, 60_000);

  it('A back (its stale VIP gone, as after a reboot), with the higher priority: nopreempt, B keeps the VIP', async () => {
    await inNs(A.role, 'ip', ['addr', 'del', `${VIP}/24`, 'dev', 'lan0']);
    startKeepalived(A);
    await new Promise((resolve) => setTimeout(resolve, 3_000 + 6 * ADVERT_MS));
    const restarted = keepalived.get(A.name);
    expect(restarted?.child.exitCode, logs()).toBe(null); // running, so its staying backup means something
    expect(restarted?.output(), logs()).toMatch(/\(ftp_alg\) Entering BACKUP STATE/);
    expect(await holdsVip(A), logs()).toBe(false);
    expect(await holdsVip(B)).toBe(true);
    expect(await askVip()).toBe('B');
  }, 60_000);

  it(`B's ruleset deleted: B's check fails, it gives the VIP up, and A takes it within ${CHECK_BOUND_MS} ms`, async () => {
    const deletedAt = Date.now();
    await inNs(B.role, 'nft', ['delete', 'table', 'inet', 'ftp_alg_balancer']);
    const ms = await waitForOwner(A, CHECK_BOUND_MS, deletedAt);
    console.log(`balancerFailover.e2e: A took the VIP ${ms} ms after B's ruleset was deleted`);
    const log = keepalived.get(B.name)?.output() ?? '';
    expect(log, logs()).toMatch(/VRRP_Script\(ftp_alg_ruleset\) failed/);
    expect(log, logs()).toMatch(/\(ftp_alg\) Entering FAULT STATE/);
  }, 60_000);
});
