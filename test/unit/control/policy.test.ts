/**
 * The gateway's pure decisions (src/control/policy.ts, src/common/address.ts), one row per case:
 * RFC 2577 bounce protection, client admission, the upstream command for
 * each client command, and the replies that mean "no such extension".
 */
import { describe, expect, it } from 'vitest';
import type { ClientAddressPolicy, UpstreamDataMode } from '../../../src/config/types.js';
import type { Family, HostPort } from '../../../src/ftp/hostPort.js';
import {
  MIN_DATA_PORT,
  type TargetCheck,
  type UpstreamAbilities,
  type UpstreamSetup,
  checkActiveTarget,
  refusesExtension,
  upstreamSetupFor,
} from '../../../src/control/policy.js';
import { familyOf, isClientAllowed } from '../../../src/common/address.js';

const target = (address: string, port: number): HostPort => ({ address, port, family: address.includes(':') ? 6 : 4 });
const ok = (address: string, port: number): TargetCheck => ({ ok: true, address, port });
const no = (reason: 'bounce-host' | 'privileged-port' | 'family'): TargetCheck => ({ ok: false, reason });

describe('checkActiveTarget (PORT/EPRT, RFC 2577)', () => {
  const CLIENT = '198.51.100.7';
  const CLIENT6 = '2001:db8::7';
  const rows: Array<[string, HostPort, string, ClientAddressPolicy, TargetCheck]> = [
    ['the control client itself, a high port', target(CLIENT, 50_000), CLIENT, 'strict', ok(CLIENT, 50_000)],
    ['port 1024 is the first one allowed', target(CLIENT, 1024), CLIENT, 'strict', ok(CLIENT, 1024)],
    ['port 65535', target(CLIENT, 65_535), CLIENT, 'strict', ok(CLIENT, 65_535)],
    ['port 1023 is privileged', target(CLIENT, 1023), CLIENT, 'strict', no('privileged-port')],
    ['port 21: bounce to the FTP port of the client', target(CLIENT, 21), CLIENT, 'strict', no('privileged-port')],
    ['port 25: the classic bounce to SMTP', target(CLIENT, 25), CLIENT, 'strict', no('privileged-port')],
    ['port 1', target(CLIENT, 1), CLIENT, 'strict', no('privileged-port')],
    ['a third host: bounce', target('203.0.113.9', 50_000), CLIENT, 'strict', no('bounce-host')],
    ['a host on the private side: bounce', target('10.0.0.5', 50_000), CLIENT, 'strict', no('bounce-host')],
    ['0.0.0.0 is not the client', target('0.0.0.0', 50_000), CLIENT, 'strict', no('bounce-host')],
    ['a third host and a privileged port: the port is named', target('203.0.113.9', 25), CLIENT, 'strict', no('privileged-port')],
    ['IPv6 target from an IPv4 client: family', target(CLIENT6, 50_000), CLIENT, 'strict', no('family')],
    ['IPv4 target from an IPv6 client: family', target(CLIENT, 50_000), CLIENT6, 'strict', no('family')],
    ['IPv6: the client itself', target(CLIENT6, 50_000), CLIENT6, 'strict', ok(CLIENT6, 50_000)],
    ['IPv6: another host', target('2001:db8::8', 50_000), CLIENT6, 'strict', no('bounce-host')],
    // substitute: a client behind its own NAT announces a private address; the control client's is used.
    ['substitute: a private address becomes the client', target('192.168.1.20', 50_000), CLIENT, 'substitute', ok(CLIENT, 50_000)],
    ['substitute: a third host becomes the client', target('203.0.113.9', 4_000), CLIENT, 'substitute', ok(CLIENT, 4_000)],
    ['substitute: another family becomes the client', target(CLIENT6, 50_000), CLIENT, 'substitute', ok(CLIENT, 50_000)],
    ['substitute: the client itself', target(CLIENT, 1024), CLIENT, 'substitute', ok(CLIENT, 1024)],
    ['substitute never allows a privileged port', target('192.168.1.20', 1023), CLIENT, 'substitute', no('privileged-port')],
    ['substitute: privileged port on the client itself', target(CLIENT, 20), CLIENT, 'substitute', no('privileged-port')],
  ];
  it.each(rows)('%s', (_name, hostPort, client, policy, expected) => {
    expect(checkActiveTarget(hostPort, client, policy)).toEqual(expected);
  });

  it('MIN_DATA_PORT is 1024 (RFC 2577 4)', () => {
    expect(MIN_DATA_PORT).toBe(1024);
  });
});

