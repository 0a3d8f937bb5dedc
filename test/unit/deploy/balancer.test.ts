/**
 * The balancer generator (`--balancer nftables`): the control port spread over
 * every instance, each instance's passive slice (the one it serves, from the
 * same function the gateway uses) steered to it, DNAT only; refusals.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';
import { passiveSlice } from '../../../src/config/instance.js';
import { BalancerError, balancerRules, controlMapUpdate, controlSlots, slotTargets } from '../../../src/deploy/balancer.js';
import { probeUrls } from '../../../src/deploy/BalancerAgent.js';
import { balancerAgentSetup, deployCommand } from '../../../src/deploy/command.js';
import { nftablesRules } from '../../../src/deploy/nftables.js';
import { configWithSite } from '../../support/deployConfig.js';

const config = configWithSite({ passivePorts: { min: 50000, max: 50999 }, activePorts: { min: 51000, max: 51999 } });
const two = config({}, { instance: { index: 0, count: 2 } });
const INSTANCES = ['192.0.2.21', '192.0.2.22'];

/** The rule lines of the chain: no comments, blanks or chain header. */
function ruleLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('ip ') || l.startsWith('ip6 '))
    .map((l) => l.replace(/ comment "[^"]*"$/, ''));
}

const ROOT = new URL('../../../', import.meta.url);

describe('balancerRules', () => {
  it('deploy/balancer/balancer.nft equals what the generator prints for deploy/balancer/ftp-alg.json (deploy/README.md)', () => {
    const example = loadConfigFile(new URL('deploy/balancer/ftp-alg.json', ROOT).pathname);
    expect(readFileSync(new URL('deploy/balancer/balancer.nft', ROOT), 'utf8')).toBe(balancerRules(example, { instances: INSTANCES }));
  });

  it('spreads the control port and steers each passive slice to its owner', () => {
    expect(ruleLines(balancerRules(two, { instances: INSTANCES }))).toEqual([
      'ip daddr 203.0.113.1 tcp dport 21 dnat ip to jhash ip saddr . tcp sport mod 2 seed 0x66747061 map @control',
      'ip daddr 203.0.113.1 tcp dport 50000-50499 dnat ip to 192.0.2.21',
      'ip daddr 203.0.113.1 tcp dport 50500-50999 dnat ip to 192.0.2.22',
    ]);
  });

  it('declares the control map with every slot on its owner', () => {
    const text = balancerRules(two, { instances: INSTANCES });
    expect(text).toContain('\tmap control {\n\t\ttypeof numgen inc mod 2 : ip daddr\n\t\telements = { 0 : 192.0.2.21, 1 : 192.0.2.22 }\n\t}');
  });

  it('steers to each instance exactly the slice that instance serves', () => {
    const count = 3;
    const cfg = config({}, { instance: { index: 0, count } });
    const rules = ruleLines(balancerRules(cfg, { instances: ['192.0.2.21', '192.0.2.22', '192.0.2.23'] })).slice(1);
    rules.forEach((rule, index) => {
      const slice = passiveSlice(cfg.sites[0]?.passivePorts ?? { min: 0, max: 0 }, { index, count });
      expect(rule).toBe(`ip daddr 203.0.113.1 tcp dport ${slice.min}-${slice.max} dnat ip to 192.0.2.2${index + 1}`);
    });
  });

  it('uses --vip, and IPv6 instances in an ip6 rule', () => {
    const cfg = config({ externalAddress: ['203.0.113.1', '2001:db8::1'] }, { instance: { index: 0, count: 2 } });
    const lines = ruleLines(balancerRules(cfg, { instances: ['2001:db8:2::21', '2001:db8:2::22'] }));
    expect(lines[0]).toBe('ip6 daddr 2001:db8::1 tcp dport 21 dnat ip6 to jhash ip6 saddr . tcp sport mod 2 seed 0x66747061 map @control');
    expect(balancerRules(cfg, { instances: ['2001:db8:2::21', '2001:db8:2::22'] })).toContain('typeof numgen inc mod 2 : ip6 daddr');
    expect(ruleLines(balancerRules(two, { instances: INSTANCES, vip: '198.51.100.9' }))[0]).toMatch(/^ip daddr 198\.51\.100\.9 tcp dport 21 /);
  });

  it.each([
    ['a count that differs from instance.count', { instances: ['192.0.2.21'] }],
    ['no address', { instances: [] }],
    ['a name instead of an address', { instances: ['a.example', 'b.example'] }],
    ['mixed families', { instances: ['192.0.2.21', '2001:db8::22'] }],
    ['one address twice', { instances: ['192.0.2.21', '192.0.2.21'] }],
    ['a VIP of the other family', { instances: INSTANCES, vip: '2001:db8::1' }],
  ])('refuses %s', (_name, options) => {
    expect(() => balancerRules(two, options)).toThrow(BalancerError);
  });

  it('refuses a site without an external address of the family, unless --vip names one', () => {
    const auto = config({ externalAddress: 'auto' }, { instance: { index: 0, count: 2 } });
    expect(() => balancerRules(auto, { instances: INSTANCES })).toThrow(/give --vip/);
    expect(() => balancerRules(auto, { instances: INSTANCES, vip: '203.0.113.1' })).not.toThrow();
  });
});

