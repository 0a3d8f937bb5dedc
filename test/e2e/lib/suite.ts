/**
 * The environment an e2e suite runs in, set up in its beforeAll and torn
 * down in its afterAll: a scratch directory, the FTP root, the three-
 * namespace topology and (for suites through the gateway) the gateway.
 * The teardown ends with no namespace of the suite left behind.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { createRoot, type Root } from './fixtures.js';
import { type RunningGateway } from './gateway.js';
import { assertPrereq, type Prereq } from './prereq.js';
import { createTopology, type Layout, listNamespaces, type Topology } from './topology.js';

export interface E2eSuiteOptions {
  readonly prereq: Prereq;
  /** The scratch directory's prefix under the system's temporary directory. */
  readonly workPrefix: string;
  readonly hookTimeoutMs: number;
  /** Which way the namespaces face (default: reverse, the server behind the edge). */
  readonly layout?: Layout;
  /** Starts the suite's gateway once the topology stands; none if absent. */
  readonly startGateway?: (topo: Topology) => Promise<RunningGateway>;
  /** Called in the afterAll once the gateway has stopped, before anything else goes (a matrix to print). */
  readonly report?: (gateway: RunningGateway | undefined) => void;
}

export interface E2eSuite {
  /** The topology (throws before beforeAll). */
  t(): Topology;
  /** The FTP root, once made. */
  readonly root: Root | undefined;
  /** The scratch directory ('' before beforeAll). */
  readonly work: string;
  /** The gateway's pid, state and last `lastLines` lines of output, for a failure message. */
  gatewayLog(lastLines: number): string;
}

/** Registers the beforeAll and afterAll; call it inside the suite's describe. */
export function useE2eSuite(options: E2eSuiteOptions): E2eSuite {
  let topo: Topology | undefined;
  let root: Root | undefined;
  let gateway: RunningGateway | undefined;
  let work = '';

  beforeAll(async () => {
    assertPrereq(options.prereq);
    work = await mkdtemp(join(tmpdir(), options.workPrefix));
    root = await createRoot();
    topo = await createTopology(options.layout);
    if (options.startGateway !== undefined) gateway = await options.startGateway(topo);
  }, options.hookTimeoutMs);

  afterAll(async () => {
    await gateway?.stop();
    options.report?.(gateway);
    const names = topo === undefined ? [] : Object.values(topo.ns);
    await topo?.destroy();
    await root?.remove();
    if (work !== '') await rm(work, { recursive: true, force: true });
    expect((await listNamespaces()).filter((n) => names.includes(n))).toEqual([]);
  }, options.hookTimeoutMs);

  return {
    t() {
      if (topo === undefined) throw new Error('no topology');
      return topo;
    },
    get root() {
      return root;
    },
    get work() {
      return work;
    },
    gatewayLog(lastLines) {
      if (gateway === undefined) return '(no gateway)';
      const state = gateway.alive() ? 'running' : `exited ${JSON.stringify(gateway.exit())}`;
      return `--- gateway (pid ${gateway.pid}, ${state}), last lines:\n${gateway.output().split('\n').slice(-lastLines).join('\n')}`;
    },
  };
}
