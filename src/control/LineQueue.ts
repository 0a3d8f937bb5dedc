/**
 * Lines of one direction of a control connection, handled strictly in
 * order. A handler that returns a promise holds the queue, and pauses the
 * socket the lines come from, until it settles: the next command is not
 * read while a data connection is being set up.
 */
import type { Socket } from 'node:net';

export type LineHandler = (line: Buffer) => void | Promise<void>;

export class LineQueue {
  private readonly lines: Buffer[] = [];
  private busy = false;
  private stopped = false;

  constructor(
    private readonly source: Socket,
    private readonly handle: LineHandler,
    private readonly fail: (err: unknown) => void,
  ) {}

  push(line: Buffer): void {
    if (this.stopped) return; // a closing session discards what is still coming
    this.lines.push(line);
    if (!this.busy) this.run();
  }

  stop(): void {
    this.stopped = true;
    this.lines.length = 0;
  }

  private run(): void {
    while (!this.stopped && !this.busy) {
      const line = this.lines.shift();
      if (line === undefined) return;
      let result: void | Promise<void>;
      try {
        result = this.handle(line);
      } catch (err) {
        this.fail(err);
        return;
      }
      if (result instanceof Promise) this.hold(result);
    }
  }

  private hold(work: Promise<void>): void {
    this.busy = true;
    this.source.pause();
    work.then(
      () => {
        this.busy = false;
        if (this.stopped) return;
        this.source.resume();
        this.run();
      },
      (err: unknown) => this.fail(err),
    );
  }
}
