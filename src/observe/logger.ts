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
