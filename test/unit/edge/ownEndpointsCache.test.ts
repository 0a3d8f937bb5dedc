/**
 * The gateway's own endpoints for outbound sites' never-the-gateway-itself
 * check: worked out once per OWN_ENDPOINTS_TTL_MS, not once per session
 * (reading the host's addresses and expanding them cost every transparent
 * session 0.5-0.7 ms), and at once again after a reload or a listener change.
 * The clock is given.
 */
import { describe, expect, it } from 'vitest';
import type { OwnEndpoint } from '../../../src/edge/destinations.js';
import { OWN_ENDPOINTS_TTL_MS, OwnEndpointsCache } from '../../../src/edge/outbound.js';

const ep = (host: string): OwnEndpoint => ({ host, ports: { min: 21, max: 21 } });

function counted(answers: OwnEndpoint[][]) {
  let computed = 0;
  const compute = () => answers[Math.min(computed++, answers.length - 1)] ?? [];
  return { compute, computed: () => computed };
}

describe('OwnEndpointsCache', () => {
  const config = {};

  it('one computation serves every session within the TTL', () => {
    const c = counted([[ep('192.0.2.1')]]);
    const own = new OwnEndpointsCache(c.compute);
    for (const now of [1000, 1001, 1500, 1000 + OWN_ENDPOINTS_TTL_MS - 1]) expect(own.get(config, now)).toEqual([ep('192.0.2.1')]);
    expect(c.computed()).toBe(1);
  });

  it('an address added to an interface is seen once the TTL has passed', () => {
    const c = counted([[ep('192.0.2.1')], [ep('192.0.2.1'), ep('198.51.100.7')]]);
    const own = new OwnEndpointsCache(c.compute);
    own.get(config, 0);
    expect(own.get(config, OWN_ENDPOINTS_TTL_MS)).toEqual([ep('192.0.2.1'), ep('198.51.100.7')]);
  });

  it('a reloaded config (another object) or a new listener (invalidate) is seen at once', () => {
    const c = counted([[ep('192.0.2.1')], [ep('192.0.2.2')], [ep('192.0.2.3')]]);
    const own = new OwnEndpointsCache(c.compute);
    own.get(config, 0);
    expect(own.get({}, 1)).toEqual([ep('192.0.2.2')]);
    own.invalidate();
    expect(own.get(config, 2)).toEqual([ep('192.0.2.3')]);
  });

  it('a clock that went back works them out again rather than trusting an entry from the future', () => {
    const c = counted([[ep('192.0.2.1')], [ep('192.0.2.2')]]);
    const own = new OwnEndpointsCache(c.compute);
    own.get(config, 5000);
    expect(own.get(config, 4000)).toEqual([ep('192.0.2.2')]);
  });
});
