/**
 * Passive transfers driven by hand over a raw control connection, paced by
 * the client: a download that stops reading after its first bytes, an
 * upload that stops writing half-way, each finished when the test says. So
 * a reload or a drain can be made to happen while a transfer is in flight.
 * Data connections go to 127.0.0.1 and the 227's port: the 227's address
 * may be a configured external address that is not local.
 */
import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import { type ControlClient, type Reply } from './control.js';
import { parse227 } from './hostPort.js';

export interface Passive {
  /** The 227 line exactly as the gateway wrote it. */
  readonly line: string;
  readonly address: string;
  readonly port: number;
}

export async function pasv(control: ControlClient): Promise<Passive> {
  const reply = await control.command('PASV');
  if (reply.code !== 227) throw new Error(`expected 227, got ${reply.text}`);
  const { address, port } = parse227(reply.text);
  return { line: reply.raw.toString('latin1'), address, port };
}

async function dataConnection(port: number): Promise<Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

async function expectPreliminary(control: ControlClient, verb: string): Promise<void> {
  const reply = await control.reply();
  if (reply.code !== 150 && reply.code !== 125) throw new Error(`${verb}: expected 150, got ${reply.text}`);
}

export interface PacedDownload {
  readonly passive: Passive;
  /** Resolves with the bytes received when reading paused (at least `pauseAt`). */
  readonly paused: Promise<number>;
  /** Read on to the FIN; resolves with every byte and the final reply (226). */
  finish(): Promise<{ data: Buffer; reply: Reply }>;
  readonly socket: Socket;
}

/** PASV, RETR `path`, and stop reading once `pauseAt` bytes have arrived. */
export async function pacedDownload(control: ControlClient, path: string, pauseAt: number): Promise<PacedDownload> {
  const passive = await pasv(control);
  const socket = await dataConnection(passive.port);
  const chunks: Buffer[] = [];
  let length = 0;
  let onPause: (n: number) => void = () => undefined;
  const paused = new Promise<number>((resolve) => {
    onPause = resolve;
  });
  let pausedOnce = false;
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    length += chunk.length;
    if (!pausedOnce && length >= pauseAt) {
      pausedOnce = true;
      socket.pause();
      onPause(length);
    }
  });
  const ended = new Promise<void>((resolve, reject) => {
    socket.once('end', () => resolve());
    socket.once('error', reject);
  });
  // A test that cuts the transfer never calls finish(): its reset must not be an unhandled rejection.
  ended.catch(() => undefined);
  await control.write(`RETR ${path}\r\n`);
  await expectPreliminary(control, 'RETR');
  return {
    passive,
    paused,
    socket,
    async finish() {
      socket.resume();
      await ended;
      socket.end();
      const reply = await control.reply();
      return { data: Buffer.concat(chunks), reply };
    },
  };
}

export interface PacedUpload {
  readonly passive: Passive;
  /** Write the rest, send the FIN, and resolve with the final reply (226). */
  finish(): Promise<Reply>;
}

/** PASV, STOR `path`, and write the first `firstPart` bytes of `data`. */
export async function pacedUpload(control: ControlClient, path: string, data: Buffer, firstPart: number): Promise<PacedUpload> {
  const passive = await pasv(control);
  const socket = await dataConnection(passive.port);
  socket.on('error', () => undefined);
  socket.resume(); // nothing comes back on an upload's data connection
  await control.write(`STOR ${path}\r\n`);
  await expectPreliminary(control, 'STOR');
  await write(socket, data.subarray(0, firstPart));
  return {
    passive,
    async finish() {
      await write(socket, data.subarray(firstPart));
      socket.end();
      return control.reply();
    },
  };
}

function write(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(bytes, (err) => (err ? reject(err) : resolve())));
}

/** A whole passive download: PASV, RETR, every byte, the final reply. */
export async function download(control: ControlClient, path: string): Promise<{ passive: Passive; data: Buffer; reply: Reply }> {
  const d = await pacedDownload(control, path, Number.MAX_SAFE_INTEGER);
  const { data, reply } = await d.finish();
  return { passive: d.passive, data, reply };
}
