/**
 * The server side's TLS session cache, shared by a site's control listener
 * and every pinhole: a client that resumes its control session on a data
 * connection by session ID (TLS 1.2; curl does) finds it here. Tickets
 * (TLS 1.3, and TLS 1.2 clients that ask for them) need no store: they are
 * sealed with the site's shared ticket keys. Bounded in entries and age;
 * the oldest entry goes first.
 */

export const MAX_SESSIONS = 10_000;
/** How long a session may be resumed; OpenSSL's default session timeout is the same 300 s. */
export const SESSION_TTL_MS = 300_000;

interface Entry {
  readonly data: Buffer;
  readonly storedAt: number;
}

export class SessionStore {
  /** Insertion order is age order: a Map iterates oldest first. */
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly maxEntries = MAX_SESSIONS,
    private readonly ttlMs = SESSION_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  save(id: Buffer, data: Buffer): void {
    const key = id.toString('hex');
    this.entries.delete(key);
    this.entries.set(key, { data, storedAt: this.now() });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  /** The session stored under `id`, unless it is unknown or too old. */
  load(id: Buffer): Buffer | undefined {
    const key = id.toString('hex');
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.now() - entry.storedAt > this.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.data;
  }
}
