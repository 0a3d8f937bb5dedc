// What the outbound suites (outbound*.e2e.test.ts) share: the edge's rules as
// `ftp-alg --nftables` prints them for the suite's config, and a client's
// request through a forward site (its proxy mode) or a transparent one (it
// dials the real server).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClientKind, ClientRequest, Mode, Target } from './clients.js';
import type { OutboundGatewayConfig } from './gateway.js';
import { GATEWAY_CLI } from './prereq.js';
import { run, type Topology } from './topology.js';

export type OutboundSite = 'forward' | 'transparent';

/** Generates the ruleset for `config` (in `work`) and loads it in the edge; returns its text. */
export async function loadGeneratedRules(t: Topology, work: string, config: OutboundGatewayConfig): Promise<string> {
  const file = join(work, 'gateway.json');
  await writeFile(file, JSON.stringify(config));
  const rules = await run(process.execPath, [GATEWAY_CLI, '--nftables', '--config', file]);
  if (rules.code !== 0) throw new Error(`--nftables failed: ${rules.stderr}`);
  const path = join(work, 'rules.nft');
  await writeFile(path, rules.stdout);
  const loaded = await t.exec('edge', 'nft', ['-f', path]);
  if (loaded.code !== 0) throw new Error(`nft -f failed: ${loaded.stderr}\n${rules.stdout}`);
  return rules.stdout;
}

/** One client run toward `target`: through the forward site at `proxy`, or dialling it (transparent). */
export function outboundRequest(
  site: OutboundSite,
  client: ClientKind,
  mode: Mode,
  target: Target,
  proxy: { host: string; port: number },
  rest: Pick<ClientRequest, 'op' | 'remote' | 'local'>,
): ClientRequest {
  return { client, mode, ...rest, target, proxy: site === 'forward' ? proxy : undefined };
}
