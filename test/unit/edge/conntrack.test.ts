/** Lines of conntrack-tools and the original destination of a redirected connection (transparent sites). */
import { describe, expect, it } from 'vitest';
import { originalDestination, parseFlow } from '../../../src/edge/conntrack.js';

const ACCEPTED = { client: '198.51.100.10', clientPort: 36346, local: '198.51.100.1', localPort: 2121 };
const EVENT = '    [NEW] tcp      6 120 SYN_SENT src=198.51.100.10 dst=192.0.2.10 sport=36346 dport=21 [UNREPLIED] src=198.51.100.1 dst=198.51.100.10 sport=2121 dport=36346';

describe('parseFlow', () => {
  it('reads an event and a listed entry (the original direction first)', () => {
    expect(parseFlow(EVENT)).toEqual({
      orig: { src: '198.51.100.10', dst: '192.0.2.10', sport: 36346, dport: 21 },
      reply: { src: '198.51.100.1', dst: '198.51.100.10', sport: 2121, dport: 36346 },
    });
    const listed = 'tcp      6 59 CLOSE_WAIT src=2001:db8:5::10 dst=2001:db8:9::10 sport=58796 dport=21 src=2001:db8:5::1 dst=2001:db8:5::10 sport=2121 dport=58796 [ASSURED] mark=0 use=1';
    expect(parseFlow(listed)?.orig.dst).toBe('2001:db8:9::10');
  });

  it.each([
    ['a banner', 'conntrack v1.4.7 (conntrack-tools): 3 flow events have been shown.'],
    ['one tuple only', 'tcp 6 120 SYN_SENT src=198.51.100.10 dst=192.0.2.10 sport=36346 dport=21'],
    ['a port out of range', EVENT.replace('dport=21', 'dport=70000')],
    ['an address that is not one', EVENT.replace('dst=192.0.2.10', 'dst=nope')],
    ['empty', ''],
  ])('refuses %s', (_name, line) => {
    expect(parseFlow(line)).toBeUndefined();
  });
});

describe('originalDestination', () => {
  const flow = parseFlow(EVENT);
  if (flow === undefined) throw new Error('unparsed');
  it('a redirected connection: where the client was going', () => {
    expect(originalDestination(flow, ACCEPTED)).toEqual({ host: '192.0.2.10', port: 21 });
  });
  it.each([
    ['another client port', { ...ACCEPTED, clientPort: 1 }],
    ['another client', { ...ACCEPTED, client: '198.51.100.11' }],
    ['another listener', { ...ACCEPTED, localPort: 2122 }],
  ])('never a guess: %s is not this flow', (_name, accepted) => {
    expect(originalDestination(flow, accepted)).toBeUndefined();
  });
  it('a client port NAT remapped (the reply tuple is what the socket sees) still finds its flow', () => {
    const remapped = parseFlow(EVENT.replace('sport=2121 dport=36346', 'sport=2121 dport=3555'));
    expect(remapped === undefined ? 'unparsed' : originalDestination(remapped, { ...ACCEPTED, clientPort: 3555 })).toEqual({ host: '192.0.2.10', port: 21 });
    expect(remapped === undefined ? 'unparsed' : originalDestination(remapped, ACCEPTED)).toBeUndefined();
  });

  it('a connection to the gateway itself (not redirected) has no original destination', () => {
    const direct = parseFlow(EVENT.replace('dst=192.0.2.10 sport=36346 dport=21', 'dst=198.51.100.1 sport=36346 dport=2121'));
    expect(direct === undefined ? 'unparsed' : originalDestination(direct, ACCEPTED)).toBeUndefined();
  });
});
