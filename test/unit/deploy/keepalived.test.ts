/**
 * The balancer hosts' keepalived config (`--balancer keepalived`): VRRP moves
 * the VIPs (and the instances' return gateway) between balancer hosts, one
 * advertised family with the other excluded, unicast peers when given,
 * nopreempt, and checks that give the address up when the ruleset or the
 * agent is gone. test/integration/deploy.test.ts runs `keepalived -t` on it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../../src/config/load.js';
import { BALANCER_TABLE, CONTROL_MAP, balancerRules } from '../../../src/deploy/balancer.js';
import { balancerAgentSetup, deployCommand } from '../../../src/deploy/command.js';
import { KeepalivedError, keepalivedConfig, type KeepalivedOptions } from '../../../src/deploy/keepalived.js';
import { configWithSite } from '../../support/deployConfig.js';

const ROOT = new URL('../../../', import.meta.url);
const EXAMPLE = new URL('deploy/balancer/ftp-alg.json', ROOT).pathname;
const BASE: KeepalivedOptions = { vips: ['203.0.113.1'], interface: 'eth0', routerId: 51, priority: 150, peers: ['203.0.113.12'], agentUnit: 'ftp-alg-balancer.service' };

/** The lines of block `name` (one level: nested blocks' own lines included), trimmed; undefined if absent. */
function blockOf(text: string, name: string): string[] | undefined {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === `${name} {`);
  if (start < 0) return undefined;
  const depth = (lines[start] ?? '').length - (lines[start] ?? '').trimStart().length;
  const end = lines.findIndex((l, i) => i > start && l === `${'\t'.repeat(depth)}}`);
  return lines.slice(start + 1, end).map((l) => l.trim());
}

function instanceLines(options: Partial<KeepalivedOptions>): string[] {
  return blockOf(keepalivedConfig({ ...BASE, ...options }), 'vrrp_instance ftp_alg') ?? [];
}

