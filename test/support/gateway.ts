/**
 * A gateway under test: one site listening on 127.0.0.1 port 0, created in
 * process with a silent logger. Each test passes the upstream and the
 * pools; anything else of the site config may be overridden.
 */
import { createGateway, createLogger, parseConfig, type Gateway } from '../../src/index.js';
import type { PortRange } from '../../src/config/types.js';

export const SITE = 'test';

export interface TestGateway {
  readonly gateway: Gateway;
  /** The port the site's control listener is bound to. */
  readonly port: number;
  close(): Promise<void>;
}

export interface TestSite {
  readonly upstream: { readonly host: string; readonly port: number; readonly hosts?: readonly string[] };
  readonly passivePorts: PortRange;
  readonly activePorts: PortRange;
  readonly [key: string]: unknown;
}

/** Drain bound for `close()` in tests: sessions still open after this are ended. */
export const CLOSE_DRAIN_MS = 200;

export async function startGateway(site: TestSite, root: Record<string, unknown> = {}): Promise<TestGateway> {
  const config = parseConfig({
    log: { level: 'silent' },
    ...root,
    sites: [{ name: SITE, listen: { host: '127.0.0.1', port: 0 }, ...site }],
  });
  const gateway = await createGateway(config, createLogger('silent'));
  const bound = gateway.addresses()[SITE];
  if (bound === undefined) throw new Error('the site is not listening');
  return { gateway, port: bound.port, close: () => gateway.close(CLOSE_DRAIN_MS) };
}

/** A counter's total over all label sets, read from the gateway's registry. */
export async function counterTotal(gateway: Gateway, name: string): Promise<number> {
  const metric = gateway.metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
