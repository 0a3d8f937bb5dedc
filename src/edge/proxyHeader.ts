/**
 * The PROXY protocol at the edge. On the listener: a connection from a
 * trusted balancer must begin with a header naming the client, within a
 * deadline; anything else is closed before any FTP is spoken. Toward the
 * upstream: the header naming the client, written first on a connection.
 */
import type { Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import { matchesCidr, normalise } from '../common/address.js';
import {
  formatProxyHeader,
  parseProxyHeader,
  proxyHeaderFor,
  type ProxyAccept,
  type ProxyEndpoint,
  type ProxyHeader,
  type ProxyRefusal,
} from '../common/proxyProtocol.js';
import type { DataPlane, LegRequest } from '../data/DataPlane.js';

/** Why a connection never got past its header. */
export type HeaderFailure =
  /** The connection does not come from a trusted balancer: nothing was read. */
  | { readonly kind: 'untrusted' }
  | { readonly kind: 'timeout'; readonly received: number }
  /** The peer closed before a whole header; `received` 0 is a bare TCP check, not news. */
  | { readonly kind: 'truncated'; readonly received: number }
  | { readonly kind: 'invalid'; readonly reason: ProxyRefusal };

export type HeaderOutcome = { readonly ok: true; readonly header: ProxyHeader } | { readonly ok: false; readonly failure: HeaderFailure };

export interface HeaderOptions {
  readonly accept: ProxyAccept;
  readonly timeoutMs: number;
}

export function isTrustedProxy(address: string, trusted: readonly string[]): boolean {
  if (address === '') return false;
  const addr = ipaddr.process(address);
  return trusted.some((cidr) => matchesCidr(addr, cidr));
}

/**
 * Read the header of a connection accepted with `pauseOnConnect` (from a
 * trusted balancer: check `isTrustedProxy` first). On success
 * the socket is paused again with the bytes after the header put back, so the
 * session reads the client's first line as if nothing had come before it.
 * Returns a cancel function (the socket is destroyed, `done` is not called).
 */
export function receiveProxyHeader(socket: Socket, options: HeaderOptions, done: (outcome: HeaderOutcome) => void): () => void {
  let received = Buffer.alloc(0);
  let finished = false;
  const finish = (outcome: HeaderOutcome | undefined) => {
    finished = true;
    clearTimeout(timer);
    socket.off('data', onData).off('end', onClosed).off('close', onClosed).off('error', onClosed);
    if (outcome !== undefined) done(outcome);
  };
  const fail = (failure: HeaderFailure) => finish({ ok: false, failure });
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const r = parseProxyHeader(received, options.accept);
    if (r.kind === 'more') return;
    if (r.kind === 'refused') return fail({ kind: 'invalid', reason: r.reason });
    socket.pause();
    if (r.consumed < received.length) socket.unshift(received.subarray(r.consumed));
    finish({ ok: true, header: r.header });
  };
  const onClosed = () => fail({ kind: 'truncated', received: received.length });
  const timer = setTimeout(() => fail({ kind: 'timeout', received: received.length }), options.timeoutMs);
  socket.on('data', onData).once('end', onClosed).once('close', onClosed).once('error', onClosed);
  socket.resume();
  return () => {
    if (finished) return;
    finish(undefined);
    socket.destroy();
  };
}

/** The client a header names; undefined for LOCAL, UNKNOWN or other families (the socket's peer is then the client). */
export function carriedClient(header: ProxyHeader | undefined): ProxyEndpoint | undefined {
  const source = header?.addresses?.source;
  return source === undefined ? undefined : { address: normalise(source.address), port: source.port };
}

/**
 * The header an upstream connection gets for a client connection: as carried
 * by the balancer's header when it named the client, else the client socket's
 * peer and the address it connected to.
 */
export function upstreamHeader(version: 1 | 2, client: Socket, carried: ProxyHeader | undefined): Buffer {
  if (carried?.addresses === undefined) return proxyHeaderFor(version, client);
  return formatProxyHeader({ version, command: 'proxy', addresses: carried.addresses, tlvs: [] });
}

/** A data plane whose connections to the upstream begin with a PROXY header naming the client's end of the data connection. */
export function withUpstreamDataHeader(plane: DataPlane, version: 1 | 2): DataPlane {
  const mark = (leg: LegRequest): LegRequest => (leg.kind === 'connect' ? { ...leg, proxyHeader: version } : leg);
  const forward = plane.forward?.bind(plane);
  return {
    ...(forward !== undefined && { forward }),
    kind: plane.kind,
    shards: plane.shards,
    start: () => plane.start?.() ?? Promise.resolve(),
    pinhole: (request) => plane.pinhole({ ...request, upstream: mark(request.upstream) }),
    metricsJson: () => plane.metricsJson(),
    close: () => plane.close(),
  };
}