describe('keepalivedConfig', () => {
  it('IPv4 with a unicast peer: BACKUP + nopreempt, VRRPv3, the VIP advertised, both checks tracked', () => {
    expect(instanceLines({})).toEqual([
      'state BACKUP',
      'nopreempt',
      'interface eth0',
      'virtual_router_id 51',
      'priority 150',
      'advert_int 1',
      'version 3',
      'check_unicast_src',
      'unicast_peer {',
      '203.0.113.12',
      '}',
      'virtual_ipaddress {',
      '203.0.113.1/32 dev eth0',
      '}',
      'track_script {',
      'ftp_alg_ruleset',
      'ftp_alg_agent',
      '}',
    ]);
  });

  it('no peers: multicast, no unicast_peer and no check_unicast_src', () => {
    const lines = instanceLines({ peers: [] });
    expect(lines).not.toContain('unicast_peer {');
    expect(lines).not.toContain('check_unicast_src');
  });

  it.each([
    ['IPv4 peers: IPv6 VIP excluded', ['203.0.113.1', '2001:db8::1/64'], ['203.0.113.12'], ['203.0.113.1/32 dev eth0'], ['2001:db8::1/64 dev eth0']],
    ['IPv6 peers: IPv4 VIP excluded', ['203.0.113.1', '2001:db8::1/64'], ['2001:db8::12'], ['2001:db8::1/64 dev eth0'], ['203.0.113.1/32 dev eth0']],
    ['multicast: the first VIP decides', ['2001:db8::1', '203.0.113.1/24'], [], ['2001:db8::1/128 dev eth0'], ['203.0.113.1/24 dev eth0']],
    ['IPv6 only, written canonically', ['2001:DB8:0::1'], ['2001:db8::12'], ['2001:db8::1/128 dev eth0'], undefined],
  ])('dual stack, %s', (_name, vips, peers, advertised, excluded) => {
    const text = keepalivedConfig({ ...BASE, vips, peers });
    expect(blockOf(text, 'virtual_ipaddress')).toEqual(advertised);
    expect(blockOf(text, 'virtual_ipaddress_excluded')).toEqual(excluded);
  });

  it("moves the instances' return gateway with the VIP and tracks its interface", () => {
    const text = keepalivedConfig({ ...BASE, insideVips: ['192.0.2.1/24'], insideInterface: 'eth1' });
    expect(blockOf(text, 'virtual_ipaddress')).toEqual(['203.0.113.1/32 dev eth0', '192.0.2.1/24 dev eth1']);
    expect(blockOf(text, 'track_interface')).toEqual(['eth1']);
    const same = keepalivedConfig({ ...BASE, insideVips: ['198.51.100.1/24'], insideInterface: 'eth0' });
    expect(blockOf(same, 'track_interface')).toBeUndefined();
  });

  it.each([
    [1000, 'advert_int 1'],
    [100, 'advert_int 0.1'],
    [2500, 'advert_int 2.5'],
    [40950, 'advert_int 40.95'],
  ])('--advert-ms %i: %s', (advertMs, line) => {
    expect(instanceLines({ advertMs })).toContain(line);
  });

  it("checks the balancer's own control map, and the agent's unit unless none", () => {
    const text = keepalivedConfig(BASE);
    expect(blockOf(text, 'vrrp_script ftp_alg_ruleset')).toEqual([
      `script "/usr/sbin/nft list map inet ${BALANCER_TABLE} ${CONTROL_MAP}"`,
      'interval 1',
      'timeout 2',
      'fall 2',
      'rise 2',
      'init_fail',
    ]);
    expect(balancerRules(loadConfigFile(EXAMPLE), { instances: ['192.0.2.21', '192.0.2.22'] })).toMatch(new RegExp(`table inet ${BALANCER_TABLE} \\{[^]*\\tmap ${CONTROL_MAP} \\{`));
    expect(blockOf(text, 'vrrp_script ftp_alg_agent')?.[0]).toBe('script "/usr/bin/systemctl is-active --quiet ftp-alg-balancer.service"');
    const without = keepalivedConfig({ ...BASE, agentUnit: undefined });
    expect(blockOf(without, 'vrrp_script ftp_alg_agent')).toBeUndefined();
    expect(blockOf(without, 'track_script')).toEqual(['ftp_alg_ruleset']);
  });

  it('the scripts run as root under script security (nft needs CAP_NET_ADMIN)', () => {
    expect(blockOf(keepalivedConfig(BASE), 'global_defs')).toEqual(['# the checks run nft, which needs CAP_NET_ADMIN', 'script_user root', 'enable_script_security']);
  });

  it.each([
    ['an interface name too long', { interface: 'a-very-long-ifname' }, /--interface/],
    ['an interface name with a space', { interface: 'eth 0' }, /--interface/],
    ['router id 0', { routerId: 0 }, /--router-id/],
    ['router id 256', { routerId: 256 }, /--router-id/],
    ['priority 255 (address owner)', { priority: 255 }, /--priority/],
    ['priority 0', { priority: 0 }, /--priority/],
    ['an advert interval off the centisecond grid', { advertMs: 105 }, /--advert-ms/],
    ['an advert interval over VRRPv3 field', { advertMs: 41000 }, /--advert-ms/],
    ['no VIP', { vips: [] }, /no address to move/],
    ['a name as VIP', { vips: ['ftp.example'] }, /--vip/],
    ['a VIP with a bad length', { vips: ['203.0.113.1/33'] }, /--vip/],
    ['a VIP with two lengths', { vips: ['203.0.113.1/24/24'] }, /--vip/],
    ['a multicast VIP', { vips: ['224.0.0.18'] }, /cannot move/],
    ['a loopback VIP', { vips: ['127.0.0.2'] }, /cannot move/],
    ['a VIP twice', { vips: ['203.0.113.1', '203.0.113.1/24'] }, /twice/],
    ['a peer that is a name', { peers: ['lb-b.example'] }, /--peers/],
    ['a peer twice', { peers: ['203.0.113.12', '203.0.113.12'] }, /twice/],
    ['peers of two families', { peers: ['203.0.113.12', '2001:db8::12'] }, /one address family/],
    ['a peer that is the VIP', { peers: ['203.0.113.1'] }, /moves/],
    ['no VIP of the peers family', { peers: ['2001:db8::12'] }, /no --vip of the peers' family/],
    ['an inside VIP without its interface', { insideVips: ['192.0.2.1/24'] }, /go together/],
    ['an inside interface without an address', { insideInterface: 'eth1' }, /go together/],
    ['an agent unit that is not a service', { agentUnit: 'ftp-alg; reboot' }, /--agent-unit/],
  ])('refuses %s', (_name, options, message) => {
    expect(() => keepalivedConfig({ ...BASE, ...options })).toThrow(KeepalivedError);
    expect(() => keepalivedConfig({ ...BASE, ...options })).toThrow(message);
  });
});

describe('--balancer keepalived on the command line', () => {
  const HOST = { config: EXAMPLE, interface: 'eth0', 'router-id': '51', 'inside-vip': '192.0.2.1/24', 'inside-interface': 'eth1' };

  it.each([
    ['a', { priority: '150', peers: '203.0.113.12' }],
    ['b', { priority: '100', peers: '203.0.113.11' }],
  ])('deploy/balancer/keepalived-%s.conf equals what the generator prints for deploy/balancer/ftp-alg.json (deploy/README.md)', (host, values) => {
    const r = deployCommand({ balancer: 'keepalived', ...HOST, ...values });
    expect(r?.stderr).toBe('');
    expect(readFileSync(new URL(`deploy/balancer/keepalived-${host}.conf`, ROOT), 'utf8')).toBe(r?.stdout);
  });

  it("the hosts' configs differ only in priority and peers", () => {
    const a = deployCommand({ balancer: 'keepalived', ...HOST, priority: '150', peers: '203.0.113.12' })?.stdout.split('\n') ?? [];
    const b = deployCommand({ balancer: 'keepalived', ...HOST, priority: '100', peers: '203.0.113.11' })?.stdout.split('\n') ?? [];
    expect(a.length).toBe(b.length);
    expect(a.filter((line, i) => line !== b[i]).map((l) => l.trim())).toEqual(['priority 150', '203.0.113.12']);
  });

  it("without --vip, moves every site's external addresses, each once", () => {
    const two = configWithSite({ passivePorts: { min: 50000, max: 50999 }, activePorts: { min: 51000, max: 51999 } })({ externalAddress: ['203.0.113.1', '2001:db8::1'] });
    const options = { ...BASE, vips: two.sites.flatMap((s) => (s.externalAddress === 'auto' ? [] : s.externalAddress)) };
    expect(blockOf(keepalivedConfig(options), 'virtual_ipaddress_excluded')).toEqual(['2001:db8::1/128 dev eth0']);
    const r = deployCommand({ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': '51', priority: '100' });
    expect(blockOf(r?.stdout ?? '', 'virtual_ipaddress')).toEqual(['203.0.113.1/32 dev eth0']);
  });

  it('--agent-unit none leaves the agent unchecked; another unit is checked by its name', () => {
    const none = deployCommand({ balancer: 'keepalived', ...HOST, priority: '100', 'agent-unit': 'none' });
    expect(blockOf(none?.stdout ?? '', 'track_script')).toEqual(['ftp_alg_ruleset']);
    const other = deployCommand({ balancer: 'keepalived', ...HOST, priority: '100', 'agent-unit': 'lb-agent.service' });
    expect(other?.stdout).toContain('script "/usr/bin/systemctl is-active --quiet lb-agent.service"');
  });

  it.each([
    [{ balancer: 'keepalived', config: EXAMPLE, 'router-id': '51', priority: '100' }, /needs --interface/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', priority: '100' }, /needs --router-id/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': '51' }, /needs --priority/],
    [{ balancer: 'keepalived', interface: 'eth0', 'router-id': '51', priority: '100' }, /--config/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': 'x', priority: '100' }, /--router-id must be a whole number/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': '51', priority: '100', 'advert-ms': '0.5' }, /--advert-ms must be a whole number/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': '51', priority: '300' }, /--priority must be a whole number from 1 to 254/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': '51', priority: '100', instances: '192.0.2.21' }, /goes alone/],
    [{ balancer: 'keepalived', config: EXAMPLE, interface: 'eth0', 'router-id': '51', priority: '100', nftables: true }, /goes alone/],
    [{ balancer: 'nftables', config: EXAMPLE, instances: '192.0.2.21,192.0.2.22', priority: '100' }, /--priority goes with --balancer keepalived/],
    [{ nftables: true, config: EXAMPLE, interface: 'eth0' }, /--interface goes with --balancer keepalived/],
    [{ 'balancer-agent': true, config: EXAMPLE, instances: '192.0.2.21,192.0.2.22', peers: '203.0.113.12' }, /--peers goes with --balancer keepalived/],
    [{ balancer: 'vrrp', config: EXAMPLE, instances: '192.0.2.21' }, /--balancer must be nftables or keepalived/],
  ])('usage error: %o', (values, message) => {
    const r = 'balancer-agent' in values ? balancerAgentSetup(values) : deployCommand(values);
    expect(r !== undefined && 'code' in r && r.code).toBe(64);
    expect(r !== undefined && 'code' in r && r.stderr).toMatch(message);
  });

  it('a config that does not load exits 78 and names the file', () => {
    const r = deployCommand({ balancer: 'keepalived', config: '/nonexistent/ftp-alg.json', interface: 'eth0', 'router-id': '51', priority: '100' });
    expect(r?.code).toBe(78);
    expect(r?.stderr).toMatch(/nonexistent/);
  });
});
