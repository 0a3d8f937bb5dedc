/**
 * normalise and familyOf keep their answers per address string (a bounded
 * memo): the answers must be those of ipaddr.js for every string, asked in
 * any order and any number of times, and a string that is no address must
 * still be refused every time (a throw is not kept).
 */
import { describe, expect, it } from 'vitest';
import { familyOf, normalise } from '../../../src/common/address.js';

// [input, normalised, family (undefined: familyOf throws)]
const TABLE: readonly (readonly [string, string, 4 | 6 | undefined])[] = [
  ['192.0.2.10', '192.0.2.10', 4],
  ['::ffff:192.0.2.10', '192.0.2.10', 6], // familyOf of the raw string: IPv6 (a mapped address); normalise unmaps it
  ['2001:db8:0:0:0:0:0:1', '2001:db8::1', 6],
  ['2001:DB8::1', '2001:db8::1', 6],
  ['::1', '::1', 6],
  ['198.51.100.7', '198.51.100.7', 4],
  ['', '', undefined],
  ['not an address', '', undefined],
  ['203.0.113.256', '', undefined],
];

describe('normalise and familyOf, kept per address', () => {
  it('give the table’s answers, each row asked three times in interleaved order', () => {
    for (let pass = 0; pass < 3; pass++) {
      for (const [input, normal, family] of pass === 1 ? [...TABLE].reverse() : TABLE) {
        expect(normalise(input)).toBe(normal);
        if (family === undefined) expect(() => familyOf(input)).toThrow();
        else expect(familyOf(input)).toBe(family);
        // The normalised form is itself an address of the expected family (never the raw string's answer reused).
        if (normal !== '') expect(familyOf(normal)).toBe(normal.includes(':') ? 6 : 4);
      }
    }
    expect(normalise(undefined)).toBe('');
  });

  it('stay right past the memo’s bound (thousands of distinct addresses, then the first ones again)', () => {
    const v4 = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const v6 = (i: number) => `2001:db8::${(i + 1).toString(16)}`;
    for (let i = 0; i < 10_000; i++) {
      expect(normalise(`::ffff:${v4(i)}`)).toBe(v4(i));
      expect(familyOf(v6(i))).toBe(6);
    }
    for (let i = 0; i < 100; i++) {
      expect(normalise(v6(i).toUpperCase())).toBe(v6(i));
      expect(familyOf(v4(i))).toBe(4);
      expect(familyOf(`::ffff:${v4(i)}`)).toBe(6);
    }
  });
});
