/** `instance: { index, count }`: disjoint, contiguous passive slices that cover the range. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { passiveSlice, passiveSlices } from '../../../src/config/instance.js';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

const site = { name: 'main', listen: { host: '0.0.0.0', port: 21 }, upstream: { host: '192.0.2.10', port: 21 }, passivePorts: { min: 50000, max: 50999 } };

describe('passiveSlice', () => {
  it.each([
    ['alone: the whole range', { min: 50000, max: 50999 }, 0, 1, { min: 50000, max: 50999 }],
    ['first of two', { min: 50000, max: 50999 }, 0, 2, { min: 50000, max: 50499 }],
    ['second of two', { min: 50000, max: 50999 }, 1, 2, { min: 50500, max: 50999 }],
    ['uneven: 10 ports in 3, first', { min: 1, max: 10 }, 0, 3, { min: 1, max: 3 }],
    ['uneven: 10 ports in 3, last', { min: 1, max: 10 }, 2, 3, { min: 7, max: 10 }],
    ['one port each', { min: 40000, max: 40002 }, 1, 3, { min: 40001, max: 40001 }],
  ])('%s', (_name, range, index, count, slice) => {
    expect(passiveSlice(range, { index, count })).toEqual(slice);
  });

  it('slices are disjoint, contiguous, in order, cover the range and differ by at most one port', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1024, max: 65535 }), fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 64 }), (min, extra, count) => {
        const range = { min, max: Math.min(65535, min + extra) };
        fc.pre(range.max - range.min + 1 >= count);
        const slices = passiveSlices(range, count);
        expect(slices[0]?.min).toBe(range.min);
        expect(slices[slices.length - 1]?.max).toBe(range.max);
        slices.forEach((s, i) => {
          expect(s.max).toBeGreaterThanOrEqual(s.min);
          if (i > 0) expect(s.min).toBe((slices[i - 1]?.max ?? 0) + 1);
        });
        const sizes = slices.map((s) => s.max - s.min + 1);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 500 },
    );
  });
});

describe('instance config', () => {
  it('defaults to one instance', () => {
    expect(parseConfig({ sites: [site] }).instance).toEqual({ index: 0, count: 1 });
  });

  it.each([
    ['an index beyond the count', { index: 2, count: 2 }, 'instance.index'],
    ['a count of 0', { index: 0, count: 0 }, 'instance.count'],
    ['a negative index', { index: -1, count: 2 }, 'instance.index'],
    ['a count as a string', { index: 0, count: '2' }, 'instance.count'],
  ])('refuses %s', (_name, instance, key) => {
    expect(() => parseConfig({ instance, sites: [site] })).toThrow(ConfigError);
    try {
      parseConfig({ instance, sites: [site] });
    } catch (err) {
      expect((err as ConfigError).key).toBe(key);
    }
  });

  it('refuses a passive range smaller than the number of instances', () => {
    const small = { ...site, passivePorts: { min: 50000, max: 50002 } };
    expect(() => parseConfig({ instance: { index: 0, count: 4 }, sites: [small] })).toThrow(/sites\[0\]\.passivePorts: 3 ports cannot be cut into 4/);
  });
});
