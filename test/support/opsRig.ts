/**
 * The rig of the ops tests that run a gateway (in process or as the CLI)
 * in front of a real upstream serving the given files. What a test starts
 * is put on the rig (`rig.gw`, `rig.file`) or made by `rig.session`, and
 * all of it, with every CLI started, is gone after the test.
 */
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { ControlClient } from './control.js';
import { type ConfigFile, killStartedClis } from './cli.js';
import { type TestGateway } from './gateway.js';
import { putFiles, startUpstream, type TestUpstream } from './upstream.js';

export interface OpsRig {
  readonly upstream: TestUpstream;
  /** The in-process gateway of the test, closed after it. */
  gw: TestGateway | undefined;
  /** The config file of the test, removed after it. */
  file: ConfigFile | undefined;
  /** A logged-in session in binary mode on `port`, destroyed after the test. */
  session(port: number): Promise<ControlClient>;
}

/** Registers the suite's hooks; the upstream exists from beforeAll on. */
export function useOpsRig(files: Record<string, Buffer>): OpsRig {
  let upstream: TestUpstream | undefined;
  const closers: (() => void)[] = [];

  beforeAll(async () => {
    upstream = await startUpstream();
    putFiles(upstream, files);
  });

  afterAll(async () => {
    await upstream?.close();
  });

  const rig: OpsRig = {
    get upstream() {
      if (upstream === undefined) throw new Error('the ops rig is used before beforeAll');
      return upstream;
    },
    gw: undefined,
    file: undefined,
    async session(port) {
      const c = await ControlClient.connect(port);
      closers.push(() => c.destroy());
      const greeting = await c.reply();
      if (greeting.code !== 220) throw new Error(`expected 220, got ${greeting.text}`);
      await c.login();
      expect((await c.command('TYPE I')).code).toBe(200);
      return c;
    },
  };

  afterEach(async () => {
    for (const close of closers.splice(0)) close();
    await killStartedClis();
    await rig.gw?.close();
    rig.gw = undefined;
    rig.file?.remove();
    rig.file = undefined;
  });

  return rig;
}
