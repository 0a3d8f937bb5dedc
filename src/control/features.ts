/**
 * FEAT (RFC 2389) as the client sees it through the gateway: EPSV and EPRT
 * are offered whatever the upstream says (the gateway translates them), EPRT
 * only when active mode is allowed. The TLS features (RFC 4217 6) are the
 * gateway's own: listed exactly when the site terminates TLS, withdrawn
 * otherwise, whatever the upstream says. Everything else the upstream lists
 * stays as it is.
 */
import { SYSTEM_STATUS } from '../ftp/codes.js';
import type { ControlSettings, FinalReply } from './types.js';

const TLS_FEATURES = new Set(['AUTH', 'PBSZ', 'PROT', 'CCC', 'ADAT']);
const OUR_TLS_FEATURES = [' AUTH TLS\r\n', ' PBSZ\r\n', ' PROT\r\n'];

export function features(reply: FinalReply, site: Pick<ControlSettings, 'activeMode' | 'tls'>): Buffer {
  if (reply.code !== SYSTEM_STATUS) return Buffer.concat([...reply.parts, reply.raw]);
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
  if (site.tls !== undefined) for (const f of OUR_TLS_FEATURES) kept.push(Buffer.from(f));
  const last = reply.parts.length > 0 ? reply.raw : Buffer.from('211 End\r\n');
  return Buffer.concat([header, ...kept, last]);
}
