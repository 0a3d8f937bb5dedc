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
