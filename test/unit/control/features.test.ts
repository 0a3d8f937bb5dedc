/** FEAT through the gateway (RFC 2389): truthful to what the client can use. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config/load.js';
import { features } from '../../../src/control/features.js';
import type { ControlTls, FinalReply } from '../../../src/control/types.js';
import { controlSettings } from '../../../src/edge/Site.js';

const TLS: ControlTls = { client: 'optional', implicit: false, upstream: 'plain', requireProtP: false };

const site = (activeEnabled: boolean, tls?: ControlTls) => ({
  ...controlSettings(parseConfig({ sites: [{ name: 's', upstream: { host: '192.0.2.10' }, activeMode: { enabled: activeEnabled } }] }).sites[0]!),
  tls,
});

function reply(lines: string[]): FinalReply {
  const last = lines[lines.length - 1]!;
  return {
    code: Number(last.slice(0, 3)),
    text: last,
    raw: Buffer.from(`${last}\r\n`),
    parts: lines.slice(0, -1).map((l) => Buffer.from(`${l}\r\n`)),
  };
}

describe('features', () => {
  it('adds EPSV and EPRT, withdraws TLS features, keeps the rest byte-exact', () => {
    const out = features(reply(['211-Features:', ' AUTH TLS', ' PBSZ', ' PROT', ' MDTM', ' SIZE', '211 End']), site(true));
    expect(out.toString()).toBe('211-Features:\r\n MDTM\r\n SIZE\r\n EPSV\r\n EPRT\r\n211 End\r\n');
  });

  it('does not list EPRT when active mode is off, even if the upstream does', () => {
    const out = features(reply(['211-Features:', ' EPRT', ' EPSV', '211 End']), site(false));
    expect(out.toString()).toBe('211-Features:\r\n EPSV\r\n211 End\r\n');
  });

  it('a single-line 211 (no features) still gets what the gateway adds', () => {
    const out = features(reply(['211 No features']), site(true));
    expect(out.toString()).toBe('211-Features:\r\n EPSV\r\n EPRT\r\n211 End\r\n');
  });

  it('a site that terminates TLS lists AUTH TLS, PBSZ and PROT as its own, whatever the upstream lists', () => {
    const out = features(reply(['211-Features:', ' AUTH SSL', ' PROT', ' MDTM', '211 End']), site(true, TLS));
    expect(out.toString()).toBe('211-Features:\r\n MDTM\r\n EPSV\r\n EPRT\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n211 End\r\n');
  });

  it('a refusal (500) passes unchanged', () => {
    const out = features(reply(['500 Unknown command']), site(true));
    expect(out.toString()).toBe('500 Unknown command\r\n');
  });
});