describe('isClientAllowed (deny first, then allow; empty allow: everyone)', () => {
  const rows: Array<[string, string, string[], string[], boolean]> = [
    ['no lists: everyone', '203.0.113.1', [], [], true],
    ['no lists: IPv6 too', '2001:db8::1', [], [], true],
    ['inside the allow block', '10.1.2.3', ['10.0.0.0/8'], [], true],
    ['outside the allow block', '192.0.2.1', ['10.0.0.0/8'], [], false],
    ['one of several allow blocks', '192.0.2.1', ['10.0.0.0/8', '192.0.2.0/24'], [], true],
    ['allow a single address without a prefix', '192.0.2.1', ['192.0.2.1'], [], true],
    ['a single allowed address is not its neighbour', '192.0.2.2', ['192.0.2.1'], [], false],
    ['the edge of a /24', '192.0.2.255', ['192.0.2.0/24'], [], true],
    ['just past the /24', '192.0.3.0', ['192.0.2.0/24'], [], false],
    ['denied with an empty allow list', '10.1.2.3', [], ['10.0.0.0/8'], false],
    ['not denied with an empty allow list', '10.1.2.3', [], ['192.0.2.0/24'], true],
    ['deny wins over allow', '10.1.2.3', ['10.0.0.0/8'], ['10.1.0.0/16'], false],
    ['allowed, outside the deny hole', '10.2.0.1', ['10.0.0.0/8'], ['10.1.0.0/16'], true],
    ['deny a single address without a prefix', '192.0.2.1', [], ['192.0.2.1'], false],
    ['0.0.0.0/0 denies every IPv4 client', '198.51.100.1', [], ['0.0.0.0/0'], false],
    // IPv4-mapped IPv6 (a dual-stack listener's view of an IPv4 client) matches IPv4 blocks.
    ['IPv4-mapped client, IPv4 allow block', '::ffff:10.1.2.3', ['10.0.0.0/8'], [], true],
    ['IPv4-mapped client, outside the IPv4 allow block', '::ffff:192.0.2.1', ['10.0.0.0/8'], [], false],
    ['IPv4-mapped client, IPv4 deny block', '::ffff:192.0.2.1', [], ['192.0.2.0/24'], false],
    ['IPv4-mapped client, IPv4 deny of a single address', '::ffff:192.0.2.1', [], ['192.0.2.1'], false],
    // A block written in IPv4-mapped form names the same IPv4 clients: a deny entry must not silently match nothing.
    ['IPv4 client, deny block in IPv4-mapped form', '192.0.2.1', [], ['::ffff:192.0.2.0/120'], false],
    ['IPv4-mapped client, deny of its IPv4-mapped address', '::ffff:192.0.2.1', [], ['::ffff:192.0.2.1'], false],
    ['IPv4 client, allow block in IPv4-mapped form', '192.0.2.1', ['::ffff:192.0.2.0/120'], [], true],
    ['IPv6 client in an IPv6 allow block', '2001:db8::1', ['2001:db8::/32'], [], true],
    ['IPv6 client outside the IPv6 allow block', '2001:db9::1', ['2001:db8::/32'], [], false],
    ['IPv6 client against IPv4 blocks only', '2001:db8::1', ['0.0.0.0/0'], [], false],
    ['IPv4 client against IPv6 blocks only', '192.0.2.1', ['::/0'], [], false],
    ['IPv6 deny wins', '2001:db8::1', ['::/0'], ['2001:db8::/48'], false],
    ['IPv6 client in a non-canonical spelling', '2001:0db8:0000::0001', ['2001:db8::1/128'], [], true],
  ];
  it.each(rows)('%s', (_name, address, allow, deny, expected) => {
    expect(isClientAllowed(address, allow, deny)).toBe(expected);
  });
});

