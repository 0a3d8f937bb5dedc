/**
 * The replies a session owes its client, in the order the client asked.
 *
 * FTP answers commands in order, so each command the client sends gets an
 * entry, whoever answers it: the upstream (`upstream`), the gateway after
 * something completes (`waiting`: a pinhole opening, a TLS handshake), or
 * the gateway at once (`done`). What an entry has to say is written to the
 * client only when every earlier entry is complete; the one way to the
 * client is `deliver`, so an error path can never answer out of turn.
 */
import type { Action, FinalReply } from './types.js';

/** What to do with the upstream's final reply to an entry's command. */
export type ReplyHandler = (entry: Entry, reply: FinalReply) => void;

/** Reply lines held for one collecting entry at most; more are dropped and counted. */
export const MAX_COLLECTED_LINES = 256;

export interface Entry {
  readonly verb: string;
  state: 'upstream' | 'waiting' | 'done';
  /** Client-side actions ready to go, in order, once this entry is at the head. */
  readonly out: Action[];
  handler: ReplyHandler | undefined;
  /** Lines of a multi-line reply held for the handler instead of passed on. */
  collected: Buffer[] | undefined;
  dropped: number;
  /** The gateway's own command upstream (AUTH, PBSZ, PROT): nothing of its reply reaches the client. */
  readonly internal: boolean;
}

export interface EntryOptions {
  readonly state?: Entry['state'];
  readonly handler?: ReplyHandler;
  readonly collect?: boolean;
  readonly internal?: boolean;
}

export class ReplyFifo {
  private readonly entries: Entry[] = [];

  constructor(private readonly emit: (action: Action) => void) {}

  get length(): number {
    return this.entries.length;
  }

  push(verb: string, options: EntryOptions = {}): Entry {
    const entry: Entry = {
      verb,
      state: options.state ?? 'upstream',
      out: [],
      handler: options.handler,
      collected: options.collect === true ? [] : undefined,
      dropped: 0,
      internal: options.internal === true,
    };
    this.entries.push(entry);
    return entry;
  }

  /** A reply of the gateway's own, in its turn. */
  local(verb: string, line: Buffer): Entry {
    const entry = this.push(verb, { state: 'waiting' });
    this.deliver(entry, line);
    this.complete(entry);
    return entry;
  }

  /** The entry the upstream's next reply line belongs to: the oldest still waiting for the upstream. */
  answering(): Entry | undefined {
    return this.entries.find((e) => e.state === 'upstream');
  }

  /** Say something to the client for `entry`: now if it is the head, else when its turn comes. */
  deliver(entry: Entry, what: Buffer | Action): void {
    if (entry.internal) return;
    entry.out.push(Buffer.isBuffer(what) ? { type: 'toClient', line: what } : what);
    this.flush();
  }

  /** Hold a reply line for the entry's handler; false when the entry does not collect. */
  collect(entry: Entry, line: Buffer): boolean {
    if (entry.collected === undefined) return false;
    if (entry.collected.length < MAX_COLLECTED_LINES) entry.collected.push(line);
    else entry.dropped++;
    return true;
  }

  complete(entry: Entry): void {
    entry.state = 'done';
    this.flush();
  }

  /** Some entry for one of `verbs` still waits for the upstream's final reply (after any 1xx). */
  awaits(verbs: ReadonlySet<string>): boolean {
    return this.entries.some((e) => e.state === 'upstream' && verbs.has(e.verb));
  }

  /** Everything owed is said: no entry left. */
  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** Drop every entry (the session ends). */
  clear(): void {
    this.entries.length = 0;
  }

  private flush(): void {
    while (this.entries.length > 0) {
      const head = this.entries[0] as Entry;
      for (const action of head.out.splice(0)) this.emit(action);
      if (head.state !== 'done') return;
      this.entries.shift();
    }
  }
}
