/** The office-router example of outbound sites (deploy/outbound): valid, and its nftables file is what the generator prints. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';
import { nftablesRules } from '../../../src/deploy/nftables.js';

const ROOT = new URL('../../../', import.meta.url);

describe('deploy/outbound', () => {
  const config = loadConfigFile(new URL('deploy/outbound/ftp-alg.yaml', ROOT).pathname);

  it('holds one forward and one transparent site', () => {
    expect(config.sites.map((s) => s.role)).toEqual(['forward', 'transparent']);
  });

  it('ftp-alg.nft equals what `ftp-alg --nftables` prints for ftp-alg.yaml (the redirect of inside clients\' tcp/21 included)', () => {
    const text = nftablesRules(config);
    expect(readFileSync(new URL('deploy/outbound/ftp-alg.nft', ROOT), 'utf8')).toBe(text);
    expect(text).toContain('ip saddr 198.51.100.0/24 fib daddr type != local tcp dport 21 dnat ip to 198.51.100.1:2122');
  });
});
