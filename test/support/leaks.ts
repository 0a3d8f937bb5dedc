/**
 * Leak checks for the attack, fault, fuzz and soak tests: after a session
 * ends, whatever the way, nothing of it may stay (DESIGN.md: one teardown
 * path frees everything), and memory stays bounded.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { expect, vi } from 'vitest';
import type { Gateway } from '../../src/index.js';
import type { PortRange } from '../../src/config/types.js';
import { counterTotal, SITE } from './gateway.js';
import { rangeSize } from './ports.js';

export interface Pools {
  readonly passivePorts: PortRange;
  readonly activePorts: PortRange;
}

/** No session, no pinhole, every port back in its pool, and the gauges agree. */
export async function expectNoLeaks(gateway: Gateway, pools: Pools, timeout = 5_000): Promise<void> {
  await vi.waitFor(
    () => {
      const stats = gateway.stats();
      expect(stats.sessions).toBe(0);
      expect(stats.pinholes).toBe(0);
      expect(stats.sites[SITE]).toEqual({
        sessions: 0,
        passiveFree: rangeSize(pools.passivePorts),
        activeFree: rangeSize(pools.activePorts),
      });
    },
    { timeout, interval: 20 },
  );
  expect(await counterTotal(gateway, 'ftp_alg_sessions_active')).toBe(0);
  expect(await counterTotal(gateway, 'ftp_alg_pinholes_open')).toBe(0);
}

let gcFunction: (() => void) | undefined;

/**
 * A full garbage collection. `global.gc` exists only with --expose-gc;
 * the flag can be set at run time, and a new context then has `gc`.
 */
export function collectGarbage(): void {
  if (gcFunction === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gcFunction = vm.runInNewContext('gc') as () => void;
  }
  gcFunction();
  gcFunction();
}

/** Heap and buffer memory in use after a full collection, in bytes. */
export function liveBytes(): { heapUsed: number; arrayBuffers: number } {
  collectGarbage();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return { heapUsed, arrayBuffers };
}

export const MiB = 1024 * 1024;
