/**
 * sites[].upstream.health and maxAttempts: defaults, refusals naming the
 * key, and the deprecated healthCheckIntervalMs read as idleProbeMs.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

/** The first site's upstream section, parsed from `upstream` keys given on top of a valid host. */
function upstream(keys: Record<string, unknown>) {
  const config = parseConfig({ sites: [{ name: 'h', upstream: { host: '192.0.2.10', ...keys } }] });
  return config.sites[0]?.upstream;
}

function refused(keys: Record<string, unknown>): string {
  try {
    upstream(keys);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${JSON.stringify(keys)}`);
}

describe('upstream health config', () => {
  it('defaults: passive health on, no idle probes, three attempts', () => {
    expect(upstream({})).toMatchObject({
      maxAttempts: 3,
      health: {
        enabled: true,
        consecutiveFailures: 3,
        baseEjectionMs: 10_000,
        maxEjectionMs: 300_000,
        maxEjectedPercent: 50,
        idleProbeMs: 0,
        probeTimeoutMs: 5_000,
        check: { user: '', password: '' },
      },
    });
  });

  it('the deprecated healthCheckIntervalMs becomes idleProbeMs, and is not kept', () => {
    expect(upstream({ healthCheckIntervalMs: 10_000 })?.health.idleProbeMs).toBe(10_000);
    expect(upstream({ healthCheckIntervalMs: 10_000 })).not.toHaveProperty('healthCheckIntervalMs');
    expect(upstream({ healthCheckIntervalMs: 10_000, health: { idleProbeMs: 10_000 } })?.health.idleProbeMs).toBe(10_000);
  });

  const rows: Array<[string, Record<string, unknown>, string]> = [
    ['healthCheckIntervalMs contradicting idleProbeMs', { healthCheckIntervalMs: 5_000, health: { idleProbeMs: 7_000 } }, 'sites[0].upstream.healthCheckIntervalMs: '],
    ['a base ejection longer than the longest', { health: { baseEjectionMs: 60_000, maxEjectionMs: 30_000 } }, 'sites[0].upstream.health.baseEjectionMs: '],
    ['maxEjectedPercent 0', { health: { maxEjectedPercent: 0 } }, 'sites[0].upstream.health.maxEjectedPercent: '],
    ['maxEjectedPercent 101', { health: { maxEjectedPercent: 101 } }, 'sites[0].upstream.health.maxEjectedPercent: '],
    ['consecutiveFailures 0', { health: { consecutiveFailures: 0 } }, 'sites[0].upstream.health.consecutiveFailures: '],
    ['a negative idleProbeMs', { health: { idleProbeMs: -1 } }, 'sites[0].upstream.health.idleProbeMs: '],
    ['maxAttempts 0', { maxAttempts: 0 }, 'sites[0].upstream.maxAttempts: '],
    ['a check user with CR LF (a second command)', { health: { check: { user: 'x\r\nDELE f', password: 'p' } } }, 'sites[0].upstream.health.check.user: '],
    ['a check password with NUL', { health: { check: { user: 'x', password: 'p\0' } } }, 'sites[0].upstream.health.check.password: '],
    ['a check password without user', { health: { check: { password: 'p' } } }, 'sites[0].upstream.health.check.password: '],
    ['an unknown health key', { health: { interval: 1 } }, 'sites[0].upstream.health.interval: '],
  ];
  it.each(rows)('refuses %s, naming the key', (_name, keys, key) => {
    expect(refused(keys).startsWith(key)).toBe(true);
  });
});
