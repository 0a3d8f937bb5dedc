/**
 * parseConfig: every refusal stops start-up with one message that names the
 * key; defaults are filled in; the result is deeply frozen; every shipped
 * config file is valid.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../../../src/config/load.js';
import type { GatewayConfig } from '../../../src/config/types.js';

type Doc = Record<string, unknown>;

/** One valid site; `extra` overrides its keys. */
function site(extra: Doc = {}): Doc {
  return {
    name: 'main',
    listen: { host: '127.0.0.1', port: 2121 },
    upstream: { host: '192.0.2.10', port: 21 },
    passivePorts: { min: 50_000, max: 50_099 },
    activePorts: { min: 50_100, max: 50_199 },
    ...extra,
  };
}

/** The message of the ConfigError `document` is refused with. */
function refusal(document: unknown): string {
  try {
    parseConfig(document);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('ERR_ALG_CONFIG');
    return (err as Error).message;
  }
  throw new Error(`accepted: ${JSON.stringify(document)}`);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The message starts with `key:`, so an operator sees which key is wrong. */
function expectRefusedAt(document: unknown, key: string, problem?: RegExp): void {
  const message = refusal(document);
  expect(message).toMatch(new RegExp(`^${escape(key)}: `));
  if (problem !== undefined) expect(message).toMatch(problem);
}

describe('parseConfig refuses invalid addresses, naming the key', () => {
  const rows: Array<[string, Doc, string]> = [
    ['listen host that is a name', site({ listen: { host: 'localhost', port: 2121 } }), 'sites[0].listen.host'],
    ['listen host with five parts', site({ listen: { host: '1.2.3.4.5', port: 2121 } }), 'sites[0].listen.host'],
    ['listen host with an octet above 255', site({ listen: { host: '999.1.1.1', port: 2121 } }), 'sites[0].listen.host'],
    ['empty listen host', site({ listen: { host: '', port: 2121 } }), 'sites[0].listen.host'],
    ['IPv6 with a zone', site({ listen: { host: 'fe80::1%eth0', port: 2121 } }), 'sites[0].listen.host'],
    ['upstream host that is a name', site({ upstream: { host: 'ftp.example.com', port: 21 } }), 'sites[0].upstream.host'],
    ['upstream host a number', site({ upstream: { host: 10, port: 21 } }), 'sites[0].upstream.host'],
    ['externalAddress not an address', site({ externalAddress: 'nope' }), 'sites[0].externalAddress'],
    ['externalAddress two IPv4', site({ externalAddress: ['203.0.113.1', '203.0.113.2'] }), 'sites[0].externalAddress'],
    ['externalAddress three addresses', site({ externalAddress: ['203.0.113.1', '2001:db8::1', '203.0.113.2'] }), 'sites[0].externalAddress'],
    ['externalAddress empty list', site({ externalAddress: [] }), 'sites[0].externalAddress'],
    ['privateAddress not an address', site({ privateAddress: 'eth0' }), 'sites[0].privateAddress'],
    ['clients.allow with a /33', site({ clients: { allow: ['10.0.0.0/33'], deny: [] } }), 'sites[0].clients.allow'],
    ['clients.deny with a name', site({ clients: { allow: [], deny: ['example.com'] } }), 'sites[0].clients.deny'],
    ['listen port above 65535', site({ listen: { host: '127.0.0.1', port: 70_000 } }), 'sites[0].listen.port'],
    ['metrics.listen without a port', { metrics: { listen: '127.0.0.1' }, sites: [site()] }, 'metrics.listen'],
    ['log level unknown', { log: { level: 'verbose' }, sites: [site()] }, 'log.level'],
    ['a zero timeout', site({ timeouts: { greetingMs: 0 } }), 'sites[0].timeouts.greetingMs'],
    ['an upstreamDataMode that does not exist', site({ upstreamDataMode: 'both' }), 'sites[0].upstreamDataMode'],
    ['an upstream pool member that is a name', site({ upstream: { hosts: ['192.0.2.10', 'ftp2.example.com'], port: 21 } }), 'sites[0].upstream.hosts'],
    ['more data-plane workers than allowed', { dataPlane: { workers: 65 }, sites: [site()] }, 'dataPlane.workers'],
    ['a worker nice beyond 19', { dataPlane: { workers: 1, workerNice: 20 }, sites: [site()] }, 'dataPlane.workerNice'],
    ['a negative worker nice (a priority above the control loop)', { dataPlane: { workerNice: -5 }, sites: [site()] }, 'dataPlane.workerNice'],
    ['a control policy that does not exist', { controlPriority: { policy: 'idle' }, sites: [site()] }, 'controlPriority.policy'],
    ['a real-time priority of 0 (not real time)', { controlPriority: { policy: 'rr', priority: 0 }, sites: [site()] }, 'controlPriority.priority'],
    ['a real-time priority above 99', { controlPriority: { policy: 'fifo', priority: 100 }, sites: [site()] }, 'controlPriority.priority'],
    ['a positive control nice (below the ordinary priority)', { controlPriority: { nice: 5 }, sites: [site()] }, 'controlPriority.nice'],
    ['a control nice below -20', { controlPriority: { nice: -21 }, sites: [site()] }, 'controlPriority.nice'],
    ['a negative control CPU', { controlPriority: { cpus: [-1] }, sites: [site()] }, 'controlPriority.cpus'],
    ['a control CPU that is not an integer', { controlPriority: { cpus: [0.5] }, sites: [site()] }, 'controlPriority.cpus'],
    ['a control CPU beyond 1023', { controlPriority: { cpus: [1024] }, sites: [site()] }, 'controlPriority.cpus'],
    ['a control CPU twice', { controlPriority: { cpus: [1, 1] }, sites: [site()] }, 'controlPriority.cpus'],
    // convict would coerce these strings ("no" to true): a typed key takes only its own type.
    ['a boolean given as the string "no"', site({ activeMode: { enabled: 'no' } }), 'sites[0].activeMode.enabled'],
    ['a port given as a string', site({ listen: { host: '127.0.0.1', port: '2121' } }), 'sites[0].listen.port'],
    ['a root number given as a string', { limits: { maxSessions: '10' }, sites: [site()] }, 'limits.maxSessions'],
    ['a data plane kind that does not exist', { dataPlane: { kind: 'kernel' }, sites: [site()] }, 'dataPlane.kind'],
  ];
  it.each(rows)('%s', (_name, doc, key) => {
    expectRefusedAt('sites' in doc ? doc : { sites: [doc] }, key);
  });

  // inet_aton shorthands are not addresses an operator means: "010.0.0.1" would become
  // 8.0.0.1 (octal), "10.1" 10.0.0.1, "1.2.3" 1.2.0.3. Refuse them instead of guessing.
  const shorthand: Array<[string, string]> = [
    ['three parts', '1.2.3'],
    ['two parts', '127.1'],
    ['one number', '3221225994'],
    ['a leading zero (octal)', '010.0.0.1'],
    ['hexadecimal', '0x7f.0.0.1'],
  ];
  it.each(shorthand)('refuses a non-dotted-quad IPv4 (%s: %s) instead of reinterpreting it', (_name, host) => {
    expectRefusedAt({ sites: [site({ upstream: { host, port: 21 } })] }, 'sites[0].upstream.host');
  });
});

describe('parseConfig refuses port ranges that cannot work', () => {
  const rows: Array<[string, Doc, string, RegExp?]> = [
    ['passive min greater than max', site({ passivePorts: { min: 50_099, max: 50_000 } }), 'sites[0].passivePorts', /min 50099 is greater than max 50000/],
    ['active min greater than max', site({ activePorts: { min: 50_199, max: 50_100 } }), 'sites[0].activePorts', /greater than max/],
    ['passive min below 1024', site({ passivePorts: { min: 1023, max: 2000 } }), 'sites[0].passivePorts.min', /1024/],
    ['passive min 0', site({ passivePorts: { min: 0, max: 2000 } }), 'sites[0].passivePorts.min'],
    ['passive min 20 (ftp-data)', site({ passivePorts: { min: 20, max: 2000 } }), 'sites[0].passivePorts.min'],
    ['passive max above 65535', site({ passivePorts: { min: 60_000, max: 65_536 } }), 'sites[0].passivePorts.max', /65535/],
    ['active min below 1024', site({ activePorts: { min: 80, max: 2000 } }), 'sites[0].activePorts.min'],
    ['active max above 65535', site({ activePorts: { min: 60_000, max: 70_000 } }), 'sites[0].activePorts.max'],
    ['a fractional port', site({ passivePorts: { min: 50_000.5, max: 50_099 } }), 'sites[0].passivePorts.min'],
    ['a negative port', site({ activePorts: { min: -1, max: 50_199 } }), 'sites[0].activePorts.min'],
  ];
  it.each(rows)('%s', (_name, doc, key, problem) => {
    expectRefusedAt({ sites: [doc] }, key, problem);
  });

  it('dataPlane.kind is "relay" unless set, and takes exactly relay, nftables and auto', () => {
    expect(parseConfig({ sites: [site()] }).dataPlane.kind).toBe('relay');
    for (const kind of ['relay', 'nftables', 'auto'] as const) {
      expect(parseConfig({ dataPlane: { kind }, sites: [site()] }).dataPlane).toEqual({ workers: 0, workerNice: 10, kind });
    }
  });

  it('controlPriority changes nothing unless set (policy other at nice 0), and takes each policy at its edges', () => {
    expect(parseConfig({ sites: [site()] }).controlPriority).toEqual({ policy: 'other', priority: 1, nice: 0, cpus: [] });
    expect(parseConfig({ controlPriority: { policy: 'rr', priority: 99 }, sites: [site()] }).controlPriority).toEqual({ policy: 'rr', priority: 99, nice: 0, cpus: [] });
    expect(parseConfig({ controlPriority: { policy: 'fifo', priority: 1 }, sites: [site()] }).controlPriority.policy).toBe('fifo');
    expect(parseConfig({ controlPriority: { nice: -20 }, sites: [site()] }).controlPriority).toEqual({ policy: 'other', priority: 1, nice: -20, cpus: [] });
  });

  it('controlPriority.cpus pins nothing unless set, and takes CPU lists at their edges, with or without a policy', () => {
    expect(parseConfig({ controlPriority: { cpus: [0] }, sites: [site()] }).controlPriority).toEqual({ policy: 'other', priority: 1, nice: 0, cpus: [0] });
    expect(parseConfig({ controlPriority: { policy: 'rr', cpus: [1023, 0, 5] }, sites: [site()] }).controlPriority.cpus).toEqual([1023, 0, 5]);
    expect(parseConfig({ controlPriority: { cpus: [] }, sites: [site()] }).controlPriority.cpus).toEqual([]);
  });

  it('accepts the edges 1024 and 65535', () => {
    const config = parseConfig({ sites: [site({ passivePorts: { min: 1024, max: 1100 }, activePorts: { min: 65_000, max: 65_535 } })] });
    expect(config.sites[0]?.passivePorts).toEqual({ min: 1024, max: 1100 });
    expect(config.sites[0]?.activePorts).toEqual({ min: 65_000, max: 65_535 });
  });

  it('accepts a one-port range', () => {
    expect(parseConfig({ sites: [site({ passivePorts: { min: 40_000, max: 40_000 } })] }).sites[0]?.passivePorts).toEqual({ min: 40_000, max: 40_000 });
  });
});

describe('parseConfig refuses sites that collide', () => {
  const second = (extra: Doc) => site({ name: 'second', listen: { host: '127.0.0.1', port: 2122 }, ...extra });

  it('refuses overlapping passive ranges of two sites on the same address', () => {
    const doc = { sites: [site(), second({ passivePorts: { min: 50_050, max: 50_060 }, activePorts: { min: 51_000, max: 51_099 } })] };
    expectRefusedAt(doc, 'sites[1].passivePorts', /overlap sites\[0\]\.passivePorts/);
  });

  it("refuses one site's passive range overlapping another's active range", () => {
    const doc = {
      sites: [
        site({ privateAddress: '127.0.0.1' }),
        second({ privateAddress: '10.0.0.1', passivePorts: { min: 50_150, max: 50_160 }, activePorts: { min: 51_000, max: 51_099 } }),
      ],
    };
    expectRefusedAt(doc, 'sites[1].passivePorts', /overlap sites\[0\]\.activePorts/);
  });

  it('refuses overlapping passive and active ranges within one site', () => {
    expectRefusedAt({ sites: [site({ activePorts: { min: 50_099, max: 50_199 } })] }, 'sites[0].activePorts', /overlap sites\[0\]\.passivePorts/);
  });

  it('refuses a pool that contains the listener port', () => {
    expectRefusedAt({ sites: [site({ listen: { host: '127.0.0.1', port: 50_010 } })] }, 'sites[0].passivePorts', /overlap sites\[0\]\.listen/);
  });

  it('refuses a wildcard listener whose ranges overlap a site on a specific address', () => {
    const doc = { sites: [site(), second({ listen: { host: '0.0.0.0', port: 2122 }, activePorts: { min: 51_000, max: 51_099 } })] };
    expectRefusedAt(doc, 'sites[1].passivePorts', /overlap/);
  });

  it('accepts the same ranges on different addresses', () => {
    const doc = {
      sites: [
        site({ listen: { host: '127.0.0.1', port: 2121 }, privateAddress: '10.0.0.1' }),
        site({ name: 'second', listen: { host: '127.0.0.2', port: 2121 }, privateAddress: '10.0.0.2' }),
      ],
    };
    const config = parseConfig(doc);
    expect(config.sites.map((s) => s.passivePorts)).toEqual([
      { min: 50_000, max: 50_099 },
      { min: 50_000, max: 50_099 },
    ]);
  });

  it('accepts disjoint ranges on the same address', () => {
    const doc = { sites: [site(), second({ passivePorts: { min: 51_000, max: 51_099 }, activePorts: { min: 51_100, max: 51_199 } })] };
    expect(parseConfig(doc).sites).toHaveLength(2);
  });

  it('refuses a duplicate listener', () => {
    const doc = { sites: [site(), site({ name: 'second', passivePorts: { min: 51_000, max: 51_099 }, activePorts: { min: 51_100, max: 51_199 } })] };
    expectRefusedAt(doc, 'sites[1].listen', /127\.0\.0\.1:2121 duplicates sites\[0\]\.listen/);
  });

  it('refuses a wildcard listener on the port of a specific one', () => {
    const doc = {
      sites: [site(), site({ name: 'second', listen: { host: '0.0.0.0', port: 2121 }, passivePorts: { min: 51_000, max: 51_099 }, activePorts: { min: 51_100, max: 51_199 } })],
    };
    expectRefusedAt(doc, 'sites[1].listen', /duplicates/);
  });

  it('accepts two listeners on port 0 (the kernel picks each one)', () => {
    const doc = {
      sites: [
        site({ listen: { host: '127.0.0.1', port: 0 } }),
        site({ name: 'second', listen: { host: '127.0.0.1', port: 0 }, passivePorts: { min: 51_000, max: 51_099 }, activePorts: { min: 51_100, max: 51_199 } }),
      ],
    };
    expect(parseConfig(doc).sites).toHaveLength(2);
  });

  it('refuses two sites with one name', () => {
    const doc = { sites: [site(), second({ name: 'main', passivePorts: { min: 51_000, max: 51_099 }, activePorts: { min: 51_100, max: 51_199 } })] };
    expectRefusedAt(doc, 'sites[1].name', /"main" is used by another site/);
  });

  it('refuses an empty site name', () => {
    expectRefusedAt({ sites: [site({ name: '' })] }, 'sites[0].name');
  });
});

describe('parseConfig refuses unknown keys and missing parts', () => {
  it('an unknown key at the top level', () => {
    expectRefusedAt({ sites: [site()], sitez: [] }, 'sitez', /unknown key/);
  });

  it('an unknown key inside a site', () => {
    expectRefusedAt({ sites: [site({ upstreamHost: '192.0.2.1' })] }, 'sites[0].upstreamHost', /unknown key/);
  });

  it('an unknown key nested in a section of a site', () => {
    expectRefusedAt({ sites: [site({ timeouts: { idleMs: 5 } })] }, 'sites[0].timeouts.idleMs', /unknown key/);
  });

  it('an unknown key inside the second site', () => {
    const doc = { sites: [site(), site({ name: 'b', listen: { host: '127.0.0.2', port: 2121 }, privateAddress: '10.0.0.2', passiv: {} })] };
    expect(refusal(doc)).toMatch(/^sites\[1\]\.passiv: unknown key/);
  });

  it('a missing upstream host', () => {
    expectRefusedAt({ sites: [site({ upstream: { port: 21 } })] }, 'sites[0].upstream.host');
  });

  it('a site without upstream at all', () => {
    const { upstream: _omit, ...rest } = site();
    expectRefusedAt({ sites: [rest] }, 'sites[0].upstream.host');
  });

  it('an empty list of sites', () => {
    expectRefusedAt({ sites: [] }, 'sites', /non-empty/);
  });

  it('no sites at all', () => {
    expectRefusedAt({ log: { level: 'info' } }, 'sites');
  });

  it.each([
    ['an object', { main: site() }],
    ['a string', 'main'],
    ['null', null],
  ])('sites that is not a list (%s)', (_name, sites) => {
    expectRefusedAt({ sites }, 'sites');
  });

  it('a section of a site that is not an object names the section', () => {
    expectRefusedAt({ sites: [site({ listen: 'localhost:21' })] }, 'sites[0].listen');
  });

  it('a top-level section that is not an object names the section', () => {
    expectRefusedAt({ log: 'debug', sites: [site()] }, 'log');
  });

  it('a site that is not an object', () => {
    expectRefusedAt({ sites: ['main'] }, 'sites[0]');
  });

  it.each([null, [], 'sites', 42])('a document that is not an object (%j)', (doc) => {
    expect(refusal(doc)).toMatch(/JSON object/);
  });
});

describe('parseConfig fills in defaults', () => {
  const config = parseConfig({ sites: [{ name: 'min', upstream: { host: '192.0.2.10' } }] });
  const only = config.sites[0];

  it('global defaults', () => {
    expect(config.log).toEqual({ level: 'info' });
    expect(config.metrics).toEqual({ listen: '' });
    expect(config.shutdown).toEqual({ drainTimeoutMs: 30_000 });
    expect(config.limits).toEqual({ maxSessions: 10_000 });
  });

  it('site defaults', () => {
    expect(only).toMatchObject({
      name: 'min',
      listen: { host: '0.0.0.0', port: 21 },
      upstream: { host: '192.0.2.10', port: 21 },
      externalAddress: 'auto',
      privateAddress: 'auto',
      passivePorts: { min: 50_000, max: 50_999 },
      activePorts: { min: 51_000, max: 51_999 },
      upstreamDataMode: 'client',
      activeMode: { enabled: true, clientAddress: 'strict', sourcePort20: false },
      ftps: 'refuse',
      clients: { allow: [], deny: [] },
      timeouts: { upstreamConnectMs: 5_000, greetingMs: 10_000, controlIdleMs: 300_000, pinholeAcceptMs: 15_000, dataIdleMs: 120_000 },
      limits: { maxSessions: 1_000, maxSessionsPerClient: 128, maxPinholesPerSession: 2, maxPinholesPerClient: 128, maxLineBytes: 2_048 },
    });
  });

  it('a partial section keeps the defaults of its other keys', () => {
    const s = parseConfig({ sites: [site({ timeouts: { greetingMs: 500 } })] }).sites[0];
    expect(s?.timeouts).toEqual({ proxyHeaderMs: 5_000, upstreamConnectMs: 5_000, greetingMs: 500, controlIdleMs: 300_000, loginMs: 30_000, pinholeAcceptMs: 15_000, dataIdleMs: 120_000 });
  });

  it('two configs do not share state (convict instances are per call)', () => {
    const a = parseConfig({ sites: [site({ timeouts: { greetingMs: 111 } })] });
    const b = parseConfig({ sites: [site()] });
    expect(a.sites[0]?.timeouts.greetingMs).toBe(111);
    expect(b.sites[0]?.timeouts.greetingMs).toBe(10_000);
  });
});

describe('parseConfig accepts the documented shapes', () => {
  const README_EXAMPLE = {
    log: { level: 'info' },
    sites: [
      {
        name: 'main',
        listen: { host: '0.0.0.0', port: 2121 },
        upstream: { host: '192.0.2.10', port: 21 },
        externalAddress: '203.0.113.1',
        passivePorts: { min: 50000, max: 50099 },
        activePorts: { min: 50100, max: 50199 },
      },
    ],
  };

  it('the README example', () => {
    const config = parseConfig(README_EXAMPLE);
    const s = config.sites[0];
    expect(config.log.level).toBe('info');
    expect(s?.name).toBe('main');
    expect(s?.listen).toEqual({ host: '0.0.0.0', port: 2121, proxyProtocol: 'off', trustedProxies: [] });
    expect(s?.upstream).toMatchObject({ host: '192.0.2.10', port: 21 });
    expect(s?.externalAddress).toEqual(['203.0.113.1']); // one address becomes a list of one
    expect(s?.passivePorts).toEqual({ min: 50000, max: 50099 });
    expect(s?.activePorts).toEqual({ min: 50100, max: 50199 });
  });

  it('does not modify the document it is given', () => {
    const doc = JSON.parse(JSON.stringify(README_EXAMPLE)) as Doc;
    parseConfig(doc);
    expect(doc).toEqual(README_EXAMPLE);
  });

  it('externalAddress "auto"', () => {
    expect(parseConfig({ sites: [site({ externalAddress: 'auto' })] }).sites[0]?.externalAddress).toBe('auto');
  });

  it('externalAddress one IPv4 and one IPv6, IPv6 in RFC 5952 form', () => {
    const s = parseConfig({ sites: [site({ externalAddress: ['203.0.113.1', '2001:DB8:0:0::1'] })] }).sites[0];
    expect(s?.externalAddress).toEqual(['203.0.113.1', '2001:db8::1']);
  });

  it('externalAddress IPv6 first, IPv4 second', () => {
    const s = parseConfig({ sites: [site({ externalAddress: ['2001:db8::1', '203.0.113.1'] })] }).sites[0];
    expect(s?.externalAddress).toEqual(['2001:db8::1', '203.0.113.1']);
  });

  it('an IPv4-mapped listen address is normalised to IPv4', () => {
    expect(parseConfig({ sites: [site({ listen: { host: '::ffff:127.0.0.1', port: 2121 } })] }).sites[0]?.listen.host).toBe('127.0.0.1');
  });

  it('an upstream pool instead of one host', () => {
    const s = parseConfig({ sites: [site({ upstream: { hosts: ['192.0.2.10', '192.0.2.11'], port: 2121 } })] }).sites[0];
    expect(s?.upstream).toMatchObject({ hosts: ['192.0.2.10', '192.0.2.11'], port: 2121 });
  });

  it('an IPv6 site', () => {
    const s = parseConfig({ sites: [site({ listen: { host: '::', port: 2121 }, upstream: { host: '2001:db8::10', port: 21 }, externalAddress: '2001:db8::1' })] }).sites[0];
    expect(s?.listen.host).toBe('::');
    expect(s?.upstream.host).toBe('2001:db8::10');
  });
});

describe('parseConfig freezes the result', () => {
  const config: GatewayConfig = parseConfig({ sites: [site({ externalAddress: ['203.0.113.1'], clients: { allow: ['10.0.0.0/8'], deny: [] } })] });

  it('every level is frozen', () => {
    const s = config.sites[0] as GatewayConfig['sites'][number];
    for (const part of [config, config.log, config.sites, s, s.listen, s.upstream, s.passivePorts, s.timeouts, s.limits, s.clients, s.clients.allow, s.externalAddress, s.activeMode]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
  });

  it('writes throw (ES modules are strict)', () => {
    const s = config.sites[0] as { listen: { port: number }; name: string };
    expect(() => {
      s.listen.port = 1;
    }).toThrow(TypeError);
    expect(() => {
      s.name = 'other';
    }).toThrow(TypeError);
    expect(() => (config.sites as unknown as unknown[]).push({})).toThrow(TypeError);
  });
});

describe('every JSON file under config/ is valid', () => {
  const root = fileURLToPath(new URL('../../../config/', import.meta.url));
  const files = listJson(root);
  it('config/ is readable', () => {
    expect(Array.isArray(files)).toBe(true);
  });
  it.each(files.map((f) => [relative(root, f), f]))('%s', (_name, file) => {
    const config = loadConfigFile(file);
    expect(config.sites.length).toBeGreaterThan(0);
  });
});

function listJson(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return []; // no config/ folder: nothing to check
  }
  return names.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return listJson(path);
    return name.endsWith('.json') ? [path] : [];
  });
}
