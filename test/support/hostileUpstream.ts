/**
 * The fake FTP upstream of the tests: it really transfers data, in both
 * modes, and can misbehave on cue: it answers PASV/EPSV with whatever
 * 227/229 a test writes, refuses any verb with a chosen code (an old server
 * without EPSV/EPRT), lists the FEAT lines a test gives, connects wherever
 * a PORT/EPRT says (at once, if asked: a hostile upstream), lets a test
 * take over any reply, and lets a test serve a data connection its own way
 * (stall, reset half way). Built on the scripted upstream
 * (test/support/scripted.ts), so every line it received is on record.
 *
 * Replies are written in the order of the commands; a transfer runs in the
 * background (150 first, 226 when the data connection has closed) so that
 * ABOR can arrive in the middle, as with a real server.
 */
import net, { type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { parseActiveLine, pasvReply } from './hostPort.js';
import { type ScriptedConnection, startScriptedUpstream } from './scripted.js';

export interface Target {
  readonly host: string;
  readonly port: number;
}

export interface FakeHooks {
  /** Take over the reply to a received line: return the bytes to send (maybe several replies), or undefined for the default. */
  reply?: (line: string, conn: ScriptedConnection) => string | undefined;
  /** The answer to PASV, given the port of the data listener just opened. */
  pasv: (port: number) => string;
  /** The answer to EPSV. */
  epsv: (port: number) => string;
  /** Serve a download over `socket`; default: write `data` and end. */
  retr: (socket: Socket, data: Buffer) => void;
  /** Connect to a PORT/EPRT target as soon as the command arrives (a bouncing upstream), not at the transfer. */
  connectOnPort: boolean;
  /** Verbs answered with this code and nothing else done, e.g. `{ EPSV: 502 }` (an upstream without RFC 2428). */
  refuse: Partial<Record<string, number>>;
  /** FEAT lines (without the leading space) the upstream lists; undefined: FEAT is not implemented (502). */
  feat: readonly string[] | undefined;
}

export interface FakeFtp {
  readonly host: string;
  readonly port: number;
  /** Files RETR serves, by the path as written in the command. */
  readonly files: Map<string, Buffer>;
  /** Files received by STOR (complete or not), by path. */
  readonly uploads: Map<string, Buffer>;
  readonly hooks: FakeHooks;
  readonly connections: ScriptedConnection[];
  connection(): Promise<ScriptedConnection>;
  /** Addresses that connected to the fake's passive data listeners. */
  readonly dataPeers: string[];
  /** Where the fake connected in active mode. */
  readonly activeTargets: Target[];
  /** Resolves when the data connection of a STOR to `path` has closed (FIN or reset), or at once if it has, with what arrived. */
  uploaded(path: string): Promise<Buffer>;
  /** How the data connection of a STOR to `path` ended: the client's FIN ("fin", a complete file) or a reset/error. */
  uploadEnding(path: string): 'fin' | 'reset' | undefined;
  /** Bytes received so far by a STOR to `path`. */
  progress(path: string): number;
  /** Resolves once a STOR to `path` has received at least `n` bytes. */
  progressAtLeast(path: string, n: number): Promise<void>;
  /** Data sockets open now (passive and active). */
  readonly openDataSockets: number;
  /** Drop what is kept about uploads to `path` (long runs). */
  forget(path: string): void;
  /** Reset (RST) every open data connection: the upstream's side of a transfer vanishes. */
  resetDataSockets(): void;
  close(): Promise<void>;
}

interface Transfer {
  socket: Socket | undefined;
  aborted: boolean;
}

interface State {
  queue: Promise<void>;
  passive: { server: Server; socket: Promise<Socket> } | undefined;
  active: Target | undefined;
  transfer: Transfer | undefined;
}

const defaultHooks = (): FakeHooks => ({
  pasv: (port) => pasvReply('127.0.0.1', port),
  epsv: (port) => `229 Entering Extended Passive Mode (|||${port}|)\r\n`,
  retr: (socket, data) => socket.end(data),
  connectOnPort: false,
  refuse: {},
  feat: undefined,
});

export interface FakeFtpOptions {
  /** Sent on connect; null: never greet. */
  readonly greeting?: string | null;
  /** Where the control and passive data listeners are; default 127.0.0.1. */
  readonly host?: string;
}

export async function startFakeFtp(options: FakeFtpOptions = {}): Promise<FakeFtp> {
  const host = options.host ?? '127.0.0.1';
  const files = new Map<string, Buffer>();
  const uploads = new Map<string, Buffer>();
  const uploadWaiters = new Map<string, ((data: Buffer) => void)[]>();
  const uploadProgress = new Map<string, number>();
  const uploadEndings = new Map<string, 'fin' | 'reset'>();
  const progressWaiters: { path: string; n: number; resolve: () => void }[] = [];
  const advance = (path: string, bytes: number) => {
    const total = (uploadProgress.get(path) ?? 0) + bytes;
    uploadProgress.set(path, total);
    for (const w of progressWaiters.filter((x) => x.path === path && total >= x.n)) {
      progressWaiters.splice(progressWaiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const hooks = defaultHooks();
  const dataPeers: string[] = [];
  const activeTargets: Target[] = [];
  const dataSockets = new Set<Socket>();
  const servers = new Set<Server>();
  const states = new WeakMap<ScriptedConnection, State>();

  const track = (socket: Socket): Socket => {
    dataSockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => dataSockets.delete(socket));
    socket.on('end', () => socket.end()); // the peer is done: so is the fake (a STOR reads to here first)
    return socket;
  };

  const scripted = await startScriptedUpstream({
    greeting: options.greeting,
    host,
    respond: (line, conn) => {
      let state = states.get(conn);
      if (state === undefined) {
        const fresh: State = { queue: Promise.resolve(), passive: undefined, active: undefined, transfer: undefined };
        conn.socket.setNoDelay(true); // replies leave at once, as a server's do
        states.set(conn, fresh);
        conn.socket.once('close', () => {
          fresh.passive?.server.close();
          fresh.transfer?.socket?.destroy();
        });
        state = fresh;
      }
      const s = state;
      s.queue = s.queue.then(() => handle(line, conn, s)).catch(() => undefined);
      return undefined;
    },
  });

  async function openPassive(state: State): Promise<number> {
    state.passive?.server.close();
    const server = net.createServer({ allowHalfOpen: true });
    servers.add(server);
    const socket = new Promise<Socket>((resolve) => {
      server.once('connection', (s: Socket) => {
        dataPeers.push(s.remoteAddress ?? '');
        server.close(() => servers.delete(server));
        resolve(track(s));
      });
    });
    server.listen(0, host);
    await once(server, 'listening');
    state.passive = { server, socket };
    return (server.address() as net.AddressInfo).port;
  }

  function connectActive(target: Target): Promise<Socket> {
    activeTargets.push(target);
    const socket = track(net.connect({ host: target.host, port: target.port, allowHalfOpen: true }));
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    });
  }

  /** The data connection of the next transfer, or undefined when none was set up. */
  function dataConnection(state: State): Promise<Socket> | undefined {
    if (state.passive !== undefined) {
      const { socket } = state.passive;
      state.passive = undefined;
      return socket;
    }
    if (state.active !== undefined) {
      const target = state.active;
      state.active = undefined;
      return connectActive(target);
    }
    return undefined;
  }

  function transfer(conn: ScriptedConnection, state: State, serve: (socket: Socket, t: Transfer) => void): string {
    const pending = dataConnection(state);
    if (pending === undefined) return "425 Use PORT or PASV first.\r\n";
    const t: Transfer = { socket: undefined, aborted: false };
    state.transfer = t;
    pending.then(
      (socket) => {
        t.socket = socket;
        if (t.aborted) return socket.destroy();
        socket.once('close', () => {
          if (state.transfer === t) state.transfer = undefined;
          if (!t.aborted) conn.write('226 Transfer complete.\r\n');
        });
        serve(socket, t);
      },
      () => {
        if (state.transfer === t) state.transfer = undefined;
        conn.write("425 Can't open data connection.\r\n");
      },
    );
    return '150 Opening data connection.\r\n';
  }

  async function handle(line: string, conn: ScriptedConnection, state: State): Promise<void> {
    const taken = hooks.reply?.(line, conn);
    if (taken !== undefined) return conn.write(taken);
    const text = line.replace(/\xff[\xfb-\xfe]./g, '').replace(/\xff./g, '').trim(); // Telnet commands out, as servers do
    const space = text.indexOf(' ');
    const verb = (space === -1 ? text : text.slice(0, space)).toUpperCase();
    const arg = space === -1 ? '' : text.slice(space + 1).trim();
    conn.write(await answer(verb, arg, conn, state));
    if (verb === 'QUIT') conn.socket.end();
  }

  async function answer(verb: string, arg: string, conn: ScriptedConnection, state: State): Promise<string> {
    const refusal = hooks.refuse[verb];
    if (refusal !== undefined) return `${refusal} ${verb} not understood.\r\n`;
    switch (verb) {
      case 'FEAT':
        if (hooks.feat === undefined) return '502 Command not implemented.\r\n';
        return `211-Features:\r\n${hooks.feat.map((f) => ` ${f}\r\n`).join('')}211 End\r\n`;
      case 'USER':
        return '331 Password required.\r\n';
      case 'PASS':
        return '230 Logged in.\r\n';
      case 'TYPE':
      case 'MODE':
      case 'STRU':
        return '200 OK.\r\n';
      case 'NOOP':
        return '200 NOOP ok.\r\n';
      case 'SYST':
        return '215 UNIX Type: L8\r\n';
      case 'REIN':
        return '220 Service ready for new user.\r\n';
      case 'QUIT':
        return '221 Goodbye.\r\n';
      case 'PASV':
        return hooks.pasv(await openPassive(state));
      case 'EPSV':
        return hooks.epsv(await openPassive(state));
      case 'PORT':
      case 'EPRT': {
        const target = activeTarget(`${verb} ${arg}`);
        if (target === undefined) return '501 Bad argument.\r\n';
        state.passive?.server.close();
        state.passive = undefined;
        state.active = target;
        if (hooks.connectOnPort) {
          state.active = undefined;
          connectActive(target).then((s) => s.end('bounced\r\n'), () => undefined);
        }
        return '200 PORT command successful.\r\n';
      }
      case 'RETR': {
        const data = files.get(arg);
        if (data === undefined) return '550 No such file.\r\n';
        return transfer(conn, state, (socket) => hooks.retr(socket, data));
      }
      case 'STOR':
        return transfer(conn, state, (socket) => {
          const chunks: Buffer[] = [];
          uploadProgress.set(arg, 0);
          uploadEndings.delete(arg);
          socket.on('data', (c: Buffer) => {
            chunks.push(c);
            advance(arg, c.length);
          });
          const done = () => {
            const data = Buffer.concat(chunks);
            uploads.set(arg, data);
            for (const w of uploadWaiters.get(arg)?.splice(0) ?? []) w(data);
          };
          socket.once('end', () => {
            if (!uploadEndings.has(arg)) uploadEndings.set(arg, 'fin');
            socket.end();
          });
          socket.once('error', () => {
            if (!uploadEndings.has(arg)) uploadEndings.set(arg, 'reset');
          });
          socket.once('close', () => {
            if (!uploadEndings.has(arg)) uploadEndings.set(arg, 'reset');
            done();
          });
        });
      case 'ABOR': {
        const t = state.transfer;
        if (t === undefined) return '226 No transfer to abort.\r\n';
        t.aborted = true;
        t.socket?.destroy();
        state.transfer = undefined;
        return '426 Transfer aborted.\r\n226 ABOR successful.\r\n';
      }
      default:
        return '502 Command not implemented.\r\n';
    }
  }

  return {
    host: scripted.host,
    port: scripted.port,
    files,
    uploads,
    hooks,
    connections: scripted.connections,
    connection: () => scripted.connection(),
    dataPeers,
    activeTargets,
    uploaded(path) {
      const done = uploads.get(path);
      if (done !== undefined) return Promise.resolve(done);
      return new Promise((resolve) => {
        const list = uploadWaiters.get(path) ?? [];
        list.push(resolve);
        uploadWaiters.set(path, list);
      });
    },
    progress: (path) => uploadProgress.get(path) ?? 0,
    uploadEnding: (path) => uploadEndings.get(path),
    progressAtLeast: (path, n) =>
      (uploadProgress.get(path) ?? 0) >= n ? Promise.resolve() : new Promise((resolve) => progressWaiters.push({ path, n, resolve })),
    get openDataSockets() {
      return dataSockets.size;
    },
    forget(path) {
      uploads.delete(path);
      uploadProgress.delete(path);
      uploadEndings.delete(path);
      uploadWaiters.delete(path);
    },
    resetDataSockets() {
      for (const socket of dataSockets) socket.resetAndDestroy();
    },
    async close() {
      for (const s of dataSockets) s.destroy();
      for (const server of servers) server.close();
      await scripted.close();
    },
  };
}

function activeTarget(line: string): Target | undefined {
  try {
    const { address, port } = parseActiveLine(line);
    return { host: address, port };
  } catch {
    return undefined; // a server answers 501
  }
}

/** The data-connection commands (PASV, EPSV, PORT, EPRT) among the lines an upstream received. */
export function dataCommands(lines: readonly string[]): string[] {
  return lines.filter((l) => /^(PASV|EPSV|PORT|EPRT)\b/i.test(l));
}

/** A PASV hook whose 227 names `address` (what a server behind NAT writes) and the fake's real data port. */
export function pasvNaming(address: string): (port: number) => string {
  return (port) => pasvReply(address, port);
}
