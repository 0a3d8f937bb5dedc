/**
 * One health probe over a socket: connect, then the ProbeDialog's polite
 * FTP conversation (greeting, optional login and NOOP, QUIT, 221), then
 * close. One deadline bounds the whole probe; the result names the stage
 * that failed, in the same words a session uses for its attempts.
 */
import net, { type Socket } from 'node:net';
import { formatProxyHeader } from '../../common/proxyProtocol.js';
import { LineSplitter } from '../../ftp/lineSplitter.js';
import { ReplyReader } from '../../ftp/reply.js';
import type { UpstreamOutcome } from '../../control/Session.js';
import { type DialogFailure, ProbeDialog, type ProbeLogin } from './probeDialog.js';

export interface ProbeTarget {
  readonly host: string;
  readonly port: number;
  readonly login: ProbeLogin | undefined;
  readonly timeoutMs: number;
  /** The upstream reads a PROXY protocol header first (upstream.proxyProtocol): a LOCAL one is sent (the gateway's own check). */
  readonly proxyHeader?: 1 | 2;
}

export type ProbeFailure = Exclude<UpstreamOutcome, 'ok'> | DialogFailure | 'reply-timeout' | 'closed-early' | 'malformed-reply';

export type ProbeResult = { readonly ok: true; readonly ms: number } | { readonly ok: false; readonly reason: ProbeFailure; readonly ms: number };

const MAX_REPLY_LINE_BYTES = 2_048;
const CLOSE_GRACE_MS = 1_000;

export function probeOnce(target: ProbeTarget): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const began = performance.now();
    const dialog = new ProbeDialog(target.login);
    const replies = new ReplyReader();
    const socket = net.connect({ host: target.host, port: target.port });
    let connected = false;
    let over = false;
    const finish = (verdict: 'ok' | ProbeFailure): void => {
      if (over) return;
      over = true;
      clearTimeout(deadline);
      closeSoon(socket);
      const ms = performance.now() - began;
      resolve(verdict === 'ok' ? { ok: true, ms } : { ok: false, reason: verdict, ms });
    };
    const deadline = setTimeout(() => finish(stalled(connected, dialog)), target.timeoutMs);
    deadline.unref();
    const splitter = new LineSplitter(MAX_REPLY_LINE_BYTES, {
      line: (raw) => {
        const line = replies.read(raw);
        if (line.kind === 'malformed') return finish('malformed-reply');
        if (line.kind === 'part') return;
        const step = dialog.onReply(line.code);
        if (step === undefined) return;
        if ('verdict' in step) return finish(step.verdict);
        socket.write(step.send);
      },
      fault: () => finish('malformed-reply'),
    });
    socket.setNoDelay(true);
    socket.once('connect', () => {
      connected = true;
      if (target.proxyHeader !== undefined) socket.write(formatProxyHeader({ version: target.proxyHeader, command: 'local', addresses: undefined, tlvs: [] }));
    });
    socket.on('data', (chunk: Buffer) => {
      if (!over) splitter.push(chunk);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => finish(connected ? closedAt(dialog) : connectFailure(err)));
    socket.on('close', () => finish(closedAt(dialog)));
  });
}

function connectFailure(err: NodeJS.ErrnoException): ProbeFailure {
  return err.code === 'ETIMEDOUT' ? 'connect-timeout' : 'connect-refused';
}

function stalled(connected: boolean, dialog: ProbeDialog): ProbeFailure {
  if (!connected) return 'connect-timeout';
  return dialog.waitingFor === 'greeting' ? 'greeting-timeout' : 'reply-timeout';
}

function closedAt(dialog: ProbeDialog): ProbeFailure {
  return dialog.waitingFor === 'greeting' ? 'reset-before-greeting' : 'closed-early';
}

/** FIN after the dialog (the server closes first after 221 anyway); destroy if it lingers. */
function closeSoon(socket: Socket): void {
  if (socket.destroyed) return;
  if (!socket.writable || socket.connecting) {
    socket.destroy();
    return;
  }
  socket.end();
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
