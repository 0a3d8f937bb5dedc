/** The CPU lists of controlPriority.cpus as Linux writes them (Cpus_allowed_list, taskset -c). */
import { describe, expect, it } from 'vitest';
import { parseCpuList } from '../../../src/common/controlCpus.js';

describe('parseCpuList', () => {
  it.each([
    ['0', [0]],
    ['0-1', [0, 1]],
    ['0-2,5', [0, 1, 2, 5]],
    ['3,7-8\n', [3, 7, 8]],
    ['1023', [1023]],
    ['', []],
  ])('%j is %j', (text, cpus) => {
    expect(parseCpuList(text)).toEqual(cpus);
  });

  it.each(['a', '0-', '-1', '1,,x', '0 1'])('%j is not a CPU list', (text) => {
    expect(() => parseCpuList(text)).toThrow(/not a CPU list/);
  });
});
