// Keeps the benchmark suite from rotting: its smoke mode (tiny sizes, a few
// seconds, but real namespaces, vsftpd, haproxy, nftables and the gateway)
// must run to the end and print its result table. The full bench is never a
// test (npm run bench). Outside CI, without root it is skipped with a reason;
// in CI it always runs, so a missing prerequisite fails loudly.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const SMOKE_TIMEOUT_MS = 240_000;

function skipReason(): string | undefined {
  if (IN_CI) return undefined;
  if (process.platform !== 'linux') return `network namespaces need Linux (platform is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  if (!existsSync(join(REPO, 'dist/cli.js'))) return 'the gateway is not built (npm run build)';
  return undefined;
}

const reason = skipReason();
if (reason !== undefined) console.warn(`[bench-smoke] skipped: ${reason}`);

describe.skipIf(reason !== undefined)('bench smoke run', () => {
  it(
    'runs every figure against every edge variant and prints the result table',
    async () => {
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
        execFile(
          process.execPath,
          [join(REPO, 'bench/run.mjs'), '--smoke', '--max-minutes', '3'],
          { cwd: REPO, timeout: SMOKE_TIMEOUT_MS - 10_000, killSignal: 'SIGTERM', maxBuffer: 16 * 1024 * 1024 },
          (err, out, errOut) => done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout: out, stderr: errOut }),
        );
      });
      expect(code, `bench --smoke failed:\n${stderr.slice(-4000)}`).toBe(0);
      expect(stdout).toMatch(/^\| figure \| unit \| none \| kernel \| haproxy \| ftp-alg \|/m);
      expect(stdout, 'the kernel data plane variant has its own columns').toMatch(/\| ftp-alg-nft \| ftp-alg-nft\/kernel \|/);
      for (const figure of ['raw relay, 1 flow download', 'curl download', 'sessions/s, sequential', 'control RTT (NOOP), median', 'RSS per idle session', 'curl FTPS download']) {
        expect(stdout, `no row "${figure}" in:\n${stdout}`).toContain(`| ${figure}`);
      }
    },
    SMOKE_TIMEOUT_MS,
  );
});
