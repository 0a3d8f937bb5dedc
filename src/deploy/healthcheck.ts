#!/usr/bin/env node
/**
 * Container health check: `node dist/deploy/healthcheck.js [CONFIG] [/healthz|/readyz]`.
 * Exits 0 when the gateway's metrics listener answers 2xx on the path, or
 * when metrics are off (nothing to ask); 1 otherwise, with the reason on stderr.
 */
import { readFileSync } from 'node:fs';
import { HEALTH_PATHS, healthTarget, type HealthPath } from './healthUrl.js';

const DEFAULT_CONFIG = '/etc/ftp-alg/ftp-alg.json';
const REQUEST_TIMEOUT_MS = 3_000;

async function main(args: string[]): Promise<number> {
  const file = args[0] ?? process.env.FTP_ALG_CONFIG ?? DEFAULT_CONFIG;
  const path = args[1] ?? '/healthz';
  if (!isHealthPath(path)) return fail(`path must be one of ${HEALTH_PATHS.join(', ')}, got ${path}`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return fail(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const target = healthTarget(text, path, file);
  if (target.kind === 'off') return 0;
  if (target.kind === 'invalid') return fail(`${file}: ${target.problem}`);
  try {
    const response = await fetch(target.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    await response.body?.cancel();
    return response.ok ? 0 : fail(`${target.url}: HTTP ${response.status}`);
  } catch (err) {
    return fail(`${target.url}: ${(err as Error).message}`);
  }
}

function isHealthPath(path: string): path is HealthPath {
  return (HEALTH_PATHS as readonly string[]).includes(path);
}

function fail(reason: string): number {
  process.stderr.write(`ftp-alg healthcheck: ${reason}\n`);
  return 1;
}

process.exitCode = await main(process.argv.slice(2));