describe('upstreamSetupFor (the command that sets up the upstream leg)', () => {
  const ALL: UpstreamAbilities = { epsv: true, eprt: true };
  const NO_EPSV: UpstreamAbilities = { epsv: false, eprt: true };
  const NO_EPRT: UpstreamAbilities = { epsv: true, eprt: false };
  const NONE: UpstreamAbilities = { epsv: false, eprt: false };
  const rows: Array<[UpstreamSetup, UpstreamDataMode, Family, UpstreamAbilities, UpstreamSetup, string]> = [
    // dataMode "client": the client's own command, extended when needed.
    ['PASV', 'client', 4, ALL, 'PASV', 'kept'],
    ['EPSV', 'client', 4, ALL, 'EPSV', 'kept'],
    ['EPSV', 'client', 4, NO_EPSV, 'PASV', 'RFC 2428 fallback once EPSV was refused'],
    ['PASV', 'client', 6, ALL, 'EPSV', 'PASV cannot carry IPv6'],
    ['PASV', 'client', 6, NONE, 'EPSV', 'IPv6 upstream: EPSV is the only way'],
    ['EPSV', 'client', 6, NO_EPSV, 'EPSV', 'IPv6 upstream: no PASV fallback'],
    ['PORT', 'client', 4, ALL, 'PORT', 'kept'],
    ['EPRT', 'client', 4, ALL, 'EPRT', 'kept'],
    ['EPRT', 'client', 4, NO_EPRT, 'PORT', 'fallback once EPRT was refused'],
    ['PORT', 'client', 6, ALL, 'EPRT', 'PORT cannot carry IPv6'],
    ['EPRT', 'client', 6, NONE, 'EPRT', 'IPv6 upstream: EPRT is the only way'],
    ['PASV', 'client', 4, NONE, 'PASV', 'abilities do not matter for the classic form'],
    ['PORT', 'client', 4, NONE, 'PORT', 'abilities do not matter for the classic form'],
    // dataMode "passive": always the upstream listens.
    ['PORT', 'passive', 4, ALL, 'PASV', 'active client, passive upstream'],
    ['EPRT', 'passive', 4, ALL, 'EPSV', 'extended stays extended'],
    ['EPRT', 'passive', 4, NO_EPSV, 'PASV', 'extended, but EPSV refused before'],
    ['PORT', 'passive', 6, ALL, 'EPSV', 'IPv6 upstream'],
    ['PASV', 'passive', 4, ALL, 'PASV', 'already passive'],
    ['EPSV', 'passive', 4, ALL, 'EPSV', 'already passive'],
    ['EPSV', 'passive', 6, NONE, 'EPSV', 'IPv6 upstream'],
    // dataMode "active": always the upstream connects to the edge.
    ['PASV', 'active', 4, ALL, 'PORT', 'passive client, active upstream'],
    ['EPSV', 'active', 4, ALL, 'EPRT', 'extended stays extended'],
    ['EPSV', 'active', 4, NO_EPRT, 'PORT', 'extended, but EPRT refused before'],
    ['PASV', 'active', 6, ALL, 'EPRT', 'IPv6 upstream'],
    ['PORT', 'active', 4, ALL, 'PORT', 'already active'],
    ['EPRT', 'active', 4, ALL, 'EPRT', 'already active'],
    ['EPRT', 'active', 6, NONE, 'EPRT', 'IPv6 upstream'],
  ];
  it.each(rows)('%s, dataMode %s, IPv%s upstream, %o → %s (%s)', (verb, mode, family, abilities, expected) => {
    expect(upstreamSetupFor(verb, mode, family, abilities)).toBe(expected);
  });

  // Every combination: the mode is the one asked for, and an IPv6 upstream always gets the extended form.
  const verbs: UpstreamSetup[] = ['PASV', 'EPSV', 'PORT', 'EPRT'];
  const modes: UpstreamDataMode[] = ['client', 'passive', 'active'];
  const families: Family[] = [4, 6];
  const abilitySets = [ALL, NO_EPSV, NO_EPRT, NONE];
  it('every combination keeps the mode and speaks IPv6 only in the extended form', () => {
    for (const verb of verbs) {
      for (const mode of modes) {
        for (const family of families) {
          for (const abilities of abilitySets) {
            const got = upstreamSetupFor(verb, mode, family, abilities);
            const clientPassive = verb === 'PASV' || verb === 'EPSV';
            const wantPassive = mode === 'client' ? clientPassive : mode === 'passive';
            expect(got === 'PASV' || got === 'EPSV').toBe(wantPassive);
            if (family === 6) expect(['EPSV', 'EPRT']).toContain(got);
            if (verb === 'PASV' || verb === 'PORT') {
              if (family === 4) expect(['PASV', 'PORT']).toContain(got); // a classic client never makes an IPv4 upstream speak extended
            }
          }
        }
      }
    }
  });
});

describe('refusesExtension (RFC 959, RFC 2428: "this command is not known here")', () => {
  const rows: Array<[number, boolean, string]> = [
    [500, true, 'syntax error, command unrecognized'],
    [502, true, 'command not implemented'],
    [522, true, 'network protocol not supported (RFC 2428)'],
    [200, false, 'success'],
    [227, false, 'entering passive mode'],
    [229, false, 'entering extended passive mode'],
    [421, false, 'service not available: a failure, not a missing extension'],
    [425, false, "can't open data connection"],
    [501, false, 'syntax error in arguments: the command is known'],
    [503, false, 'bad sequence'],
    [504, false, 'not implemented for that parameter'],
    [530, false, 'not logged in'],
  ];
  it.each(rows)('%i → %s (%s)', (code, expected) => {
    expect(refusesExtension(code)).toBe(expected);
  });
});

describe('familyOf', () => {
  it.each([
    ['192.0.2.1', 4],
    ['0.0.0.0', 4],
    ['::1', 6],
    ['2001:db8::1', 6],
    ['::ffff:192.0.2.1', 6],
  ] as const)('%s is IPv%i', (address, family) => {
    expect(familyOf(address)).toBe(family);
  });
});
