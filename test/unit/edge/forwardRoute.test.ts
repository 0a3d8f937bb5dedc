/** Where a forward session goes: the name resolved once, the resolved address checked (issue 15 items 2 and 4). */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import type { RouteVerb } from '../../../src/control/types.js';
import { type Lookup, forwardRoute, ownEndpoints } from '../../../src/edge/outbound.js';

const NAMES: Record<string, string[]> = {
  'ftp.example.org': ['192.0.2.10', '2001:db8::10'],
  'metadata.example.org': ['169.254.169.254'],
  'inside.example.org': ['127.0.0.1'],
  'other.example.org': ['203.0.113.9'],
  'v6.example.org': ['2001:db8::77'],
};
const calls: string[] = [];
const lookup: Lookup = async (host) => {
  calls.push(host);
  const found = NAMES[host];
  if (found === undefined) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};

function route(destinations: Record<string, unknown>, listen = { host: '198.51.100.1', port: 2121 }) {
  const config = parseConfig({ metrics: { listen: '198.51.100.1:9464' }, sites: [{ name: 'fw', role: 'forward', listen, destinations }] });
  const site = config.sites[0];
  if (site === undefined) throw new Error('no site');
  return forwardRoute({ site, own: () => ownEndpoints(config, { listeners: [listen], metrics: undefined }, ['198.51.100.1']), lookup });
}

const show = async (r: ReturnType<typeof route>, verb: RouteVerb, arg: string) => {
  const result = await r(verb, arg);
  return result.ok ? `ok ${result.host}:${result.port} ${result.user ?? '-'}` : `${result.reply.toString('latin1').trim()} [${result.reason}${result.end === true ? ', end' : ''}]`;
};

describe('forwardRoute', () => {
  const everyone = { allow: ['0.0.0.0/0', '::/0'], ports: [21, '2000-2100'] };
  const rows: [string, Record<string, unknown>, RouteVerb, string, string][] = [
    ['USER by name: the first address, the user replayed', everyone, 'USER', 'alice@ftp.example.org', 'ok 192.0.2.10:21 alice'],
    ['USER with a port and an @ in the user name', everyone, 'USER', 'a@b@ftp.example.org:2021', 'ok 192.0.2.10:2021 a@b'],
    ['USER with an IPv6 literal', everyone, 'USER', 'u@[2001:db8::5]:2100', 'ok 2001:db8::5:2100 u'],
    ['SITE host port', everyone, 'SITE', 'v6.example.org 2001', 'ok 2001:db8::77:2001 -'],
    ['OPEN host', everyone, 'OPEN', '192.0.2.44', 'ok 192.0.2.44:21 -'],
    ['a name resolving into link-local (the metadata service)', everyone, 'USER', 'u@metadata.example.org', '530 Destination refused: link-local addresses are not allowed. [destination-link-local]'],
    ['a name resolving into loopback', everyone, 'USER', 'u@inside.example.org', '530 Destination refused: loopback addresses are not allowed. [destination-loopback]'],
    ['169.254.169.254 with allow 0.0.0.0/0', everyone, 'USER', 'u@169.254.169.254', '530 Destination refused: link-local addresses are not allowed. [destination-link-local]'],
    ['the gateway\'s own listener', { allow: ['198.51.100.0/24'], ports: ['1-65535'] }, 'USER', 'u@198.51.100.1:2121', '530 Destination refused: the gateway itself is not a destination. [destination-gateway-itself]'],
    ['the gateway\'s metrics listener', { allow: ['198.51.100.0/24'], ports: ['1-65535'] }, 'USER', 'u@198.51.100.1:9464', '530 Destination refused: the gateway itself is not a destination. [destination-gateway-itself]'],
    ['a port not allowed', everyone, 'USER', 'u@ftp.example.org:22', '530 Destination refused: that port is not allowed. [destination-port]'],
    ['outside the allow list', { allow: ['192.0.2.0/24'] }, 'USER', 'u@other.example.org', '530 Destination refused: that server is not in the allowed list. [destination-not-allowed]'],
    ['allowed by a name in allow', { allow: ['ftp.example.org'] }, 'USER', 'u@192.0.2.10', 'ok 192.0.2.10:21 u'],
    ['denied by a name in deny, deny wins', { allow: ['0.0.0.0/0'], deny: ['ftp.example.org'] }, 'USER', 'u@192.0.2.10', '530 Destination refused: that server is denied. [destination-denied]'],
    ['a deny name that does not resolve refuses everything', { allow: ['0.0.0.0/0'], deny: ['gone.example.org'] }, 'USER', 'u@192.0.2.10', '530 Destination policy unavailable (a deny name does not resolve). [unresolved-policy]'],
    ['a name that does not resolve', everyone, 'USER', 'u@gone.example.org', '530 Cannot resolve gone.example.org. [unresolved]'],
    ['USER without a host', everyone, 'USER', 'alice', '530 Name the server: USER user@host[:port], SITE host or OPEN host. [bad-target]'],
    ['HOST is not a route on a forward site', everyone, 'HOST', 'ftp.example.org', '530 Name the server: USER user@host[:port], SITE host or OPEN host. [bad-target]'],
  ];
  it.each(rows)('%s', async (_name, destinations, verb, arg, want) => {
    expect(await show(route(destinations), verb, arg)).toBe(want);
  });

  it('a name is resolved once per route; the third refusal of a session ends it with 421', async () => {
    const r = route(everyone);
    calls.length = 0;
    await r('USER', 'u@ftp.example.org');
    expect(calls).toEqual(['ftp.example.org']);
    expect(await show(r, 'USER', 'u@127.0.0.1')).toMatch(/^530 .*\[destination-loopback\]$/);
    expect(await show(r, 'USER', 'u@127.0.0.1')).toMatch(/^530 .*\[destination-loopback\]$/);
    expect(await show(r, 'USER', 'u@127.0.0.1')).toMatch(/^421 .*\[destination-loopback, end\]$/);
  });
});
