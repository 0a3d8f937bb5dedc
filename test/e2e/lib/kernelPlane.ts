/**
 * What the kernel-plane suites read off the edge: the gateway's own nftables
 * table, its /metrics, and the check each of their tests ends with (no
 * element left, every pool full).
 */
import { expect } from 'vitest';
import { hasElements } from '../../support/nftListing.js';
import type { Topology } from './topology.js';

const SETTLE_MS = 5_000;

interface Range {
  readonly min: number;
  readonly max: number;
}

/** `nft list table inet ftp_alg_dp` in the edge namespace (empty when the table is gone). */
export async function kernelTable(t: Topology): Promise<string> {
  return (await t.exec('edge', 'nft', ['list', 'table', 'inet', 'ftp_alg_dp'], { timeoutMs: 10_000 })).stdout;
}

/** The gateway's /metrics text, fetched from inside the edge namespace. */
export async function scrapeMetrics(t: Topology, address: string): Promise<string> {
  const r = await t.exec('edge', 'curl', ['-sf', `http://${address}/metrics`], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`metrics: ${r.stderr}`);
  return r.stdout;
}

/** One sample of a metric whose labels include `labels`; 0 when absent. */
export function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

/** The `ftp_alg_ports_free` lines of a /metrics text, sorted. */
export function freePools(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('ftp_alg_ports_free'))
    .sort();
}

/** What `freePools` reads when every port of every site's two pools is free. */
export function fullPools(sites: Record<string, { readonly passive: Range; readonly active: Range }>): string[] {
  return Object.entries(sites)
    .flatMap(([site, { passive, active }]) => [
      `ftp_alg_ports_free{site="${site}",dir="passive"} ${passive.max - passive.min + 1}`,
      `ftp_alg_ports_free{site="${site}",dir="active"} ${active.max - active.min + 1}`,
    ])
    .sort();
}

/** Within a bound: the table is there, holds no element, and every pool is full (`full`, from fullPools). */
export async function expectKernelSettled(t: Topology, metricsAddress: string, full: readonly string[]): Promise<void> {
  const deadline = Date.now() + SETTLE_MS;
  let listing = '';
  let free: string[] = [];
  for (;;) {
    listing = await kernelTable(t);
    free = freePools(await scrapeMetrics(t, metricsAddress));
    if (listing.includes('table inet ftp_alg_dp') && !hasElements(listing) && free.join('\n') === full.join('\n')) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(listing).toContain('table inet ftp_alg_dp');
  expect(hasElements(listing), listing).toBe(false);
  expect(free).toEqual(full);
}
