/**
 * basic-ftp through the gateway, forced into PASV (227) or EPSV (229), with
 * every passive reply it acted on recorded, so a test can check the
 * address and port the gateway wrote, not only that bytes arrived.
 */
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { Client, enterPassiveModeIPv4, enterPassiveModeIPv6, type FTPContext, type FTPResponse } from 'basic-ftp';

export type PassiveMode = 'PASV' | 'EPSV';

export interface RecordingClient {
  readonly client: Client;
  /** The 227/229 replies the client used for its data connections, in order. */
  readonly passiveReplies: string[];
  download(path: string): Promise<Buffer>;
  upload(data: Buffer, path: string): Promise<FTPResponse>;
  close(): void;
}

const CLIENT_TIMEOUT_MS = 10_000;

export async function connectClient(port: number, mode: PassiveMode): Promise<RecordingClient> {
  const client = new Client(CLIENT_TIMEOUT_MS);
  const passiveReplies: string[] = [];
  // enterPassiveModeIPv4 honours the 227 address here (loopback is "private" on both ends in
  // basic-ftp's check), so a wrong address in the gateway's 227 would fail the transfer.
  const enter = mode === 'PASV' ? enterPassiveModeIPv4 : enterPassiveModeIPv6;
  client.prepareTransfer = async (ftp: FTPContext): Promise<FTPResponse> => {
    const res = await enter(ftp);
    passiveReplies.push(res.message);
    return res;
  };
  await client.access({ host: '127.0.0.1', port, user: 'anonymous', password: 'test@example.org' });
  return {
    client,
    passiveReplies,
    download: (path) => downloadToBuffer(client, path),
    upload(data, path) {
      return client.uploadFrom(Readable.from([data]), path);
    },
    close: () => client.close(),
  };
}

/** Download `path` with a basic-ftp client into memory. */
export async function downloadToBuffer(client: Client, path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  await client.downloadTo(sink, path);
  return Buffer.concat(chunks);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
