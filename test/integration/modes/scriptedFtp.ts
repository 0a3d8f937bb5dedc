/**
 * A scripted upstream that speaks just enough FTP for the mode tests: it
 * logs anyone in, answers PASV/EPSV with its data listener's port (or
 * refuses EPSV/EPRT with a chosen code, like an old server), accepts
 * PORT/EPRT and, like a real server, may connect to the address they name.
 * Every line it received stays in `connection.lines`, so a test can assert
 * what the gateway really sent upstream.
 */
import type { Responder, ScriptedConnection } from '../../support/scripted.js';
import { startScriptedUpstream } from '../../support/scripted.js';
import { type Dialled, dial } from './dataPeers.js';
import { parseActiveLine, pasvReply } from '../../support/hostPort.js';

export interface FtpScript {
  /** Port named in 227/229 replies (the upstream's passive data listener). */
  readonly dataPort?: number;
  /** Address written into 227 replies; the gateway must ignore it. Default a private one. */
  readonly pasvAddress?: string;
  /** EPSV: answered with 229, or refused with this code (500, 502, 522…). */
  readonly epsv?: 'ok' | number;
  /** EPRT: accepted, or refused with this code. */
  readonly eprt?: 'ok' | number;
  /** PASV: answered with 227, or refused with this code. */
  readonly pasv?: 'ok' | number;
  /** FEAT lines the upstream lists (each without the leading space). */
  readonly feat?: readonly string[];
  /** After an accepted PORT/EPRT, connect to the address it names and send these bytes (a server's RETR). */
  readonly activeSend?: Buffer;
}

export interface ScriptedFtp {
  readonly respond: Responder;
  /** Data connections the upstream made after PORT/EPRT, in order. */
  readonly dialled: Promise<Dialled>[];
}

const DEFAULT_FEAT = ['AUTH TLS', 'PBSZ', 'PROT', 'SIZE', 'MDTM', 'UTF8'];

export function scriptedFtp(script: FtpScript = {}): ScriptedFtp {
  const dialled: Promise<Dialled>[] = [];
  const dataPort = script.dataPort ?? 2121;
  const respond: Responder = (line: string, conn: ScriptedConnection) => {
    const verb = (line.split(' ')[0] ?? '').toUpperCase();
    switch (verb) {
      case 'USER':
        return '331 Password required.\r\n';
      case 'PASS':
        return '230 Logged in.\r\n';
      case 'PASV':
        if (script.pasv !== undefined && script.pasv !== 'ok') return `${script.pasv} PASV refused.\r\n`;
        return pasvReply(script.pasvAddress ?? '10.9.8.7', dataPort);
      case 'EPSV':
        if (script.epsv !== undefined && script.epsv !== 'ok') return `${script.epsv} EPSV not understood.\r\n`;
        return `229 Entering Extended Passive Mode (|||${dataPort}|)\r\n`;
      case 'PORT':
      case 'EPRT': {
        if (verb === 'EPRT' && script.eprt !== undefined && script.eprt !== 'ok') return `${script.eprt} EPRT not understood.\r\n`;
        if (script.activeSend !== undefined) {
          const target = parseActiveLine(line);
          dialled.push(dial(target.address, target.port, { localAddress: conn.socket.localAddress, send: script.activeSend }));
        }
        return `200 ${verb} command successful.\r\n`;
      }
      case 'FEAT': {
        const lines = (script.feat ?? DEFAULT_FEAT).map((f) => ` ${f}\r\n`).join('');
        return `211-Features:\r\n${lines}211 End\r\n`;
      }
      case 'RETR':
      case 'LIST':
      case 'NLST':
      case 'STOR':
        return '150 Opening data connection.\r\n';
      case 'ABOR':
        return '226 Abort successful.\r\n';
      case 'REIN':
        return '220 Service ready for new user.\r\n';
      case 'QUIT':
        conn.write('221 Goodbye.\r\n');
        conn.socket.end(); // a server closes the control connection after 221
        return undefined;
      default:
        return '200 OK.\r\n';
    }
  };
  return { respond, dialled };
}

/** The data-connection commands (PASV, EPSV, PORT, EPRT) among the lines an upstream received. */
export function dataCommands(lines: readonly string[]): string[] {
  return lines.filter((l) => /^(PASV|EPSV|PORT|EPRT)\b/i.test(l));
}

export interface ScriptedFtpServer {
  readonly host: string;
  readonly port: number;
  /** Lines received on the first control connection, terminators removed. */
  readonly lines: string[];
  readonly dialled: Promise<Dialled>[];
  close(): Promise<void>;
}

/** The same script on a listener of any address: an IPv6 upstream on ::1. */
export async function startScriptedFtpOn(host: string, script: FtpScript = {}): Promise<ScriptedFtpServer> {
  const { respond, dialled } = scriptedFtp(script);
  const upstream = await startScriptedUpstream({ host, respond });
  return {
    host,
    port: upstream.port,
    get lines() {
      return upstream.connections[0]?.lines ?? [];
    },
    dialled,
    close: () => upstream.close(),
  };
}
