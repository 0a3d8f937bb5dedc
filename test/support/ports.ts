/**
 * Port ranges for pinhole pools in tests. vitest runs test files in
 * parallel forks, so each file takes a random block of its own: the span
 * 20000-60000 minus the kernel's ephemeral range (ports the kernel hands to
 * outgoing sockets and to port-0 listeners, which would collide with a
 * pool), cut into one slot per vitest pool id, and a random block inside
 * the slot. Files running at once have distinct pool ids, so they never
 * share a port; randomness inside the slot keeps other processes on the
 * machine (other checkouts running tests) unlikely to collide either.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { PortRange } from '../../src/config/types.js';

const LOWEST = 20_000;
const HIGHEST = 60_000;
const SLOTS = 16;

function ephemeralRange(): PortRange {
  try {
    const [min, max] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (min !== undefined && max !== undefined && Number.isInteger(min) && Number.isInteger(max)) return { min, max };
  } catch {
    // not Linux: fall through to the IANA dynamic range
  }
  return { min: 49_152, max: 65_535 };
}

/** The largest piece of LOWEST..HIGHEST outside the ephemeral range. */
function usableSpan(): PortRange {
  const eph = ephemeralRange();
  const below = { min: LOWEST, max: Math.min(HIGHEST, eph.min - 1) };
  const above = { min: Math.max(LOWEST, eph.max + 1), max: HIGHEST };
  const size = (r: PortRange) => Math.max(0, r.max - r.min + 1);
  return size(below) >= size(above) ? below : above;
}

/**
 * `count` adjacent, non-overlapping ranges of `size` ports each, in a block
 * no other concurrently running test file of this run uses.
 */
export function portRanges(count: number, size: number): PortRange[] {
  const span = usableSpan();
  const slotSize = Math.floor((span.max - span.min + 1) / SLOTS);
  const poolId = Number(process.env.VITEST_POOL_ID ?? '1');
  const slot = (Number.isInteger(poolId) && poolId > 0 ? poolId - 1 : 0) % SLOTS;
  const need = count * size;
  if (need > slotSize) throw new Error(`test wants ${need} ports, a slot has ${slotSize}`);
  const base = span.min + slot * slotSize + Math.floor(Math.random() * (slotSize - need + 1));
  return Array.from({ length: count }, (_, i) => ({ min: base + i * size, max: base + (i + 1) * size - 1 }));
}

export function rangeSize(range: PortRange): number {
  return range.max - range.min + 1;
}

export function inRange(port: number, range: PortRange): boolean {
  return port >= range.min && port <= range.max;
}

/** A TCP port that 0-binds on the first host and is free on every other host too (bounded tries). */
export async function freePortOnAll(hosts: readonly string[], attempts = 20): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const first = await listenOn(hosts[0] ?? '127.0.0.1', 0);
    if (first === undefined) continue;
    const port = (first.address() as net.AddressInfo).port;
    const others: net.Server[] = [];
    let ok = true;
    for (const host of hosts.slice(1)) {
      const s = await listenOn(host, port);
      if (s === undefined) {
        ok = false;
        break;
      }
      others.push(s);
    }
    await Promise.all([first, ...others].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    if (ok) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(', ')} after ${attempts} tries`);
}

function listenOn(host: string, port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(undefined));
    server.listen({ host, port, exclusive: true }, () => resolve(server));
  });
}

/**
 * A loopback port where a connection is refused, and stays refused for the
 * test: a port below 1024 that nothing listens on now. A port bound on port 0
 * and then released would not do: the kernel hands the same range to every
 * port-0 listener, so another listener of this run (even the gateway under
 * test, which then connects to itself, session after session) may take it
 * before the test connects. Tests never listen on fixed ports and port-0
 * listeners never get one below the ephemeral range, so a port found refused
 * here is not taken later by this run.
 */
export async function refusedPort(host = '127.0.0.1'): Promise<number> {
  for (const port of [9, 7, 13, 17, 19, 1, 3, 5, 11, 15, 18, 27, 29, 31, 33, 35, 37, 39]) {
    if (await refuses(host, port)) return port;
  }
  throw new Error(`no refused port below 1024 on ${host}`);
}

function refuses(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}
