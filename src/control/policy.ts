/**
 * Pure decisions of the control channel: which PORT/EPRT is acceptable,
 * which command the upstream gets. No sockets here.
 */
import { type Family, familyOf } from '../common/address.js';
import type { ClientAddressPolicy, UpstreamDataMode } from '../config/types.js';
import type { HostPort } from '../ftp/hostPort.js';

export const MIN_DATA_PORT = 1024; // RFC 2577 4: refuse data connections to privileged ports

export type TargetCheck =
  | { ok: true; address: string; port: number }
  | { ok: false; reason: 'bounce-host' | 'privileged-port' | 'family' };

/**
 * RFC 2577 (bounce attack): the data target named by PORT/EPRT must be the
 * control client itself, on an unprivileged port. With `substitute` a
 * foreign address is replaced by the client's (clients behind their own NAT).
 */
export function checkActiveTarget(target: HostPort, clientAddress: string, policy: ClientAddressPolicy): TargetCheck {
  if (target.port < MIN_DATA_PORT) return { ok: false, reason: 'privileged-port' };
  if (target.address === clientAddress) return { ok: true, address: clientAddress, port: target.port };
  if (policy === 'substitute') return { ok: true, address: clientAddress, port: target.port };
  if (target.family !== familyOf(clientAddress)) return { ok: false, reason: 'family' };
  return { ok: false, reason: 'bounce-host' };
}

export type UpstreamSetup = 'PASV' | 'EPSV' | 'PORT' | 'EPRT';

export interface UpstreamAbilities {
  /** False once the upstream refused EPSV (500/502/522). */
  readonly epsv: boolean;
  /** False once the upstream refused EPRT. */
  readonly eprt: boolean;
}

/**
 * The command that sets up the upstream leg of a data connection. The
 * client's own command is kept when the site does not force a mode; the
 * extended form replaces the classic one when the upstream is IPv6 (PASV
 * and PORT carry only IPv4) or the client used it, unless the upstream has
 * refused it before.
 */
export function upstreamSetupFor(
  clientVerb: UpstreamSetup,
  dataMode: UpstreamDataMode,
  upstreamFamily: Family,
  abilities: UpstreamAbilities,
): UpstreamSetup {
  const clientMode = clientVerb === 'PASV' || clientVerb === 'EPSV' ? 'passive' : 'active';
  const mode = dataMode === 'client' ? clientMode : dataMode;
  const wantsExtended = upstreamFamily === 6 || clientVerb === 'EPSV' || clientVerb === 'EPRT';
  if (mode === 'passive') return upstreamFamily === 6 || (wantsExtended && abilities.epsv) ? 'EPSV' : 'PASV';
  return upstreamFamily === 6 || (wantsExtended && abilities.eprt) ? 'EPRT' : 'PORT';
}

/** Replies meaning "this extended command is not known here" (RFC 959, RFC 2428). */
export function refusesExtension(code: number): boolean {
  return code === 500 || code === 502 || code === 522;
}

