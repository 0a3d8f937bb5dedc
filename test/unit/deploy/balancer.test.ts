/**
 * The balancer generator (`--balancer nftables`): the control port spread over
 * every instance, each instance's passive slice (the one it serves, from the
 * same function the gateway uses) steered to it, DNAT only; refusals.
 */
import { describe, expect, it } from 'vitest';
import { passiveSlice } from '../../../src/config/instance.js';
import { BalancerError, balancerRules } from '../../../src/deploy/balancer.js';
import { deployCommand } from '../../../src/deploy/command.js';
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

describe('balancerRules', () => {
  it('spreads the control port and steers each passive slice to its owner', () => {
    expect(ruleLines(balancerRules(two, { instances: INSTANCES }))).toEqual([
      'ip daddr 203.0.113.1 tcp dport 21 dnat ip to jhash ip saddr . tcp sport mod 2 map { 0 : 192.0.2.21, 1 : 192.0.2.22 }',
      'ip daddr 203.0.113.1 tcp dport 50000-50499 dnat ip to 192.0.2.21',
      'ip daddr 203.0.113.1 tcp dport 50500-50999 dnat ip to 192.0.2.22',
    ]);
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
    expect(lines[0]).toBe('ip6 daddr 2001:db8::1 tcp dport 21 dnat ip6 to jhash ip6 saddr . tcp sport mod 2 map { 0 : 2001:db8:2::21, 1 : 2001:db8:2::22 }');
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
