/** Config of outbound sites (issue 15): role, destinations, and what makes an open proxy refuse to start. */
import { describe, expect, it } from 'vitest';
import { ConfigError, configDocument, parseConfig } from '../../../src/config/load.js';

type Doc = Record<string, unknown>;

const outbound = (extra: Doc = {}): Doc => ({
  name: 'out',
  role: 'forward',
  listen: { host: '127.0.0.1', port: 2121 },
  passivePorts: { min: 50_000, max: 50_099 },
  activePorts: { min: 50_100, max: 50_199 },
  ...extra,
});

function refusal(site: Doc): string {
  try {
    parseConfig({ sites: [site] });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${JSON.stringify(site)}`);
}

describe('outbound site configuration', () => {
  it('defaults: role reverse; an outbound site gets ports [21], empty lists, direct passive', () => {
    const reverse = parseConfig({ sites: [{ name: 'r', listen: { host: '127.0.0.1', port: 2121 }, upstream: { host: '192.0.2.10' } }] });
    expect(reverse.sites[0]?.role).toBeUndefined();
    expect(reverse.sites[0]?.destinations).toBeUndefined();
    const site = parseConfig({ sites: [outbound()] }).sites[0];
    expect(site?.role).toBe('forward');
    expect(site?.destinations).toEqual({ allow: [], deny: [], ports: [21] });
    expect(site?.transparentPassive).toBeUndefined();
    expect(parseConfig({ sites: [outbound({ role: 'transparent' })] }).sites[0]?.transparentPassive).toBe('direct');
  });

  it('ports take numbers and "lo-hi"; lists are normalised', () => {
    const site = parseConfig({
      sites: [outbound({ destinations: { allow: ['2001:DB8::/32', 'FTP.Example.org', '192.0.2.7'], deny: ['198.51.100.0/24'], ports: [21, '2000-2100'] } })],
    }).sites[0];
    expect(site?.destinations).toEqual({
      allow: ['2001:db8::/32', 'ftp.example.org', '192.0.2.7'],
      deny: ['198.51.100.0/24'],
      ports: [21, '2000-2100'],
    });
  });

  const rows: [string, Doc, RegExp][] = [
    ['a forward site on a non-loopback listener without allow', outbound({ listen: { host: '0.0.0.0', port: 2121 } }), /^sites\[0\]\.destinations\.allow: .*open proxy/],
    ['a forward site on a public address without allow', outbound({ listen: { host: '198.51.100.1', port: 2121 } }), /^sites\[0\]\.destinations\.allow: /],
    ['a forward site with an upstream', outbound({ upstream: { host: '192.0.2.10' } }), /^sites\[0\]\.upstream: a forward site has no upstream/],
    ['a transparent site with an upstream', outbound({ role: 'transparent', upstream: { host: '192.0.2.10' } }), /^sites\[0\]\.upstream: a transparent site has no upstream/],
    ['destinations on a reverse site', { name: 'r', upstream: { host: '192.0.2.10' }, destinations: { allow: ['192.0.2.0/24'] } }, /^sites\[0\]\.destinations: only for/],
    ['transparentPassive on a forward site', outbound({ transparentPassive: 'pinhole' }), /^sites\[0\]\.transparentPassive: only for sites with role "transparent"/],
    ['routing on a forward site', outbound({ routing: { by: 'user' } }), /^sites\[0\]\.routing\.by: a forward site routes by what the client names/],
    ['a role that does not exist', outbound({ role: 'proxy' }), /^sites\[0\]\.role: /],
    ['a host name on a transparent site', outbound({ role: 'transparent', destinations: { allow: ['ftp.example.org'] } }), /^sites\[0\]\.destinations\.allow\[0\]: .*host names only on forward/],
    ['a /33', outbound({ destinations: { allow: ['192.0.2.0/33'] } }), /^sites\[0\]\.destinations\.allow: /],
    ['port 0', outbound({ destinations: { ports: [0] } }), /^sites\[0\]\.destinations\.ports: /],
    ['a port range upside down', outbound({ destinations: { ports: ['2100-2000'] } }), /^sites\[0\]\.destinations\.ports: /],
    ['a port range open-ended', outbound({ destinations: { ports: ['2000-'] } }), /^sites\[0\]\.destinations\.ports: /],
    ['no ports at all', outbound({ destinations: { ports: [] } }), /^sites\[0\]\.destinations\.ports: /],
  ];
  it.each(rows)('refuses %s', (_name, site, message) => {
    expect(refusal(site)).toMatch(message);
  });

  it('an outbound site reads back from its own JSON (the Kubernetes ConfigMap holds it)', () => {
    for (const role of ['forward', 'transparent']) {
      const config = parseConfig({ sites: [outbound({ role, destinations: { allow: ['192.0.2.0/24'], ports: [21, '2000-2100'] } })] });
      expect(parseConfig(JSON.parse(JSON.stringify(configDocument(config))))).toEqual(config);
    }
  });

  it('a forward site with an allow list may listen anywhere; a transparent one needs none', () => {
    expect(() => parseConfig({ sites: [outbound({ listen: { host: '0.0.0.0', port: 2121 }, destinations: { allow: ['0.0.0.0/0'] } })] })).not.toThrow();
    expect(() => parseConfig({ sites: [outbound({ role: 'transparent', listen: { host: '0.0.0.0', port: 2121 } })] })).not.toThrow();
  });
});
