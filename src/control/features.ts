/**
 * FEAT (RFC 2389) as the client sees it through the gateway: EPSV and EPRT
 * are offered whatever the upstream says (the gateway translates them), EPRT
 * only when active mode is allowed, and TLS features are withdrawn because
 * TLS is not relayed. Everything else the upstream lists stays as it is.
 */
import type { SiteConfig } from '../config/types.js';
import type { FinalReply } from './Session.js';

const TLS_FEATURES = new Set(['AUTH', 'PBSZ', 'PROT', 'CCC', 'ADAT']);
const FEAT_OK = 211; // RFC 2389 3.2

export function features(reply: FinalReply, site: SiteConfig): Buffer {
  if (reply.code !== FEAT_OK) return Buffer.concat([...reply.parts, reply.raw]);
  // A single-line 211 ("no features") still gets the ones the gateway adds.
  const [header, ...lines] = reply.parts.length > 0 ? (reply.parts as [Buffer, ...Buffer[]]) : [Buffer.from('211-Features:\r\n')];
  const kept: Buffer[] = [];
  const names = new Set<string>();
  for (const line of lines) {
    const name = line.toString('latin1').trim().split(/\s+/)[0]?.toUpperCase() ?? '';
    names.add(name);
    if (TLS_FEATURES.has(name)) continue;
    if (name === 'EPRT' && !site.activeMode.enabled) continue;
    kept.push(line);
  }
  if (!names.has('EPSV')) kept.push(Buffer.from(' EPSV\r\n'));
  if (!names.has('EPRT') && site.activeMode.enabled) kept.push(Buffer.from(' EPRT\r\n'));
  const last = reply.parts.length > 0 ? reply.raw : Buffer.from('211 End\r\n');
  return Buffer.concat([header, ...kept, last]);
}
