/**
 * For suites that start a gateway (and a fake upstream) in each test: the
 * two small port pools, and after each test every tracked client or
 * socket destroyed, nothing left in the gateway, the gateway and the fake
 * upstream closed.
 */
import { afterEach } from 'vitest';
import { startGateway, type TestGateway } from './gateway.js';
import { type FakeFtp, startFakeFtp } from './hostileUpstream.js';
import { expectNoLeaks } from './leaks.js';
import { portRanges } from './ports.js';

type Range = { min: number; max: number };

export interface PerTestGateway {
  readonly pools: { passivePorts: Range; activePorts: Range };
  /** The test's gateway, if it started one; closed after the test. */
  gw: TestGateway | undefined;
  /** The test's fake upstream, if it started one; closed after the test. */
  fake: FakeFtp | undefined;
  /** A fake upstream (with `greeting`) and a gateway in front of it, with `site` added to the pools and `root` at the root. */
  start(site?: Record<string, unknown>, root?: Record<string, unknown>, greeting?: string | null): Promise<{ gw: TestGateway; fake: FakeFtp }>;
  /** Destroy `thing` after the test, before the leak check. */
  track<T extends { destroy(): unknown }>(thing: T): T;
}

/** Registers the afterEach that cleans up. */
export function usePerTestGateway(): PerTestGateway {
  const [passivePorts, activePorts] = portRanges(2, 10) as [Range, Range];
  const tracked: { destroy(): unknown }[] = [];

  const rig: PerTestGateway = {
    pools: { passivePorts, activePorts },
    gw: undefined,
    fake: undefined,
    async start(site = {}, root = {}, greeting) {
      const fake = await startFakeFtp(greeting === undefined ? {} : { greeting });
      rig.fake = fake;
      const gw = await startGateway({ upstream: { host: fake.host, port: fake.port }, ...rig.pools, ...site }, root);
      rig.gw = gw;
      return { gw, fake };
    },
    track(thing) {
      tracked.push(thing);
      return thing;
    },
  };

  afterEach(async () => {
    for (const thing of tracked.splice(0)) thing.destroy();
    if (rig.gw !== undefined) await expectNoLeaks(rig.gw.gateway, rig.pools);
    await rig.gw?.close();
    rig.gw = undefined;
    await rig.fake?.close();
    rig.fake = undefined;
  });

  return rig;
}
