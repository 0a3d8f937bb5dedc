/**
 * Issue 13 soak: 300 idle connections that never log in and 64 parallel
 * logged-in transfers, all from the same address, under the default
 * limits (128 sessions per address). The idle crowd keeps coming while
 * the transfers run (CHURN new idle connections a second, RECONNECTS in
 * all), each one evicting the oldest idle one. Every transfer completes
 * byte-exact, no transfer session is ever evicted or refused, and nothing
 * leaks. Bounded: IDLE + RECONNECTS connections, and the test's timeout.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ControlClient } from '../../support/control.js';
import { counterTotal } from '../../support/gateway.js';
import { downloadAtOnce, loggedInSessions, useFtpSrvGateway } from './sessions.js';

const IDLE = Number(process.env.FAIRNESS_SOAK_IDLE ?? 300);
const TRANSFERS = 64;
const RECONNECTS = Number(process.env.FAIRNESS_SOAK_RECONNECTS ?? 1_500);
const CHURN = 100;
const FILE_BYTES = 512 * 1024;
const EVICTED = '421 Too many connections from your address, closing an idle one.';

const rig = useFtpSrvGateway(150, 15_000);
const { closers } = rig;

/** The idle crowd: connections that read their greeting and say nothing; more keep arriving at `perSecond` while churning. */
function idleCrowd(port: number) {
  const stats = { opened: 0, evicted: 0 };
  let timer: NodeJS.Timeout | undefined;
  const open = async (): Promise<void> => {
    const c = await ControlClient.connect(port);
    closers.push(() => c.destroy());
    stats.opened++;
    void c.closed.then(() => {
      if (c.received().toString('latin1').includes(EVICTED)) stats.evicted++;
    });
    await c.reply(); // the greeting (or the eviction notice, if it came first)
  };
  return {
    stats,
    open,
    churn(perSecond: number) {
      let left = RECONNECTS;
      timer = setInterval(() => {
        for (let i = 0; i < perSecond / 100 && left > 0; i++, left--) void open().catch(() => undefined);
      }, 10);
    },
    stop: () => clearInterval(timer),
  };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('soak: an idle crowd and a busy user behind one address', () => {
  it(`${IDLE} idle pre-login connections and ${TRANSFERS} parallel logged-in transfers: every transfer byte-exact`, async () => {
    const g = rig.gw;
    const files = Array.from({ length: TRANSFERS }, (_, i) => randomBytes(FILE_BYTES + i));
    files.forEach((data, i) => rig.upstream.writeFile(`s${i}.bin`, data));
    const crowd = idleCrowd(g.port);
    for (let i = 0; i < IDLE; i++) await crowd.open();
    expect(crowd.stats.evicted).toBeGreaterThan(0); // 300 > 128: the crowd already evicts itself
    crowd.churn(CHURN);

    const users = await loggedInSessions(g.port, TRANSFERS, closers);
    const received = await downloadAtOnce(
      users,
      files.map((_, i) => `s${i}.bin`),
    );
    // A second round in the same sessions while the crowd still churns.
    const again = await downloadAtOnce(
      users,
      files.map((_, i) => `s${TRANSFERS - 1 - i}.bin`),
    );
    crowd.stop();

    received.forEach((bytes, i) => expect(sha(bytes), `s${i}.bin`).toBe(sha(files[i] as Buffer)));
    again.forEach((bytes, i) => expect(sha(bytes), `second round s${TRANSFERS - 1 - i}.bin`).toBe(sha(files[TRANSFERS - 1 - i] as Buffer)));
    for (const u of users) expect(u.received().toString('latin1')).not.toContain('421');
    await Promise.all(users.map(async (u) => expect((await u.command('QUIT')).code).toBe(221)));

    expect(await counterTotal(g.gateway, 'ftp_alg_sessions_refused_total')).toBe(0);
    const evicted = await counterTotal(g.gateway, 'ftp_alg_sessions_evicted_total');
    expect(evicted).toBeGreaterThanOrEqual(IDLE - 128 + TRANSFERS);
    console.log(`soak: ${crowd.stats.opened} idle connections opened, ${evicted} evicted, ${TRANSFERS * 2} transfers of ~${FILE_BYTES / 1024} KiB byte-exact`);
  }, 120_000);
});
