/**
 * Reload of a changed site keeps what live sessions hold (issue 11, defect
 * 4): a port held by an old session's pinhole is not free in the new site's
 * pool (no EADDRINUSE, no port counted free twice), and per-client limits
 * go on counting the old sessions.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/index.js';
import { ControlClient } from '../../support/control.js';
import { SITE, startGateway, type TestGateway } from '../../support/gateway.js';
import { portRanges } from '../../support/ports.js';
import { type ScriptedUpstream, startScriptedUpstream } from '../../support/scripted.js';

type Range = { min: number; max: number };
const [one] = portRanges(1, 4) as [Range];
const passivePorts = { min: one.min, max: one.min }; // a single port
const activePorts = { min: one.min + 1, max: one.min + 2 };

let gw: TestGateway | undefined;
let upstream: ScriptedUpstream | undefined;
const clients: ControlClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  await gw?.close();
  await upstream?.close();
  gw = undefined;
  upstream = undefined;
});

function siteConfig(greetingMs: number) {
  const u = upstream as ScriptedUpstream;
  return {
    name: SITE,
    listen: { host: '127.0.0.1', port: (gw as TestGateway | undefined)?.port ?? 0 },
    upstream: { host: u.host, port: u.port },
    passivePorts,
    activePorts,
    timeouts: { greetingMs },
    limits: { maxSessionsPerClient: 1 },
  };
}

async function freePassive(): Promise<number> {
  const metric = (gw as TestGateway).gateway.metrics.registry.getSingleMetric('ftp_alg_ports_free');
  const values = (await metric?.get())?.values ?? [];
  return values.filter((v) => v.labels.dir === 'passive').reduce((n, v) => n + v.value, 0);
}

describe('reload of a changed site under a live session (issue 11, defect 4)', () => {
  it('the port an old pinhole holds stays taken, and the per-client limit still counts the old session', async () => {
    upstream = await startScriptedUpstream({ respond: (line) => (line.startsWith('PASV') ? '227 Entering Passive Mode (127,0,0,1,200,10).\r\n' : '200 OK\r\n') });
    gw = await startGateway(siteConfig(10_000));
    const old = await ControlClient.greeted(gw.port);
    clients.push(old);
    expect((await old.command('PASV')).code).toBe(227); // holds the only passive port
    expect(await freePassive()).toBe(0);

    await gw.gateway.reload(parseConfig({ log: { level: 'silent' }, sites: [siteConfig(9_000)] }));

    expect(await freePassive()).toBe(0); // still held by the old session's pinhole
    expect(gw.gateway.stats().sites[SITE]?.passiveFree).toBe(0);
    const refused = await ControlClient.connect(gw.port);
    clients.push(refused);
    expect((await refused.reply()).code).toBe(421); // maxSessionsPerClient 1: the old session counts

    old.destroy();
    await expect.poll(() => freePassive()).toBe(1);
    await expect.poll(() => gw?.gateway.stats().sessions).toBe(0);
    const fresh = await ControlClient.greeted(gw.port);
    clients.push(fresh);
    expect((await fresh.command('PASV')).code).toBe(227);
  });
});
