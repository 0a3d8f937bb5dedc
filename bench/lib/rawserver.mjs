// The raw upstream, in the server namespace: a scripted FTP control port
// (greeting, USER/PASS, PASV, NOOP, QUIT; every other command gets 200) and
// plain TCP data ports, the 227s naming them in turn (like a real server's
// passive range; the haproxy variant uses the first one directly). A data connection starts
// with 9 bytes from the client: 'S' + u64 n (the server sends n zero bytes,
// then FIN) or 'K' + u64 0 (the server reads until FIN, answers the u64
// count, then FIN); 'P' and 'H' are the same with the verified pattern: 'P'
// sends it, 'H' answers the count and the sha256 of what it read. It also holds the 10,000 idle sessions of the memory figure.
//
// Usage: node rawserver.mjs HOST CTL_PORT DATA_PORT [DATA_PORTS]   (prints "ready")
import net from 'node:net';
import { createHash } from 'node:crypto';
import { adopt, sendPattern, sendZeros, sinkOnread, u64 } from './fastio.mjs';

const [host = '192.0.2.10', ctlPortArg = '2121', dataPortArg = '45000', dataPortsArg = '256'] = process.argv.slice(2);
const ctlPort = Number(ctlPortArg);
const dataPorts = Array.from({ length: Number(dataPortsArg) }, (_, i) => Number(dataPortArg) + i);
let nextData = 0;
const pasv = () => {
  const port = dataPorts[nextData++ % dataPorts.length];
  return `227 Entering Passive Mode (${host.replaceAll('.', ',')},${port >> 8},${port & 255}).\r\n`;
};

const control = net.createServer({ noDelay: true }, (socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  socket.write('220 raw bench upstream\r\n');
  let pending = '';
  socket.on('data', (chunk) => {
    pending += chunk.toString('latin1');
    let eol;
    while ((eol = pending.indexOf('\r\n')) >= 0) {
      const line = pending.slice(0, eol);
      pending = pending.slice(eol + 2);
      const verb = line.split(' ', 1)[0].toUpperCase();
      if (verb === 'USER') socket.write('331 Any password.\r\n');
      else if (verb === 'PASS') socket.write('230 Logged in.\r\n');
      else if (verb === 'PASV') socket.write(pasv());
      else if (verb === 'QUIT') socket.end('221 Bye.\r\n');
      else socket.write('200 OK.\r\n');
    }
    if (pending.length > 4096) socket.destroy();
  });
});
control.maxConnections = 1_000_000;

const onData = (accepted) => {
  const header = Buffer.alloc(9);
  let have = 0;
  let received = 0;
  let mode = '';
  let hash;
  const socket = adopt(accepted, sinkOnread((buf, n) => {
    let at = 0;
    if (have < 9) {
      at = Math.min(9 - have, n);
      buf.copy(header, have, 0, at);
      have += at;
      if (have === 9) begin();
    }
    received += n - at;
    if (hash !== undefined && n > at) hash.update(buf.subarray(at, n));
  }));
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  function begin() {
    mode = String.fromCharCode(header[0]);
    const n = Number(header.readBigUInt64BE(1));
    if (mode === 'S') sendZeros(socket, n, () => socket.end());
    else if (mode === 'P') sendPattern(socket, n, () => socket.end());
    else if (mode === 'H') hash = createHash('sha256');
  }
  socket.on('end', () => {
    if (mode === 'K') socket.end(u64(received));
    else if (mode === 'H') socket.end(Buffer.concat([u64(received), hash.digest()]));
    else if (mode !== 'S' && mode !== 'P') socket.end();
  });
};

const servers = [control, ...dataPorts.map(() => net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onData))];
let listening = 0;
const ready = () => {
  if (++listening === servers.length) process.stdout.write('ready\n');
};
control.listen({ host, port: ctlPort, backlog: 65535 }, ready);
dataPorts.forEach((port, i) => servers[i + 1].listen({ host, port, backlog: 65535 }, ready));
for (const s of servers) s.on('error', (err) => {
  process.stderr.write(`rawserver: ${err.message}\n`);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
