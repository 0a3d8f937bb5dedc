/**
 * A raw FTP control client for tests: write exact bytes, read whole replies
 * (multi-line included), and see every byte the gateway sent.
 */
import net, { type Socket } from 'node:net';
import { once } from 'node:events';
import { expect } from 'vitest';

export interface Reply {
  readonly code: number;
  /** Every line of the reply, without terminators. */
  readonly lines: readonly string[];
  /** The last line. */
  readonly text: string;
  /** The reply's bytes exactly as received. */
  readonly raw: Buffer;
}

export class ControlClient {
  private unread = Buffer.alloc(0);
  private readonly all: Buffer[] = [];
  private ended = false;
  private waiters: (() => void)[] = [];
  /** Resolves when the peer has closed the connection (FIN or reset). */
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.all.push(chunk);
      this.unread = Buffer.concat([this.unread, chunk]);
      this.wake();
    });
    socket.on('error', () => undefined); // a reset shows as 'close'
    this.closed = new Promise((resolve) => {
      const done = () => {
        this.ended = true;
        this.wake();
        resolve();
      };
      socket.once('end', done);
      socket.once('close', done);
    });
  }

  static async connect(port: number, options: { host?: string; localAddress?: string } = {}): Promise<ControlClient> {
    const socket = net.connect({ host: options.host ?? '127.0.0.1', port, localAddress: options.localAddress });
    await once(socket, 'connect');
    return new ControlClient(socket);
  }

  /** Connect and read the greeting (expects 220). */
  static async greeted(port: number): Promise<ControlClient> {
    const client = await ControlClient.connect(port);
    const greeting = await client.reply();
    if (greeting.code !== 220) throw new Error(`expected 220, got ${greeting.text}`);
    return client;
  }

  /** Every byte received so far. */
  received(): Buffer {
    return Buffer.concat(this.all);
  }

  write(bytes: string | Buffer): Promise<void> {
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Send `line` + CRLF and read the reply. */
  async command(line: string): Promise<Reply> {
    await this.write(`${line}\r\n`);
    return this.reply();
  }

  /** The next whole reply (a 1xx preliminary reply counts as one). */
  async reply(): Promise<Reply> {
    for (;;) {
      const reply = this.takeReply();
      if (reply !== undefined) return reply;
      if (this.ended) throw new Error(`connection closed before a whole reply; unread: ${JSON.stringify(this.unread.toString('latin1'))}`);
      await this.next();
    }
  }

  /** Exactly `n` bytes, whatever they are. */
  async readBytes(n: number): Promise<Buffer> {
    while (this.unread.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.unread.length} of ${n} bytes`);
      await this.next();
    }
    const out = this.unread.subarray(0, n);
    this.unread = this.unread.subarray(n);
    return Buffer.from(out);
  }

  /** USER anonymous (and PASS if asked): the ftp-srv test upstream logs in anyone. */
  async login(): Promise<void> {
    let reply = await this.command('USER anonymous');
    if (reply.code === 331) reply = await this.command('PASS test@example.org');
    if (reply.code !== 230) throw new Error(`login failed: ${reply.text}`);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private next(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private takeReply(): Reply | undefined {
    const lines: string[] = [];
    let offset = 0;
    let code = 0;
    for (;;) {
      const lf = this.unread.indexOf(0x0a, offset);
      if (lf === -1) return undefined;
      const line = this.unread.subarray(offset, lf + 1).toString('latin1').replace(/\r?\n$/, '');
      offset = lf + 1;
      lines.push(line);
      if (lines.length === 1) {
        code = Number(line.slice(0, 3));
        if (line.charAt(3) !== '-') break;
      } else if (line.startsWith(`${code} `)) {
        break;
      }
    }
    const raw = Buffer.from(this.unread.subarray(0, offset));
    this.unread = this.unread.subarray(offset);
    return { code, lines, text: lines[lines.length - 1] ?? '', raw };
  }
}

/** Connect to `port`, expect the 220 and log in; the client joins `clients`, for the suite to destroy after each test. */
export async function loggedInClient(port: number, clients: ControlClient[]): Promise<ControlClient> {
  const client = await ControlClient.connect(port);
  clients.push(client);
  expect((await client.reply()).code).toBe(220);
  await client.login();
  return client;
}

/** Open a data connection and collect everything until the peer's FIN. */
export async function readDataConnection(port: number, options: { host?: string; localAddress?: string } = {}): Promise<Buffer> {
  const socket = net.connect({ host: options.host ?? '127.0.0.1', port, localAddress: options.localAddress });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'end');
  socket.destroy();
  return Buffer.concat(chunks);
}
