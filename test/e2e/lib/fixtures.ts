// Files of known content served from /pub of every root directory.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256 } from './clients.js';
import { PUB_DIR, UPLOAD_DIR, prepareRoot } from './servers.js';

export const FILES = {
  'empty.bin': Buffer.alloc(0),
  '1k.bin': randomBytes(1024),
  '8m.bin': randomBytes(8 * 1024 * 1024),
} as const;
export type FileName = keyof typeof FILES;

export const remotePath = (name: FileName): string => `/${PUB_DIR}/${name}`;
export const uploadPath = (name: string): string => `/${UPLOAD_DIR}/${name}`;
export const expectedSha = (name: FileName): string => sha256(FILES[name]);

export interface Root {
  dir: string;
  /** Where an upload named `name` lands on the server's disk. */
  uploaded(name: string): string;
  remove(): Promise<void>;
}

export async function createRoot(): Promise<Root> {
  const dir = await prepareRoot(FILES);
  return {
    dir,
    uploaded: (name) => join(dir, UPLOAD_DIR, name),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
