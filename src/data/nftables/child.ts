/** The two helper processes of the kernel plane (nft, conntrack): read by lines, ended within a bound. */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

const EXIT_WAIT_MS = 2_000;

export function onLines(stream: Readable | null, handle: (line: string) => void): void {
  if (stream !== null) createInterface({ input: stream, crlfDelay: Infinity }).on('line', handle);
}

/** Ask the child to go (`ask`), then SIGKILL it by pid after a bound; resolves once it has exited. */
export async function endChild(child: ChildProcess, ask: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  ask();
  const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_WAIT_MS);
  await exited;
  clearTimeout(timer);
}
