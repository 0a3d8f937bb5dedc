/** The one `transfer done` line and its metrics, whichever plane carried the bytes. */
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

export interface TransferRecord {
  readonly site: string;
  readonly command: string;
  readonly up: number;
  readonly down: number;
  readonly startedAt: number;
  readonly reason: string;
}

export function logTransfer(log: Logger, metrics: Metrics, t: TransferRecord): void {
  const ms = Math.round(performance.now() - t.startedAt);
  const { site, up, down } = t;
  metrics.bytes.inc({ site, flow: 'upload' }, up);
  metrics.bytes.inc({ site, flow: 'download' }, down);
  metrics.transferSeconds.observe({ site }, ms / 1000);
  const bytes = up + down;
  const rate = ms > 0 ? Math.round((bytes * 1000) / ms) : bytes;
  log.info(
    {
      command: t.command || undefined,
      flow: up > down ? 'upload' : 'download',
      upBytes: up,
      downBytes: down,
      ms,
      bytesPerSec: rate,
      reason: t.reason,
    },
    'transfer done',
  );
}

/** A transfer whose data went straight between client and server (a transparent site's direct passive mode). */
export interface DirectTransferRecord {
  readonly site: string;
  readonly command: string;
  readonly startedAt: number;
  /** The server's final reply code to the transfer command (226, 426, ...). */
  readonly reply: number;
}

/**
 * Its `transfer done` line: the gateway never sees such a flow's bytes, so
 * the line has its command, its time (the command to the server's final
 * reply) and that reply, and no byte counts.
 */
export function logDirectTransfer(log: Logger, metrics: Metrics, t: DirectTransferRecord): void {
  const ms = Math.round(performance.now() - t.startedAt);
  metrics.transferSeconds.observe({ site: t.site }, ms / 1000);
  log.info({ command: t.command, flow: 'direct', ms, reply: t.reply }, 'transfer done');
}