describe('control slots', () => {
  const A = '192.0.2.21';
  const B = '192.0.2.22';
  const C = '192.0.2.23';
  it.each([
    [1, 1],
    [2, 2],
    [3, 6],
    [4, 12],
  ])('%i instances: %i slots (count-1 each)', (count, slots) => {
    expect(controlSlots(count)).toBe(slots);
  });

  it.each([
    ['all up: each slot on its owner', [A, B], [true, true], [A, B]],
    ['one of two down: the survivor takes every slot', [A, B], [false, true], [B, B]],
    ['the other one down', [A, B], [true, false], [A, A]],
    ['none up: every slot on its owner (nothing better to try)', [A, B], [false, false], [A, B]],
    ['one of three down: its two slots split over the other two', [A, B, C], [true, false, true], [A, A, C, A, C, C]],
    ['two of three down: the survivor takes all', [A, B, C], [false, true, false], [B, B, B, B, B, B]],
    ['one instance, down: stays on it', [A], [false], [A]],
  ])('%s', (_name, instances, up, targets) => {
    expect(slotTargets(instances, up)).toEqual(targets);
  });

  it('a map update is one nft transaction: flush, then every slot', () => {
    expect(controlMapUpdate([B, B])).toBe('flush map inet ftp_alg_balancer control\nadd element inet ftp_alg_balancer control { 0 : 192.0.2.22, 1 : 192.0.2.22 }\n');
  });
});

describe("the agent's probes", () => {
  it("ask /readyz on each instance's address at the metrics port", () => {
    expect(probeUrls(config({}, { instance: { index: 0, count: 2 }, metrics: { listen: '0.0.0.0:9464' } }), INSTANCES)).toEqual([
      'http://192.0.2.21:9464/readyz',
      'http://192.0.2.22:9464/readyz',
    ]);
    expect(probeUrls(config({}, { instance: { index: 0, count: 2 }, metrics: { listen: '[::]:9464' } }), ['2001:db8::21', '2001:db8::22'])[1]).toBe(
      'http://[2001:db8::22]:9464/readyz',
    );
  });

  it.each([
    ['metrics off', ''],
    ['a loopback listener', '127.0.0.1:9464'],
    ['port 0', '0.0.0.0:0'],
  ])('refuse %s', (_name, listen) => {
    expect(() => probeUrls(config({}, { instance: { index: 0, count: 2 }, metrics: { listen } }), INSTANCES)).toThrow(BalancerError);
  });
});

describe('--balancer-agent on the command line', () => {
  it.each([
    [{ 'balancer-agent': true, balancer: 'nftables', instances: '192.0.2.21', config: 'x' }, /goes alone/],
    [{ 'balancer-agent': true, vip: '203.0.113.1', instances: '192.0.2.21', config: 'x' }, /goes alone/],
    [{ 'balancer-agent': true, config: 'x' }, /--instances/],
    [{ 'balancer-agent': true, instances: '192.0.2.21' }, /--config/],
    [{ 'balancer-agent': true, instances: '192.0.2.21', config: 'x', 'interval-ms': '50' }, /--interval-ms/],
    [{ 'balancer-agent': true, instances: '192.0.2.21', config: 'x', 'interval-ms': '2s' }, /--interval-ms/],
  ])('usage error: %o', (values, message) => {
    const r = balancerAgentSetup(values);
    expect('code' in r && r.code).toBe(64);
    expect('code' in r && r.stderr).toMatch(message);
  });

  it('--interval-ms alone is a usage error', () => {
    expect(deployCommand({ 'interval-ms': '500' })?.code).toBe(64);
  });
});

describe('--balancer on the command line', () => {
  it.each([
    [{ balancer: 'ipvs', instances: '192.0.2.21', config: 'x' }, /--balancer must be nftables/],
    [{ instances: '192.0.2.21', config: 'x' }, /go with --balancer/],
    [{ balancer: 'nftables', config: 'x' }, /--instances/],
    [{ balancer: 'nftables', instances: '192.0.2.21', nftables: true, config: 'x' }, /goes alone/],
  ])('usage error: %o', (values, message) => {
    const r = deployCommand(values);
    expect(r?.code).toBe(64);
    expect(r?.stderr).toMatch(message);
  });
});

describe("an instance's own firewall (--nftables)", () => {
  it('opens only its slice of the passive range', () => {
    const second = config({}, { instance: { index: 1, count: 2 } });
    const text = nftablesRules(second);
    expect(text).toContain('tcp dport 50500-50999 accept comment "main: passive data from clients"');
    expect(text).not.toContain('50000-50999');
  });
});
