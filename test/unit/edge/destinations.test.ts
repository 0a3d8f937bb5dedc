/** The destination policy of forward and transparent sites, one row a rule (issue 15 item 4). */
import { describe, expect, it } from 'vitest';
import { type DestinationPolicy, type OwnEndpoint, checkDestination } from '../../../src/edge/destinations.js';

const P21 = [{ min: 21, max: 21 }];
const policy = (allow: string[] = [], deny: string[] = [], ports = P21): DestinationPolicy => ({ allow, deny, ports });
const OWN: OwnEndpoint[] = [
  { host: '198.51.100.1', ports: { min: 2121, max: 2121 } },
  { host: '198.51.100.1', ports: { min: 50000, max: 50099 } },
];

describe('checkDestination', () => {
  const rows: [string, string, number, DestinationPolicy, string][] = [
    ['a public server, no allow list', '192.0.2.10', 21, policy(), 'ok'],
    ['a port outside ports', '192.0.2.10', 22, policy(), 'port'],
    ['a port inside a range', '192.0.2.10', 2021, policy([], [], [{ min: 2000, max: 2100 }]), 'ok'],
    ['deny wins over allow', '192.0.2.10', 21, policy(['192.0.2.0/24'], ['192.0.2.10']), 'denied'],
    ['not in allow', '203.0.113.5', 21, policy(['192.0.2.0/24']), 'not-allowed'],
    ['in allow', '192.0.2.77', 21, policy(['192.0.2.0/24']), 'ok'],
    ['loopback, no allow', '127.0.0.1', 21, policy(), 'loopback'],
    ['loopback, allow 0.0.0.0/0', '127.0.0.1', 21, policy(['0.0.0.0/0']), 'loopback'],
    ['loopback, allow 127.0.0.0/8', '127.0.0.1', 21, policy(['127.0.0.0/8']), 'ok'],
    ['loopback, allow 127.0.0.1 only: another loopback address', '127.0.0.2', 21, policy(['127.0.0.1']), 'loopback'],
    ['loopback, allow 0.0.0.0/1 (contains it, not inside loopback)', '127.0.0.1', 21, policy(['0.0.0.0/1']), 'loopback'],
    ['IPv6 loopback, allow ::/0', '::1', 21, policy(['::/0']), 'loopback'],
    ['metadata service 169.254.169.254, allow 0.0.0.0/0', '169.254.169.254', 21, policy(['0.0.0.0/0']), 'link-local'],
    ['link-local allowed explicitly', '169.254.169.254', 21, policy(['169.254.0.0/16']), 'ok'],
    ['IPv6 link-local', 'fe80::1', 21, policy(['::/0']), 'link-local'],
    ['multicast', '224.0.0.251', 21, policy(['0.0.0.0/0']), 'multicast'],
    ['IPv6 multicast', 'ff02::1', 21, policy(), 'multicast'],
    ['broadcast', '255.255.255.255', 21, policy(['0.0.0.0/0']), 'broadcast'],
    ['unspecified', '0.0.0.0', 21, policy(['0.0.0.0/0']), 'unspecified'],
    ['IPv6 unspecified', '::', 21, policy(), 'unspecified'],
    ['the gateway\'s own listener', '198.51.100.1', 2121, policy(['0.0.0.0/0'], [], [{ min: 1, max: 65535 }]), 'gateway-itself'],
    ['the gateway\'s own pinhole range', '198.51.100.1', 50007, policy([], [], [{ min: 1, max: 65535 }]), 'gateway-itself'],
    ['the gateway\'s address on a port it does not listen on', '198.51.100.1', 21, policy(), 'ok'],
    ['the gateway itself allowed by its exact address', '198.51.100.1', 2121, policy(['198.51.100.1/32'], [], [{ min: 2121, max: 2121 }]), 'ok'],
    ['an IPv4-mapped deny entry matches the IPv4 address', '192.0.2.10', 21, policy([], ['::ffff:192.0.2.0/120']), 'denied'],
    ['IPv6 server in an IPv6 allow', '2001:db8::10', 21, policy(['2001:db8::/32']), 'ok'],
    ['IPv4 allow does not admit IPv6', '2001:db8::10', 21, policy(['192.0.2.0/24']), 'not-allowed'],
    ['garbage address', 'nope', 21, policy(), 'not-allowed'],
  ];
  it.each(rows)('%s', (_name, address, port, p, want) => {
    const verdict = checkDestination(address, port, p, OWN);
    expect(verdict.ok ? 'ok' : verdict.reason).toBe(want);
  });
});
