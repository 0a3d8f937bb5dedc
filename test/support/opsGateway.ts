/**
 * An in-process gateway for operations tests: any number of sites, the
 * root keys given in full, and every log line captured as parsed JSON (so a
 * test can await "upstream health changed" instead of sleeping).
 */
import { createGateway, createLogger, parseConfig, type Gateway } from '../../src/index.js';

export type CapturedLine = Readonly<Record<string, unknown>> & { readonly msg?: string };

export interface OpsGateway {
  readonly gateway: Gateway;
  readonly lines: readonly CapturedLine[];
  /** The bound control port of a site. */
  port(site: string): number;
  /** The bound metrics endpoint. */
  metrics(): { host: string; port: number };
  close(drainMs?: number): Promise<void>;
}

export async function startOpsGateway(document: Record<string, unknown>, level = 'info'): Promise<OpsGateway> {
  const lines: CapturedLine[] = [];
  const log = createLogger(level, {
    write(text: string) {
      for (const raw of text.split('\n')) if (raw !== '') lines.push(JSON.parse(raw) as CapturedLine);
    },
  });
  const gateway = await createGateway(parseConfig({ log: { level }, ...document }), log);
  return {
    gateway,
    lines,
    port(site) {
      const bound = gateway.addresses()[site];
      if (bound === undefined) throw new Error(`site ${site} is not listening`);
      return bound.port;
    },
    metrics() {
      const bound = gateway.metricsAddress();
      if (bound === undefined) throw new Error('the metrics endpoint is off');
      return bound;
    },
    close: (drainMs = 200) => gateway.close(drainMs),
  };
}
