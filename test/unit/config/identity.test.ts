/** Config keys of client identity (issue 12): PROXY protocol on the listener and toward the upstream. */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

type Doc = Record<string, unknown>;
const LISTEN = { host: '127.0.0.1', port: 2121 };
const UPSTREAM = { host: '192.0.2.10', port: 21 };
const site = (extra: Doc = {}): Doc => ({ name: 'main', listen: LISTEN, upstream: UPSTREAM, ...extra });
const parse = (extra: Doc) => parseConfig({ sites: [site(extra)] }).sites[0];

function refusedAt(extra: Doc): string {
  try {
    parse(extra);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).key;
  }
  throw new Error('accepted');
}

describe('PROXY protocol keys', () => {
  it('default to off, with no trusted balancer and a 5 s header deadline', () => {
    const s = parse({});
    expect(s?.listen).toMatchObject({ proxyProtocol: 'off', trustedProxies: [] });
    expect(s?.upstream).toMatchObject({ proxyProtocol: 'off', proxyProtocolData: false });
    expect(s?.timeouts.proxyHeaderMs).toBe(5_000);
  });

  it.each(['v1', 'v2', 'any'])('listen.proxyProtocol %s with trusted balancers', (mode) => {
    const s = parse({ listen: { ...LISTEN, proxyProtocol: mode, trustedProxies: ['198.51.100.0/24', '2001:db8::5'] } });
    expect(s?.listen.proxyProtocol).toBe(mode);
    expect(s?.listen.trustedProxies).toEqual(['198.51.100.0/24', '2001:db8::5']);
  });

  it.each([
    ['a listener expecting headers from no one', { listen: { ...LISTEN, proxyProtocol: 'v2' } }, 'sites[0].listen.trustedProxies'],
    ['an unknown listener mode', { listen: { ...LISTEN, proxyProtocol: 'v3', trustedProxies: ['198.51.100.1'] } }, 'sites[0].listen.proxyProtocol'],
    ['a trusted proxy that is not a CIDR', { listen: { ...LISTEN, proxyProtocol: 'v1', trustedProxies: ['lb.example'] } }, 'sites[0].listen.trustedProxies'],
    ['"any" toward the upstream (the gateway must pick one)', { upstream: { ...UPSTREAM, proxyProtocol: 'any' } }, 'sites[0].upstream.proxyProtocol'],
    ['data headers without a version', { upstream: { ...UPSTREAM, proxyProtocolData: true } }, 'sites[0].upstream.proxyProtocolData'],
    ['data headers given as a string', { upstream: { ...UPSTREAM, proxyProtocol: 'v1', proxyProtocolData: 'yes' } }, 'sites[0].upstream.proxyProtocolData'],
    ['a zero header deadline', { timeouts: { proxyHeaderMs: 0 } }, 'sites[0].timeouts.proxyHeaderMs'],
  ])('refuses %s', (_name, extra, key) => {
    expect(refusedAt(extra)).toBe(key);
  });
});
