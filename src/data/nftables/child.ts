/** The helper processes of the kernel plane (nft, conntrack): read by lines, ended within a bound, or run to their end. */
import { execFile, type ChildProcess } from 'node:child_process';
import { KernelPlaneError } from '../../common/errors.js';
import type { Readable } from 'node:stream';

const EXIT_WAIT_MS = 2_000;
const TOOL_TIMEOUT_MS = 10_000;

/** Each line of a child's output, without its LF (or CRLF). */
export function onLines(stream: Readable | null, handle: (line: string) => void): void {
  if (stream === null) return;
  // Not node:readline: conntrack -E writes a line per event of the namespace, and readline's own
  // machinery cost as much as the rest of the event path (profiled).
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() as string;
    for (const line of lines) handle(line.endsWith('\r') ? line.slice(0, -1) : line);
  });
  stream.on('end', () => {
    if (rest !== '') handle(rest);
    rest = '';
  });
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

/** Run a tool to its end (bounded); its stdout, or a KernelPlaneError naming `op` with its stderr. */
export function runTool(cmd: string, args: readonly string[], stdin: string | undefined, op: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, [...args], { timeout: TOOL_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err === null) resolve(stdout);
      else reject(new KernelPlaneError(op, `${cmd}: ${stderr.trim() || err.message}`));
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}
