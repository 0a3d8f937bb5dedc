/**
 * Every reply the gateway writes on its own behalf, in one table (as
 * ftpserverlib's getErrorCode and libunftp's control-channel error handler
 * do): a refusal reason, a pinhole error code or a session end reason maps
 * to one short reply; the log keeps the detail.
 */
import * as codes from '../ftp/codes.js';
import { formatReply } from '../ftp/reply.js';
import type { EndReason } from './types.js';

interface Reply {
  readonly code: number;
  readonly text: string;
}

const CANT_OPEN: Reply = { code: codes.CANT_OPEN_DATA, text: "Can't open data connection." };

/** Refusals of client commands and input, by reason. `%` is replaced by the command's verb. */
const REFUSALS = {
  nul: { code: codes.SYNTAX_ERROR, text: 'Syntax error, NUL in command.' },
  'bad-verb': { code: codes.SYNTAX_ERROR, text: 'Syntax error, command unrecognized.' },
  empty: { code: codes.SYNTAX_ERROR, text: 'Syntax error, command unrecognized.' },
  'line-too-long': { code: codes.SYNTAX_ERROR, text: 'Command line too long.' },
  'bad-arg': { code: codes.SYNTAX_ERROR_ARGS, text: 'Syntax error in % argument.' },
  /** RFC 2428 2: the reply names the families the gateway takes; `%` is the client's (1 or 2). */
  family: { code: codes.EXTENDED_PROTOCOL_NOT_SUPPORTED, text: 'Network protocol not supported, use (%)' },
  'pasv-needs-ipv4': { code: codes.EXTENDED_PROTOCOL_NOT_SUPPORTED, text: 'PASV needs IPv4, use EPSV.' },
  'epsv-all': { code: codes.BAD_SEQUENCE, text: '% not allowed after EPSV ALL.' },
  'active-disabled': { code: codes.NOT_IMPLEMENTED, text: 'Active mode is not allowed here, use PASV or EPSV.' },
  'bounce-host': { code: codes.NOT_IMPLEMENTED_FOR_PARAM, text: 'Illegal % command: data connections go to your own address and a port from 1024.' },
  'privileged-port': { code: codes.NOT_IMPLEMENTED_FOR_PARAM, text: 'Illegal % command: data connections go to your own address and a port from 1024.' },
  'ftps-policy': { code: codes.AUTH_REFUSED_POLICY, text: 'Request denied for policy reasons: TLS not available through this gateway.' },
  'auth-mechanism': { code: codes.NOT_IMPLEMENTED_FOR_PARAM, text: 'AUTH mechanism not supported, use AUTH TLS.' },
  'already-secure': { code: codes.BAD_SEQUENCE, text: 'Already using TLS.' },
  'needs-auth': { code: codes.BAD_SEQUENCE, text: '% needs AUTH TLS first.' },
  'login-needs-tls': { code: codes.NOT_LOGGED_IN, text: 'Login requires TLS: send AUTH TLS first.' },
  'needs-tls': { code: codes.AUTH_REFUSED_POLICY, text: 'Request denied for policy reasons: send AUTH TLS first.' },
  'prot-c-refused': { code: codes.AUTH_REFUSED_POLICY, text: 'Clear data connections are not allowed here, use PROT P.' },
  'prot-level': { code: codes.PROT_LEVEL_NOT_SUPPORTED, text: 'PROT level not supported, use P or C.' },
  'needs-prot-p': { code: codes.DATA_PROTECTION_REFUSED, text: 'Data connections must be protected: send PBSZ 0 and PROT P.' },
  'login-first': { code: codes.BAD_SEQUENCE, text: 'Login with USER first.' },
  'not-logged-in': { code: codes.NOT_LOGGED_IN, text: 'Please login with USER and PASS.' },
  'unknown-host': { code: codes.NOT_IMPLEMENTED_FOR_PARAM, text: 'Unknown host.' },
  'bad-user': { code: codes.SYNTAX_ERROR_ARGS, text: 'Syntax error in USER argument.' },
  'no-upstream': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service not available, no upstream in service.' },
  'ccc-refused': { code: codes.AUTH_REFUSED_POLICY, text: 'CCC not allowed: the control connection stays protected.' },
} as const satisfies Record<string, Reply>;

