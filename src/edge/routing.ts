/**
 * Routing on a reverse site by what the client says before it logs in:
 * by user (an explicit map, else rendezvous hashing over the members in
 * service, so one user always lands on the same member while it is up and
 * moves as little as possible when members come and go) or by RFC 7151
 * `HOST` (name-based virtual hosting: a map of names). Pure: the members
 * and the choice come in, an address or a refusal goes out.
 */
import { createHash } from 'node:crypto';
import type { RoutingConfig } from '../config/types.js';
import type { RouteVerb } from '../control/types.js';

export type RouteChoice =
  /** Connect to `host`; `replayUser` is the USER the upstream gets (the client's own). */
  | { readonly kind: 'member'; readonly host: string; readonly replayUser: string | undefined }
  /** Any member will do (take the least loaded). */
  | { readonly kind: 'any'; readonly replayUser: string | undefined }
  | { readonly kind: 'refused'; readonly reason: 'unknown-host' | 'bad-user' | 'no-upstream' };

/** User names longer than this, or with control characters, are refused before any hashing. */
const MAX_USER_CHARS = 256;

export function chooseRoute(config: RoutingConfig, verb: RouteVerb, arg: string, inService: readonly string[]): RouteChoice {
  if (verb === 'HOST') {
    const host = config.hosts[arg.toLowerCase()];
    return host === undefined ? { kind: 'refused', reason: 'unknown-host' } : { kind: 'member', host, replayUser: undefined };
  }
  if (verb !== 'USER') return { kind: 'refused', reason: 'unknown-host' };
  if (arg.length === 0 || arg.length > MAX_USER_CHARS || /[\0-\x1f\x7f]/.test(arg)) return { kind: 'refused', reason: 'bad-user' };
  if (config.by !== 'user') return { kind: 'any', replayUser: arg };
  const mapped = config.users[arg];
  if (mapped !== undefined) return { kind: 'member', host: mapped, replayUser: arg };
  const host = rendezvous(arg, inService);
  return host === undefined ? { kind: 'refused', reason: 'no-upstream' } : { kind: 'member', host, replayUser: arg };
}

/** The member with the highest hash of (key, member): stable while it is in service (highest random weight). */
export function rendezvous(key: string, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1n;
  for (const member of members) {
    const score = createHash('sha256').update(key).update('\0').update(member).digest().readBigUInt64BE(0);
    if (score > bestScore) {
      best = member;
      bestScore = score;
    }
  }
  return best;
}
