/** The one root logger; sessions and pinholes take children of it. */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    redact: { paths: ['password', '*.password'], censor: '***' },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** A control line fit for a log: PASS masked, bytes past 200 cut, no CR/LF. */
export function loggableLine(text: string): string {
  const line = text.replace(/[\r\n]+$/, '');
  const masked = /^\s*pass(\s|$)/i.test(line) ? 'PASS ***' : line;
  return masked.length > 200 ? `${masked.slice(0, 200)}…` : masked;
}

/**
 * A child of `parent` whose bindings are known only later (a pinhole's port,
 * once open), made when a line is first written, not when the bindings are
 * known: pino's child() was on the PASV path of every pinhole, and most
 * pinholes write nothing below info.
 */
export class LazyChild {
  private bindings: Record<string, unknown> | undefined;
  private child: Logger | undefined;

  constructor(private readonly parent: Logger) {}

  /** From now on, lines carry `bindings`. */
  bind(bindings: Record<string, unknown>): void {
    this.bindings = bindings;
    this.child = undefined;
  }

  /** The child (made now if need be), or the parent before `bind`. */
  get log(): Logger {
    if (this.bindings === undefined) return this.parent;
    this.child ??= this.parent.child(this.bindings);
    return this.child;
  }

  /** The logger for a line at `level`: the child when the line is written; the parent, which writes nothing, when not. */
  at(level: 'debug' | 'info'): Logger {
    return this.parent.isLevelEnabled(level) ? this.log : this.parent;
  }
}
