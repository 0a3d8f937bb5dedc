/**
 * Configs for the deploy generators' tests: one site, 'main', with a
 * control port of 21 in front of 192.0.2.10 and an external address of
 * 203.0.113.1, validated like the real thing.
 */
import { parseConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';

type Range = { min: number; max: number };

/** A maker of that config with `site` (and the root's `root`) changed; the port ranges are the caller's. */
export function configWithSite(ranges: {
  passivePorts: Range;
  activePorts: Range;
}): (site: Record<string, unknown>, root?: Record<string, unknown>) => GatewayConfig {
  return (site, root = {}) =>
    parseConfig({
      ...root,
      sites: [
        {
          name: 'main',
          listen: { host: '0.0.0.0', port: 21 },
          upstream: { host: '192.0.2.10', port: 21 },
          externalAddress: '203.0.113.1',
          ...ranges,
          ...site,
        },
      ],
    });
}
