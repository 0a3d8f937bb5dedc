/**
 * Nothing leaks: after many sessions, each with a transfer, no session, no
 * pinhole and no port is left (DESIGN.md: one teardown path frees
 * everything).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectClient, sha256 } from '../support/ftpClient.js';
import { SITE, startGateway, type TestGateway } from '../support/gateway.js';
import { portRanges, rangeSize } from '../support/ports.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

const SESSIONS = 200;
const [passivePorts, activePorts] = portRanges(2, 20) as [{ min: number; max: number }, { min: number; max: number }];
const PAYLOAD = randomBytes(4096);

let upstream: TestUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  writeFileSync(join(upstream.root, 'small.bin'), PAYLOAD);
  gw = await startGateway({ upstream: { host: upstream.host, port: upstream.port }, passivePorts, activePorts });
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

describe('no pinhole or port left behind', () => {
  it(`after ${SESSIONS} sequential sessions with a download each`, async () => {
    const digest = sha256(PAYLOAD);
    for (let i = 0; i < SESSIONS; i++) {
      const c = await connectClient(gw.port, i % 2 === 0 ? 'PASV' : 'EPSV');
      try {
        expect(sha256(await c.download('small.bin'))).toBe(digest);
      } finally {
        c.close();
      }
    }
    await vi.waitFor(
      () => {
        const stats = gw.gateway.stats();
        expect(stats.sessions).toBe(0);
        expect(stats.pinholes).toBe(0);
        expect(stats.sites[SITE]).toMatchObject({ sessions: 0, passiveFree: rangeSize(passivePorts), activeFree: rangeSize(activePorts) });
      },
      { timeout: 5_000 },
    );
  }, 60_000);
});
