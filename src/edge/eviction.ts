/**
 * Eviction instead of refusal at a cap (issue 13): when a scope (one client
 * address, one site, the process) is full, the oldest of its sessions that
 * has not logged in and is quiet makes room for the newcomer. A logged-in
 * session is never evicted for a newcomer.
 *
 * Each scope keeps its not-yet-logged-in sessions in one insertion-ordered
 * set, oldest first. A member seen logged in during a search leaves the set
 * for good, so every session is passed over as logged in at most once per
 * scope; members busy with a command (a reply owed, a pinhole open) stay,
 * and a search looks at no more than MAX_SCAN of them: admission stays O(1).
 */

export type EvictionScope = 'client' | 'site' | 'process';

/** A session as eviction sees it. */
export interface Evictable {
  /** A 230 to USER/PASS/ACCT was seen. */
  readonly loggedIn: boolean;
  /** No command owed a reply, no pinhole. */
  readonly quiet: boolean;
  /** End it with 421 now, and give back everything it counts against, before this returns. */
  evict(scope: EvictionScope): void;
}

/** Members looked at by one search; beyond them the newcomer is refused. */
const MAX_SCAN = 64;

export class PreLoginQueue<T extends Evictable> {
  private readonly members = new Set<T>();

  get size(): number {
    return this.members.size;
  }

  add(member: T): void {
    this.members.add(member);
  }

  delete(member: T): void {
    this.members.delete(member);
  }

  /** The oldest member not logged in and quiet; members found logged in leave the queue. */
  oldestIdle(): T | undefined {
    let scanned = 0;
    for (const member of this.members) {
      if (member.loggedIn) {
        this.members.delete(member);
        continue;
      }
      if (member.quiet) return member;
      if (++scanned >= MAX_SCAN) return undefined;
    }
    return undefined;
  }

  /** Evict the oldest idle member for `scope`; false when there is none. */
  evictOldest(scope: EvictionScope): boolean {
    const victim = this.oldestIdle();
    if (victim === undefined) return false;
    this.members.delete(victim);
    victim.evict(scope);
    return true;
  }
}
