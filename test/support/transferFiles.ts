/**
 * The files the transfer tests move through the gateway: empty, 1 KiB and
 * 8 MiB of random bytes (made once per test file), byte-exact by sha256.
 */
import { randomBytes } from 'node:crypto';

export const FILES = {
  'empty.bin': randomBytes(0),
  'one-kib.bin': randomBytes(1024),
  'eight-mib.bin': randomBytes(8 * 1024 * 1024),
} as const;
export type FileName = keyof typeof FILES;
export const NAMES = Object.keys(FILES) as FileName[];
