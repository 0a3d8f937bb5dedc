/**
 * Helpers of the fairness suites: an ftp-srv upstream behind a gateway
 * with the default limits, many logged-in raw control sessions from one
 * address, and one download in each with every pinhole open before any
 * transfer starts (so the data connections really run at once).
 */
import { afterEach, beforeEach, expect } from 'vitest';
import type { PortRange } from '../../../src/config/types.js';
import { ControlClient, readDataConnection } from '../../support/control.js';
import { startGateway, type TestGateway } from '../../support/gateway.js';
import { expectNoLeaks } from '../../support/leaks.js';
import { freePortOnAll, portRanges } from '../../support/ports.js';
import { within } from '../../support/traps.js';
import { parse227 } from '../../support/hostPort.js';
import { type TestUpstream, startUpstream } from '../../support/upstream.js';

/** `n` sessions to `port`, each greeted, logged in and in binary mode; each is destroyed by `closers`. */
export async function loggedInSessions(port: number, n: number, closers: (() => void)[]): Promise<ControlClient[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const c = await ControlClient.connect(port);
      closers.push(() => c.destroy());
      expect((await within(10_000, 'greeting', c.reply())).code).toBe(220);
      await c.login();
      expect((await c.command('TYPE I')).code).toBe(200);
      return c;
    }),
  );
}

/** PASV in every session, then `RETR names[i]` in session i, all at once: what each data connection carried. */
export async function downloadAtOnce(clients: readonly ControlClient[], names: readonly string[], opened?: () => void): Promise<Buffer[]> {
  const ports = await Promise.all(
    clients.map(async (c) => {
      const reply = await c.command('PASV');
      expect(reply.code, reply.text).toBe(227);
      return parse227(reply.text).port;
    }),
  );
  opened?.();
  return Promise.all(
    clients.map(async (c, i) => {
      const data = readDataConnection(ports[i] as number);
      expect((await c.command(`RETR ${names[i] as string}`)).code).toBe(150);
      const bytes = await data;
      expect((await within(30_000, '226', c.reply())).code).toBe(226);
      return bytes;
    }),
  );
}

export interface FtpSrvRig {
  /** The gateway of the running test (default limits: only the upstream and the pools are configured). */
  readonly gw: TestGateway;
  readonly upstream: TestUpstream;
  /** Run after the test, before the leak check (destroy clients). */
  readonly closers: (() => void)[];
}

/** Before each test an ftp-srv upstream and an in-process gateway with default limits in front; after it, clean up and check nothing leaked. */
export function useFtpSrvGateway(rangeSize: number, leakTimeoutMs = 5_000): FtpSrvRig {
  const [passivePorts, activePorts, upstreamPasv] = portRanges(3, rangeSize) as [PortRange, PortRange, PortRange];
  let upstream: TestUpstream | undefined;
  let gw: TestGateway | undefined;
  const closers: (() => void)[] = [];
  beforeEach(async () => {
    upstream = await startUpstream({ host: '127.0.0.1', port: await freePortOnAll(['127.0.0.1']), pasv: upstreamPasv });
    gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) close();
    if (gw !== undefined) await expectNoLeaks(gw.gateway, { passivePorts, activePorts }, leakTimeoutMs);
    await gw?.close();
    gw = undefined;
    await upstream?.close();
    upstream = undefined;
  });
  return {
    get gw() {
      if (gw === undefined) throw new Error('no gateway outside a test');
      return gw;
    },
    get upstream() {
      if (upstream === undefined) throw new Error('no upstream outside a test');
      return upstream;
    },
    closers,
  };
}
