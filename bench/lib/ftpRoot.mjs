// The files of the bench's FTP transfers: a scratch directory in /dev/shm
// (so the disk is never what is measured), the FTP root vsftpd serves (pub/
// readable, upload/ writable by its anonymous user), files of the repeated
// PATTERN, and the sha256 of what arrived.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PATTERN } from './fastio.mjs';

const NOBODY = 65534;

/** A fresh scratch directory in /dev/shm, readable by vsftpd's unprivileged processes. */
export async function scratchDir(prefix) {
  const dir = await mkdtemp(join('/dev/shm', prefix));
  await chmod(dir, 0o755);
  return dir;
}

/** `dir`/root with pub/ and a world-writable upload/ (anonymous uploads land as nobody); returns the root. */
export async function ftpRoot(dir) {
  const root = join(dir, 'root');
  await mkdir(join(root, 'pub'), { recursive: true, mode: 0o755 });
  await chmod(root, 0o755);
  await mkdir(join(root, 'upload'));
  await chown(join(root, 'upload'), NOBODY, NOBODY);
  await chmod(join(root, 'upload'), 0o777);
  return root;
}

/** Writes `bytes` bytes of the repeated PATTERN (its sha256 is patternHash(bytes)), readable by all. */
export async function writePatternFile(file, bytes) {
  await writeFile(file, '');
  for (let left = bytes; left > 0; left -= PATTERN.length) await writeFile(file, left >= PATTERN.length ? PATTERN : PATTERN.subarray(0, left), { flag: 'a' });
  await chmod(file, 0o644);
}

export async function sha256File(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}
