/**
 * The nftables generator: the committed example equals what it prints for
 * config/ftp-alg.json, and the only inbound accepts are established and
 * related traffic, loopback, the control ports, the passive ranges and the
 * active ranges from the upstreams.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';
import { parseConfig } from '../../../src/config/load.js';
import { nftablesRules } from '../../../src/deploy/nftables.js';
import { configWithSite } from '../../support/deployConfig.js';

const ROOT = new URL('../../../', import.meta.url);
const config = loadConfigFile(new URL('config/ftp-alg.json', ROOT).pathname);

/** The rule lines of the input chain: no comments, blanks or chain header. */
function ruleLines(text: string): string[] {
  const chain = /chain input \{\n([\s\S]*?)\n\t\}/.exec(text)?.[1];
  if (chain === undefined) throw new Error('no input chain');
  return chain
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('type filter'));
}

function withoutComment(rule: string): string {
  return rule.replace(/ comment "[^"]*"$/, '');
}

const BASE = ['ct state established,related accept', 'ct state invalid drop', 'iif "lo" accept'];

const configWith = configWithSite({ passivePorts: { min: 50000, max: 50099 }, activePorts: { min: 50100, max: 50199 } });

describe('nftablesRules', () => {
  it('deploy/nftables/ftp-alg.nft equals what the generator prints for config/ftp-alg.json', () => {
    expect(readFileSync(new URL('deploy/nftables/ftp-alg.nft', ROOT), 'utf8')).toBe(nftablesRules(config));
  });

  it('drops by default in its own table, replaced atomically on reload', () => {
    const text = nftablesRules(config);
    expect(text).toMatch(/^table inet ftp_alg\ndelete table inet ftp_alg\n\ntable inet ftp_alg \{$/m);
    expect(text).toContain('type filter hook input priority filter; policy drop;');
  });

  it('opens exactly the control port, the passive range, and the active range from the upstream', () => {
    const site = config.sites[0];
    if (site === undefined) throw new Error('no site');
    expect(ruleLines(nftablesRules(config)).map(withoutComment)).toEqual([
      ...BASE,
      `tcp dport ${site.listen.port} accept`,
      `tcp dport ${site.passivePorts.min}-${site.passivePorts.max} accept`,
      `ip saddr ${site.upstream.host} tcp dport ${site.activePorts.min}-${site.activePorts.max} accept`,
    ]);
  });

  it('limits control and passive to a fixed listener address and the allowed clients, denied ones first', () => {
    const text = nftablesRules(
      configWith({
        listen: { host: '203.0.113.1', port: 21 },
        clients: { allow: ['198.51.100.0/24', '2001:db8:1::/48'], deny: ['198.51.100.66'] },
      }),
    );
    expect(ruleLines(text).map(withoutComment)).toEqual([
      ...BASE,
      'ip daddr 203.0.113.1 ip saddr 198.51.100.66 tcp dport { 21, 50000-50099 } drop',
      'ip daddr 203.0.113.1 ip saddr 198.51.100.0/24 tcp dport 21 accept',
      'ip daddr 203.0.113.1 ip saddr 198.51.100.0/24 tcp dport 50000-50099 accept',
      'ip saddr 192.0.2.10 tcp dport 50100-50199 accept',
    ]);
  });

  it('writes one rule per family for a wildcard listener with mixed allowed clients', () => {
    const text = nftablesRules(configWith({ listen: { host: '::', port: 21 }, clients: { allow: ['198.51.100.0/24', '2001:db8:1::/48'], deny: [] } }));
    expect(ruleLines(text).map(withoutComment)).toContain('ip saddr 198.51.100.0/24 tcp dport 21 accept');
    expect(ruleLines(text).map(withoutComment)).toContain('ip6 saddr 2001:db8:1::/48 tcp dport 21 accept');
  });

  it('admits the active range from every member of an upstream pool, on the private address', () => {
    const text = nftablesRules(configWith({ upstream: { host: '', hosts: ['192.0.2.11', '192.0.2.12'], port: 21 }, privateAddress: '192.0.2.1' }));
    expect(ruleLines(text).map(withoutComment)).toContain('ip daddr 192.0.2.1 ip saddr { 192.0.2.11, 192.0.2.12 } tcp dport 50100-50199 accept');
  });

  it('leaves the active range open to any source when the pool is a DNS name, and says so', () => {
    const text = nftablesRules(configWith({ upstream: { host: '', dns: 'ftp-upstream.ftp.svc.cluster.local', port: 21 } }));
    expect(ruleLines(text).map(withoutComment)).toContain('tcp dport 50100-50199 accept');
    expect(text).toContain('# upstream.dns: its addresses change');
  });

  it('lets IPv6 neighbour discovery in only when the config uses IPv6', () => {
    const nd = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept';
    expect(ruleLines(nftablesRules(config))).not.toContain(nd);
    expect(ruleLines(nftablesRules(configWith({ externalAddress: ['203.0.113.1', '2001:db8::1'] })))).toContain(nd);
  });

  it('opens nothing for the metrics listener', () => {
    const text = nftablesRules(configWith({}, { metrics: { listen: '0.0.0.0:9464' } }));
    expect(text).not.toMatch(/dport[^\n]*9464/);
    expect(text).toContain('# metrics on 0.0.0.0:9464 stay closed');
  });

  it('every accept outside the base rules names a configured port (multi-site example)', () => {
    const multi = loadConfigFile(new URL('config/examples/multi-site.json', ROOT).pathname);
    const allowed = new Set(
      multi.sites.flatMap((s) => [
        String(s.listen.port),
        `${s.passivePorts.min}-${s.passivePorts.max}`,
        `${s.activePorts.min}-${s.activePorts.max}`,
        `{ ${s.listen.port}, ${s.passivePorts.min}-${s.passivePorts.max} }`,
      ]),
    );
    for (const rule of ruleLines(nftablesRules(multi)).filter((r) => !BASE.includes(r))) {
      const ports = /tcp dport (\{[^}]*\}|\S+) /.exec(rule)?.[1];
      expect(ports, rule).toBeDefined();
      expect(allowed.has(ports ?? ''), rule).toBe(true);
    }
  });
});