export type RefusalReason = keyof typeof REFUSALS;

/** The reply refusing a command; `%` in the text becomes `fill` (the verb, or what the reason names). */
export function refusalReply(reason: RefusalReason, fill: string): Buffer {
  const { code, text } = REFUSALS[reason];
  return formatReply(code, text.replace('%', fill));
}

/** Replies the gateway gives in the upstream's place. */
export const LOCAL = {
  epsvAll: formatReply(codes.COMMAND_OK, 'EPSV ALL command successful.'),
  authOk: formatReply(codes.AUTH_OK, 'AUTH TLS successful, proceed with negotiation.'),
  pbszOk: formatReply(codes.COMMAND_OK, 'PBSZ=0'),
  protP: formatReply(codes.COMMAND_OK, 'Protection level set to Private.'),
  protC: formatReply(codes.COMMAND_OK, 'Protection level set to Clear.'),
  activeOk: (verb: string) => formatReply(codes.COMMAND_OK, `${verb} command successful.`),
  cantOpen: formatReply(CANT_OPEN.code, CANT_OPEN.text),
} as const;

/**
 * A pinhole that could not be opened, by the stable code of its error
 * (common/errors.ts): the metric's reason and the client's reply.
 */
export function pinholeFailure(code: string): { reason: string; reply: Buffer } {
  switch (code) {
    case 'ERR_ALG_PORT_EXHAUSTED':
      return { reason: 'ports-exhausted', reply: formatReply(codes.CANT_OPEN_DATA, "Can't open data connection: no free port.") };
    case 'ERR_ALG_PINHOLE_LIMIT_SESSION':
      return { reason: 'session-pinhole-limit', reply: formatReply(codes.CANT_OPEN_DATA, "Can't open data connection: too many open in this session.") };
    case 'ERR_ALG_PINHOLE_LIMIT_CLIENT':
      return { reason: 'client-pinhole-limit', reply: formatReply(codes.CANT_OPEN_DATA, "Can't open data connection: too many open from your address.") };
    case 'ERR_ALG_PORT_IN_USE':
      return { reason: 'ports-in-use', reply: formatReply(codes.CANT_OPEN_DATA, "Can't open data connection: no free port.") };
    case 'ERR_ALG_KERNEL':
      return { reason: 'kernel-error', reply: LOCAL.cantOpen };
    default:
      return { reason: 'bind-failed', reply: LOCAL.cantOpen };
  }
}

const FAREWELLS: Partial<Record<EndReason, Reply>> = {
  'upstream-connect-failed': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service not available, upstream unreachable.' },
  'upstream-connect-timeout': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service not available, upstream unreachable.' },
  'upstream-closed-greeting': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service not available, upstream closed.' },
  'upstream-error': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Upstream connection lost.' },
  'upstream-line-too-long': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Upstream sent an invalid reply.' },
  'upstream-tls-failed': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service not available, TLS to the upstream failed.' },
  'greeting-timeout': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service not available, upstream did not greet.' },
  'login-timeout': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Login timeout, closing control connection.' },
  'control-idle': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Idle timeout, closing control connection.' },
  'too-many-pipelined': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Too many commands without reply.' },
  'ftps-denied': { code: codes.AUTH_REFUSED_POLICY, text: 'Request denied for policy reasons: TLS not available through this gateway.' },
  drained: { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service closing for maintenance, please reconnect.' },
  evicted: { code: codes.SERVICE_NOT_AVAILABLE, text: 'Too many connections from your address, closing an idle one.' },
  shutdown: { code: codes.SERVICE_NOT_AVAILABLE, text: 'Service shutting down.' },
  'internal-error': { code: codes.SERVICE_NOT_AVAILABLE, text: 'Internal error, closing control connection.' },
};

/** What the client is told when its session ends for `reason`; undefined: nothing. */
export function farewellFor(reason: EndReason): Buffer | undefined {
  const reply = FAREWELLS[reason];
  return reply === undefined ? undefined : formatReply(reply.code, reply.text);
}

/** Refusing a connection before any session exists (limits, allow/deny, no upstream). */
export const CONNECTION_REFUSED = formatReply(codes.SERVICE_NOT_AVAILABLE, 'Service not available, too many connections or not allowed.');
