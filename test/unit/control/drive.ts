/**
 * Drives the sans-IO control core in tests: events in, actions out as short
 * readable strings (`U> PASV`, `C< 227 ...`, `open#1 ...`), so each table
 * row states a whole exchange.
 */
import { ControlProtocol } from '../../../src/control/protocol.js';
import type { LineFault } from '../../../src/ftp/lineSplitter.js';
import type { Action, ControlSettings, LegSpec } from '../../../src/control/types.js';

export const CLIENT4 = { address: '198.51.100.7', local: '203.0.113.1' };
export const CLIENT6 = { address: '2001:db8:1::7', local: '2001:db8:1::1' };
export const UPSTREAM4 = { address: '192.0.2.10', local: '192.0.2.1' };
export const UPSTREAM6 = { address: '2001:db8:2::10', local: '2001:db8:2::1' };

export const SETTINGS: ControlSettings = {
  activeMode: { enabled: true, clientAddress: 'strict', sourcePort20: false },
  upstreamDataMode: 'client',
  externalAddress: 'auto',
  privateAddress: 'auto',
  ftps: 'refuse',
  tls: undefined,
};

function leg(l: LegSpec): string {
  return l.kind === 'listen' ? `listen(${l.pool} ${l.host} peer ${l.expectedPeer})` : `connect(${l.host}:${l.port})`;
}

export function show(a: Action): string {
  switch (a.type) {
    case 'toClient':
      return `C< ${a.line.toString('latin1').replace(/\r\n$/, '')}`;
    case 'toUpstream':
      return `U> ${a.line.toString('latin1').replace(/\r\n$/, '')}`;
    case 'openPinhole': {
      const { id, dir, client, upstream, tls } = a.spec;
      return `open#${id} ${dir} client=${leg(client)} upstream=${leg(upstream)}${tls.client || tls.upstream ? ` tls=${tls.client ? 'C' : '-'}${tls.upstream ? 'U' : '-'}` : ''}`;
    }
    case 'openForward':
      return `forward#${a.spec.id} ${a.spec.client} -> ${a.spec.server}:${a.spec.port}`;
    case 'closePinholes':
      return `close ${a.which} ${a.reason}`;
    case 'label':
      return `label ${a.verb}`;
    case 'note': {
      const n = a.note;
      if (n.kind === 'refused') return `note refused ${n.verb} ${n.reason}`;
      if (n.kind === 'rejected') return `note rejected ${n.side} ${n.reason}`;
      if (n.kind === 'pinhole-refused') return `note pinhole-refused ${n.reason}`;
      return `note discarded ${n.side} ${n.reason} ${n.lines}`;
    }
    case 'end':
      return `end ${a.reason}${a.farewell === undefined ? '' : ` | ${a.farewell.toString('latin1').replace(/\r\n$/, '')}`}`;
    case 'route':
      return `route ${a.verb} ${a.arg}`;
    case 'upstreamRefused':
      return `upstream refused | ${a.reply.toString('latin1').replace(/\r\n$/, '')}`;
    default:
      return a.type;
  }
}

/** A core and a log of everything it asked for. */
export class Driver {
  readonly core: ControlProtocol;
  readonly log: string[] = [];

  constructor(
    settings: Partial<ControlSettings> = {},
    client = CLIENT4,
  ) {
    this.core = new ControlProtocol({ ...SETTINGS, ...settings }, client);
  }

  /** Connected to `upstream`, greeted with 220 (and, with upstream TLS, set up): the session is ready. */
  static ready(settings: Partial<ControlSettings> = {}, client = CLIENT4, upstream = UPSTREAM4): Driver {
    const d = new Driver(settings, client);
    d.record(d.core.upstreamConnected(upstream));
    d.upstream('220 hello');
    d.log.length = 0;
    return d;
  }

  private record(actions: Action[]): string[] {
    const shown = actions.map(show);
    this.log.push(...shown);
    return shown;
  }

  /** Client lines (CRLF added). */
  client(...lines: string[]): string[] {
    return lines.flatMap((l) => this.record(this.core.clientLine(Buffer.from(`${l}\r\n`, 'latin1'))));
  }

  upstream(...lines: string[]): string[] {
    return lines.flatMap((l) => this.record(this.core.upstreamLine(Buffer.from(`${l}\r\n`, 'latin1'))));
  }

  fault(kind: LineFault): string[] {
    return this.record(this.core.clientFault(kind));
  }

  opened(id: number, ports: { client?: number; upstream?: number }): string[] {
    return this.record(this.core.pinholeOpened(id, { client: ports.client, upstream: ports.upstream }));
  }

  failed(id: number, code: string): string[] {
    return this.record(this.core.pinholeFailed(id, code));
  }

  start(): string[] {
    return this.record(this.core.start());
  }

  routed(user: string | undefined): string[] {
    return this.record(this.core.routed(user));
  }

  routeRefused(reply: string, end = false): string[] {
    return this.record(this.core.routeRefused(Buffer.from(`${reply}\r\n`, 'latin1'), end));
  }

  connected(upstream = UPSTREAM4): string[] {
    return this.record(this.core.upstreamConnected(upstream));
  }

  clientSecured(): string[] {
    return this.record(this.core.clientSecured());
  }

  upstreamSecured(): string[] {
    return this.record(this.core.upstreamSecured());
  }

  /** Forget what was logged so far. */
  clear(): this {
    this.log.length = 0;
    return this;
  }
}