describe('the forward chain of the kernel data plane', () => {
  it('is absent for the relay (the default)', () => {
    expect(nftablesRules(configWith({}))).not.toContain('hook forward');
  });

  it.each(['nftables', 'auto'])('%s: forwards only DNATed flows to the pinhole ranges, drops the rest', (kind) => {
    const text = nftablesRules(configWith({}, { dataPlane: { kind } }));
    const chain = /chain forward \{\n([\s\S]*?)\n\t\}/.exec(text)?.[1] ?? '';
    expect(chain.split('\n').map((l) => l.trim())).toEqual([
      'type filter hook forward priority filter; policy drop;',
      'ct status dnat meta l4proto tcp ct original proto-dst { 50000-50099, 50100-50199 } accept comment "ftp-alg kernel data plane pinholes"',
    ]);
  });
});

describe('nftablesRules for outbound sites (issue 15)', () => {
  const outbound = (role: 'forward' | 'transparent', extra: Record<string, unknown> = {}) =>
    parseConfig({
      sites: [
        {
          name: 'office',
          role,
          listen: { host: '0.0.0.0', port: 2121 },
          destinations: { allow: ['0.0.0.0/0'], ports: [21, '2121-2122'] },
          passivePorts: { min: 50000, max: 50099 },
          activePorts: { min: 50100, max: 50199 },
          ...extra,
        },
      ],
    });

  /** The rule lines of the prerouting chain (comments kept: they say what was left out). */
  const redirects = (text: string) =>
    (/chain prerouting \{\n([\s\S]*?)\n\t\}/.exec(text)?.[1] ?? '')
      .split('\n')
      .map((l) => withoutComment(l.trim()))
      .filter((l) => l !== '' && !l.startsWith('type') && !l.startsWith('# site'));
  const D = 'fib daddr type != local tcp dport { 21, 2121-2122 }';

  it.each([
    ['0.0.0.0, clients of both families: IPv4 only (the listener takes no IPv6)', '0.0.0.0', ['198.51.100.0/24', '2001:db8:1::/48'], [
      `ip saddr 198.51.100.0/24 ${D} redirect to :2121`,
      '# its IPv6 clients cannot reach a listener on 0.0.0.0: not redirected',
    ]],
    [':: with no client list: one rule for both families', '::', [], [`${D} redirect to :2121`]],
    [':: with clients of both families', '::', ['198.51.100.0/24', '2001:db8:1::/48'], [
      `ip saddr 198.51.100.0/24 ${D} redirect to :2121`,
      `ip6 saddr 2001:db8:1::/48 ${D} redirect to :2121`,
    ]],
    ['an IPv4 address: DNAT to exactly it (a redirect picks the interface\'s first address)', '198.51.100.1', ['198.51.100.0/24', '2001:db8:1::/48'], [
      `ip saddr 198.51.100.0/24 ${D} dnat ip to 198.51.100.1:2121`,
      '# its IPv6 clients cannot reach a listener on 198.51.100.1: not redirected',
    ]],
    ['an IPv6 address, no client list', '2001:db8:1::1', [], [`meta nfproto ipv6 ${D} dnat ip6 to [2001:db8:1::1]:2121`]],
  ])('a transparent site on %s', (_name, host, clients, expected) => {
    const text = nftablesRules(outbound('transparent', { listen: { host, port: 2121 }, clients: { allow: clients } }));
    expect(text).toContain('type nat hook prerouting priority dstnat; policy accept;');
    expect(redirects(text)).toEqual(expected);
  });

  it('outbound sites open their active range to any server (chosen per session); a forward site has no redirect', () => {
    for (const role of ['forward', 'transparent'] as const) {
      const text = nftablesRules(outbound(role));
      expect(ruleLines(text).map(withoutComment)).toContain('tcp dport 50100-50199 accept');
      expect(text.includes('chain prerouting')).toBe(role === 'transparent');
    }
  });
});
