// A control-loop probe in its own worker thread (see opsProbe.ts): a tiny
// scripted upstream and a raw control client, both on this thread's event
// loop, so a NOOP round trip through the gateway is not delayed by the test
// thread's own work (bulk clients, the bulk upstream).
import net from 'node:net';
import { parentPort } from 'node:worker_threads';

const MAX_PROBES = 5_000;
const PACE_MS = 2;
const answers = { USER: '230 probe logged in\r\n', NOOP: '200 NOOP ok\r\n', QUIT: '221 bye\r\n' };

const upstream = net.createServer((socket) => {
  socket.on('error', () => undefined);
  socket.write('220 probe upstream\r\n');
  let partial = '';
  socket.on('data', (chunk) => {
    partial += chunk.toString('latin1');
    for (let lf = partial.indexOf('\n'); lf !== -1; lf = partial.indexOf('\n')) {
      const verb = partial.slice(0, lf).trim().split(' ')[0].toUpperCase();
      partial = partial.slice(lf + 1);
      socket.write(answers[verb] ?? '502 not here\r\n');
    }
  });
});
upstream.listen(0, '127.0.0.1', () => parentPort.postMessage({ t: 'upstream', port: upstream.address().port }));

let client;
let unread = '';
let waiter;
let running = false;

/** The next whole reply line (single-line replies only: this upstream sends no other). */
function nextLine() {
  return new Promise((resolve) => {
    const take = () => {
      const lf = unread.indexOf('\n');
      if (lf === -1) return false;
      const line = unread.slice(0, lf).replace(/\r$/, '');
      unread = unread.slice(lf + 1);
      resolve(line);
      return true;
    };
    if (!take()) waiter = take;
  });
}

async function connect(port) {
  client = net.connect({ host: '127.0.0.1', port });
  client.setNoDelay(true);
  client.on('error', () => undefined);
  client.on('data', (chunk) => {
    unread += chunk.toString('latin1');
    if (waiter !== undefined && waiter()) waiter = undefined;
  });
  const greeting = await nextLine();
  client.write('USER probe\r\n');
  const login = await nextLine();
  parentPort.postMessage({ t: 'ready', greeting, login });
}

async function probe(count) {
  const rtts = [];
  const codes = [];
  for (let i = 0; i < count && running; i++) {
    const t = performance.now();
    client.write('NOOP\r\n');
    const line = await nextLine();
    rtts.push(performance.now() - t);
    codes.push(Number(line.slice(0, 3)));
    await new Promise((resolve) => setTimeout(resolve, PACE_MS)); // spread the probes; let a 'stop' in
  }
  running = false;
  parentPort.postMessage({ t: 'samples', rtts, codes });
}

parentPort.on('message', (m) => {
  if (m.t === 'connect') void connect(m.port);
  else if (m.t === 'start') {
    running = true;
    void probe(Math.min(m.count ?? MAX_PROBES, MAX_PROBES));
  } else if (m.t === 'stop') running = false;
  else if (m.t === 'close') {
    client?.destroy();
    upstream.close(() => parentPort.close());
  }
});
