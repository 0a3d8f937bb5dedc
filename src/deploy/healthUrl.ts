/**
 * Where the container's health check asks: the config's metrics listener,
 * reached on loopback when it binds a wildcard. Pure, so the script around
 * it stays a few lines.
 */
import ipaddr from 'ipaddr.js';
import { parseListenAddress } from '../config/formats.js';
import { readSource, SyntaxProblem } from '../config/source.js';

export type HealthTarget =
  | { readonly kind: 'url'; readonly url: string }
  | { readonly kind: 'off' } // metrics.listen is "": nothing answers, the process being alive is all there is
  | { readonly kind: 'invalid'; readonly problem: string };

export const HEALTH_PATHS = ['/healthz', '/readyz'] as const;
export type HealthPath = (typeof HEALTH_PATHS)[number];

/** `configFile` names the format: YAML for `.yaml`/`.yml`, JSON otherwise. */
export function healthTarget(configText: string, path: HealthPath, configFile = 'ftp-alg.json'): HealthTarget {
  const source = readSource(configFile, configText);
  if (source instanceof SyntaxProblem) return { kind: 'invalid', problem: source.problem };
  const listen = metricsListen(source.document);
  if (listen === undefined || listen === '') return { kind: 'off' };
  const address = typeof listen === 'string' ? parseListenAddress(listen) : undefined;
  if (address === undefined) return { kind: 'invalid', problem: `metrics.listen ${JSON.stringify(listen)} is not host:port` };
  const parsed = ipaddr.parse(address.host);
  const wildcard = parsed.range() === 'unspecified';
  const host = wildcard ? (parsed.kind() === 'ipv6' ? '::1' : '127.0.0.1') : address.host;
  return { kind: 'url', url: healthUrl(host, address.port, path) };
}

/** The URL of one of the metrics listener's health endpoints on `host` (IPv6 literals bracketed). */
export function healthUrl(host: string, port: number, path: HealthPath): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
}

function metricsListen(document: unknown): unknown {
  if (document === null || typeof document !== 'object') return undefined;
  const metrics = (document as { metrics?: unknown }).metrics;
  if (metrics === null || typeof metrics !== 'object') return undefined;
  return (metrics as { listen?: unknown }).listen;
}
