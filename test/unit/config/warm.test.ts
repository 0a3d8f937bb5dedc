/** sites[].upstream.warm: off by default, and refused where the client must be known before the connection is made. */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../../src/config/load.js';

type Keys = { readonly upstream?: Record<string, unknown>; readonly [key: string]: unknown };

/** The first site of a config whose upstream is 192.0.2.10 plus `keys.upstream`, with the other `keys` at the site. */
function site(keys: Keys) {
  const { upstream = {}, ...rest } = keys;
  return parseConfig({ sites: [{ name: 'w', ...rest, upstream: { host: '192.0.2.10', ...upstream } }] }).sites[0];
}

function refusal(keys: Keys): string {
  try {
    site(keys);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${JSON.stringify(keys)}`);
}

describe('upstream.warm config', () => {
  it('is off by default, with a 20 s age', () => {
    expect(site({})?.upstream).toMatchObject({ warm: 0, warmMaxAgeMs: 20_000 });
  });

  it('accepts a count on a plain reverse site', () => {
    expect(site({ upstream: { warm: 4, warmMaxAgeMs: 5_000 } })?.upstream).toMatchObject({ warm: 4, warmMaxAgeMs: 5_000 });
  });

  it.each([
    ['more than 64 per member', { upstream: { warm: 65 } }, /upstream\.warm.*64/],
    ['a PROXY header toward the upstream', { upstream: { warm: 2, proxyProtocol: 'v2' } }, /upstream\.warm.*proxyProtocol/],
    ['routing by user', { upstream: { warm: 2 }, routing: { by: 'user' } }, /upstream\.warm.*routing/],
    ['a negative count', { upstream: { warm: -1 } }, /warm/],
  ])('refuses %s', (_name, keys, message) => {
    expect(refusal(keys)).toMatch(message);
  });

  it('refuses it on outbound sites, which have no upstream', () => {
    let message = '';
    try {
      parseConfig({ sites: [{ name: 'f', role: 'forward', listen: { host: '127.0.0.1' }, upstream: { warm: 1 } }] });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/warm/);
  });
});
