/**
 * The gateway under test, created in process: `startGateway` for one site
 * on 127.0.0.1 port 0 with a silent logger (each test passes the upstream
 * and the pools; anything else of the site config may be overridden), or
 * `startGatewayWith` for a whole configuration document, any number of
 * sites, with every log line captured as parsed JSON (so a test can await
 * "upstream health changed" instead of sleeping).
 */
import { createGateway, createLogger, parseConfig, type Gateway } from '../../src/index.js';
import type { PortRange } from '../../src/config/types.js';

export const SITE = 'test';

export type CapturedLine = Readonly<Record<string, unknown>> & { readonly msg?: string };

export interface TestGateway {
  readonly gateway: Gateway;
  /** The port the first site's control listener is bound to. */
  readonly port: number;
  /** The bound control port of a site. */
  portOf(site: string): number;
  /** The bound metrics endpoint. */
  metrics(): { host: string; port: number };
  /** Every log line so far (none at level `silent`). */
  readonly lines: readonly CapturedLine[];
  close(drainMs?: number): Promise<void>;
}

export interface TestSite {
  readonly upstream: { readonly host: string; readonly port: number; readonly hosts?: readonly string[]; readonly [key: string]: unknown };
  readonly passivePorts: PortRange;
  readonly activePorts: PortRange;
  readonly [key: string]: unknown;
}

/** Drain bound for `close()` in tests: sessions still open after this are ended. */
export const CLOSE_DRAIN_MS = 200;

/** One site named SITE on 127.0.0.1 port 0, `root` keys at the root of the config, logging off. */
export function startGateway(site: TestSite, root: Record<string, unknown> = {}): Promise<TestGateway> {
  return startGatewayWith({ ...root, sites: [{ name: SITE, listen: { host: '127.0.0.1', port: 0 }, ...site }] }, 'silent');
}

/** A gateway from a whole configuration document (the sites given in full), logging at `level` into `lines`. */
export async function startGatewayWith(document: Record<string, unknown>, level = 'info'): Promise<TestGateway> {
  const lines: CapturedLine[] = [];
  const log = createLogger(level, {
    write(text: string) {
      for (const raw of text.split('\n')) if (raw !== '') lines.push(JSON.parse(raw) as CapturedLine);
    },
  });
  const gateway = await createGateway(parseConfig({ log: { level }, ...document }), log);
  const portOf = (site: string) => {
    const bound = gateway.addresses()[site];
    if (bound === undefined) throw new Error(`site ${site} is not listening`);
    return bound.port;
  };
  const sites = document.sites as readonly { name: string }[];
  return {
    gateway,
    port: portOf(sites[0]?.name ?? SITE),
    portOf,
    metrics() {
      const bound = gateway.metricsAddress();
      if (bound === undefined) throw new Error('the metrics endpoint is off');
      return bound;
    },
    lines,
    close: (drainMs = CLOSE_DRAIN_MS) => gateway.close(drainMs),
  };
}

/** A counter's total over all label sets, read from the gateway's registry. */
export async function counterTotal(gateway: Gateway, name: string): Promise<number> {
  const metric = gateway.metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
