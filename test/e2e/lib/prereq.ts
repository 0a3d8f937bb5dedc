// What the e2e suites need: root (for network namespaces), iproute2, the
// three servers and the three clients. Outside CI a suite whose needs are not
// met is skipped with a printed reason; in CI (CI=true) it runs and fails
// loudly in its beforeAll, so a missing install step cannot pass as green.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CLIENT_BINARIES } from './clients.js';
import { REPO_ROOT, SERVER_BINARIES } from './servers.js';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
/** The gateway build under test; E2E_GATEWAY_CLI points at another build. */
export const GATEWAY_CLI = process.env.E2E_GATEWAY_CLI ?? join(REPO_ROOT, 'dist', 'cli.js');

export interface Prereq {
  ok: boolean;
  /** Everything missing, one item per line. */
  reason: string;
  /** True when the suite should be skipped (not ok, and not in CI). */
  skip: boolean;
}

export interface Needs {
  servers?: boolean;
  clients?: boolean;
  gateway?: boolean;
  /** Other commands the suite runs (nft, conntrack…). */
  tools?: readonly string[];
  /** The openssl CLI, for test certificates (FTPS suites). */
  tls?: boolean;
}

function onPath(cmd: string): boolean {
  if (cmd.includes('/')) return isExecutable(cmd);
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && isExecutable(join(dir, cmd)));
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** vsftpd enters the home of its anonymous user (`ftp`) before anon_root. */
function ftpUserHasHome(): boolean {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('ftp:'));
    const home = line?.split(':')[5];
    return home !== undefined && home !== '' && existsSync(home);
  } catch {
    return false;
  }
}

export function checkPrereq(needs: Needs = {}): Prereq {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push(`Linux network namespaces (platform is ${process.platform})`);
  if (process.getuid?.() !== 0) missing.push('root (network namespaces need it)');
  for (const cmd of ['ip', 'sysctl']) if (!onPath(cmd)) missing.push(`${cmd} on PATH (apt-get install iproute2 procps)`);
  if (needs.servers !== false) {
    for (const [kind, bin] of Object.entries(SERVER_BINARIES)) {
      if (!isExecutable(bin)) missing.push(`${kind} at ${bin} (run: sudo bash .ci/install-e2e.sh)`);
    }
  }
  if (needs.servers !== false && !ftpUserHasHome()) {
    missing.push("vsftpd's anonymous user `ftp` with an existing home (run: sudo bash .ci/install-e2e.sh)");
  }
  if (needs.clients !== false) {
    for (const [kind, bin] of Object.entries(CLIENT_BINARIES)) {
      if (!onPath(bin)) missing.push(`${kind} client ${bin} (run: sudo bash .ci/install-e2e.sh)`);
    }
  }
  for (const tool of needs.tools ?? []) {
    if (!onPath(tool)) missing.push(`${tool} on PATH (run: sudo bash .ci/install-e2e.sh)`);
  }
  if (needs.tls === true && !onPath('openssl')) missing.push('openssl on PATH (run: sudo bash .ci/install-e2e.sh)');
  if (needs.gateway === true && !existsSync(GATEWAY_CLI)) {
    missing.push(`the gateway at ${GATEWAY_CLI} (run: npm run build)`);
  }
  const ok = missing.length === 0;
  return { ok, reason: missing.join('\n'), skip: !ok && !IN_CI };
}

/**
 * Checks the needs of one suite. Prints why it is skipped outside CI; in CI
 * returns a failing prereq so the suite's beforeAll throws.
 */
export function suitePrereq(suite: string, needs: Needs = {}): Prereq {
  const p = checkPrereq(needs);
  if (p.skip) console.warn(`[e2e] skipping ${suite}; missing:\n  ${p.reason.split('\n').join('\n  ')}`);
  return p;
}

/** Call first in beforeAll: throws in CI when something is missing. */
export function assertPrereq(p: Prereq): void {
  if (!p.ok) throw new Error(`e2e prerequisites missing (CI=${process.env.CI ?? ''}):\n${p.reason}`);
}
