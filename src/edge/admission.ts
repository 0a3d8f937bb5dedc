/**
 * Accept fairness (issue 13, item 4). A listener hands every connection it
 * accepts to its site's queue; the admission work (limits, eviction, a new
 * Session, its upstream connect, a log line) is then done a few at a time,
 * at most PER_TURN connections per event-loop turn over all sites, taking
 * the sites in turn. Between two batches the loop serves other I/O, so a
 * flood of connections on one site delays neither another site's sessions
 * nor the health endpoint by more than one batch. A site's queue is bounded
 * (Site refuses the connection beyond it), so memory is too.
 */

/** What the scheduler needs of a site. */
export interface AdmissionQueue {
  /** Admit the oldest waiting connection; false when none waits. */
  admitNext(): boolean;
}

/** Connections admitted per event-loop turn, all sites together. */
const PER_TURN = 16;

export class Admissions {
  /** Sites with connections waiting, in turn order. */
  private readonly waiting = new Set<AdmissionQueue>();
  private scheduled = false;

  /** `site` has a connection waiting. */
  wake(site: AdmissionQueue): void {
    this.waiting.add(site);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    let budget = PER_TURN;
    while (budget > 0 && this.waiting.size > 0) {
      for (const site of this.waiting) {
        // A site served goes to the back of the line; one with nothing left leaves it.
        this.waiting.delete(site);
        if (!site.admitNext()) continue;
        this.waiting.add(site);
        if (--budget === 0) break;
      }
    }
    if (this.waiting.size > 0) this.schedule();
  };
}

/** A FIFO of accepted connections waiting for admission (amortised O(1) both ends). */
export class Arrivals<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Every item still waiting, oldest first; the queue is left empty. */
  drain(): T[] {
    const rest = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return rest;
  }
}
