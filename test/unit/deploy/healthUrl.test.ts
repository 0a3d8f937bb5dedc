/** Where the container health check asks, from the config's metrics.listen. */
import { describe, expect, it } from 'vitest';
import { healthTarget, type HealthTarget } from '../../../src/deploy/healthUrl.js';

const config = (metrics: unknown) => JSON.stringify({ metrics, sites: [] });

describe('healthTarget', () => {
  it.each<[string, string, HealthTarget]>([
    ['IPv4 wildcard: loopback', config({ listen: '0.0.0.0:9464' }), { kind: 'url', url: 'http://127.0.0.1:9464/healthz' }],
    ['IPv6 wildcard: IPv6 loopback', config({ listen: '[::]:9464' }), { kind: 'url', url: 'http://[::1]:9464/healthz' }],
    ['loopback as written', config({ listen: '127.0.0.1:9100' }), { kind: 'url', url: 'http://127.0.0.1:9100/healthz' }],
    ['a fixed IPv6 address in brackets', config({ listen: '[2001:db8::5]:9464' }), { kind: 'url', url: 'http://[2001:db8::5]:9464/healthz' }],
    ['metrics off', config({ listen: '' }), { kind: 'off' }],
    ['no metrics section', JSON.stringify({ sites: [] }), { kind: 'off' }],
  ])('%s', (_name, text, expected) => {
    expect(healthTarget(text, '/healthz')).toEqual(expected);
  });

  it('reads a YAML config when the file is named .yaml', () => {
    const text = 'metrics:\n  listen: 0.0.0.0:9464  # scraped by Prometheus\nsites: []\n';
    expect(healthTarget(text, '/healthz', '/etc/ftp-alg/ftp-alg.yaml')).toEqual({ kind: 'url', url: 'http://127.0.0.1:9464/healthz' });
    expect(healthTarget(text, '/healthz', '/etc/ftp-alg/ftp-alg.json').kind).toBe('invalid');
  });

  it('asks /readyz when told', () => {
    expect(healthTarget(config({ listen: '0.0.0.0:9464' }), '/readyz')).toEqual({ kind: 'url', url: 'http://127.0.0.1:9464/readyz' });
  });

  it.each([
    ['not JSON', '{'],
    ['a listen that is not host:port', config({ listen: 'localhost:9464' })],
    ['a listen that is not a string', config({ listen: 9464 })],
  ])('invalid: %s', (_name, text) => {
    expect(healthTarget(text, '/healthz').kind).toBe('invalid');
  });
});
