/** Routing by USER and HOST (issue 12, item 3), by tables. */
import { describe, expect, it } from 'vitest';
import type { RoutingConfig } from '../../../src/config/types.js';
import { chooseRoute, rendezvous } from '../../../src/edge/routing.js';

const MEMBERS = ['192.0.2.10', '192.0.2.11', '192.0.2.12'];
const BY_USER: RoutingConfig = { by: 'user', users: { carol: '198.51.100.50' }, hosts: {} };
const BY_HOST: RoutingConfig = { by: 'host', users: {}, hosts: { 'ftp.a.example': '192.0.2.11' } };

describe('chooseRoute', () => {
  it.each([
    ['USER carol: the explicit map wins', BY_USER, 'USER', 'carol', { kind: 'member', host: '198.51.100.50', replayUser: 'carol' }],
    ['HOST known', BY_HOST, 'HOST', 'ftp.a.example', { kind: 'member', host: '192.0.2.11', replayUser: undefined }],
    ['HOST is case-insensitive', BY_HOST, 'HOST', 'FTP.A.Example', { kind: 'member', host: '192.0.2.11', replayUser: undefined }],
    ['HOST not configured: refused (504)', BY_HOST, 'HOST', 'ftp.b.example', { kind: 'refused', reason: 'unknown-host' }],
    ['USER on a HOST site without HOST first: any member', BY_HOST, 'USER', 'dave', { kind: 'any', replayUser: 'dave' }],
    ['USER empty', BY_USER, 'USER', '', { kind: 'refused', reason: 'bad-user' }],
    ['USER with a control character', BY_USER, 'USER', 'a\u0007b', { kind: 'refused', reason: 'bad-user' }],
    ['USER too long', BY_USER, 'USER', 'x'.repeat(300), { kind: 'refused', reason: 'bad-user' }],
  ] as const)('%s', (_name, config, verb, arg, expected) => {
    expect(chooseRoute(config, verb, arg, MEMBERS)).toEqual(expected);
  });

  it('USER by hash: the same user always gets the same member', () => {
    const first = chooseRoute(BY_USER, 'USER', 'alice', MEMBERS);
    for (let i = 0; i < 10; i++) expect(chooseRoute(BY_USER, 'USER', 'alice', MEMBERS)).toEqual(first);
    expect(first.kind).toBe('member');
  });

  it('no member in service: refused', () => {
    expect(chooseRoute(BY_USER, 'USER', 'alice', [])).toEqual({ kind: 'refused', reason: 'no-upstream' });
  });
});

describe('rendezvous hashing', () => {
  const users = Array.from({ length: 3000 }, (_, i) => `user${i}`);

  it('spreads users over the members', () => {
    const counts = new Map<string, number>();
    for (const u of users) {
      const m = rendezvous(u, MEMBERS) as string;
      counts.set(m, (counts.get(m) ?? 0) + 1);
    }
    for (const m of MEMBERS) expect(counts.get(m)).toBeGreaterThan(800);
  });

  it('a member leaving moves only its own users; a member joining takes only users it now wins', () => {
    const before = new Map(users.map((u) => [u, rendezvous(u, MEMBERS)]));
    const without = MEMBERS.filter((m) => m !== '192.0.2.12');
    for (const u of users) {
      const was = before.get(u);
      if (was !== '192.0.2.12') expect(rendezvous(u, without)).toBe(was);
    }
    const more = [...MEMBERS, '192.0.2.13'];
    for (const u of users) {
      const now = rendezvous(u, more);
      if (now !== '192.0.2.13') expect(now).toBe(before.get(u));
    }
  });
});
