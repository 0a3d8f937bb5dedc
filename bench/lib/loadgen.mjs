// Load for bench/fairness.mjs, in a process of its own (so that its work is
// not counted in the measuring process). Prints one JSON line and exits;
// every mode is bounded by --seconds (and a hard stop 10 s after it).
//
//   connect   --target H:P --rate R --seconds S     new connections at R/s, each closed at its first reply
//   pasv      --target H:P --sessions C --seconds S  C logged-in sessions sending PASV back to back
//   transfers --target H:P --flows N --seconds S --bytes B
//             N sessions, each looping PASV + one download of B bytes from the raw upstream
import net from 'node:net';
import { parseArgs } from 'node:util';
import { sinkOnread, u64 } from './fastio.mjs';

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string' },
    rate: { type: 'string', default: '2000' },
    sessions: { type: 'string', default: '32' },
    flows: { type: 'string', default: '64' },
    bytes: { type: 'string', default: String(64 * 1024 * 1024) },
    seconds: { type: 'string', default: '10' },
    'max-in-flight': { type: 'string', default: '3000' },
  },
});

const [host, portText] = [opt.target.slice(0, opt.target.lastIndexOf(':')), opt.target.slice(opt.target.lastIndexOf(':') + 1)];
const target = { host, port: Number(portText) };
const seconds = Number(opt.seconds);
/** The load runs for --seconds from when its sessions are set up. */
let deadline = performance.now() + seconds * 1000;
const startClock = () => {
  deadline = performance.now() + seconds * 1000;
};
setTimeout(() => finish({ error: 'hard stop' }), (seconds + 30) * 1000).unref();

function finish(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

/** A control connection reading whole single-line replies (enough for the raw upstream through the gateway). */
function control() {
  const socket = net.connect({ ...target, noDelay: true });
  let pending = '';
  const waiters = [];
  const replies = [];
  socket.on('data', (c) => {
    pending += c.toString('latin1');
    let eol;
    while ((eol = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, eol).replace(/\r$/, '');
      pending = pending.slice(eol + 1);
      if (/^\d{3}-/.test(line)) continue;
      const w = waiters.shift();
      if (w !== undefined) w.resolve(line);
      else replies.push(line);
    }
  });
  const fail = (err) => {
    for (const w of waiters.splice(0)) w.reject(err);
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('closed')));
  const next = () => (replies.length > 0 ? Promise.resolve(replies.shift()) : new Promise((resolve, reject) => waiters.push({ resolve, reject })));
  const cmd = (line) => {
    socket.write(`${line}\r\n`);
    return next();
  };
  return { socket, next, cmd };
}

async function loggedIn() {
  const c = control();
  const greeting = await c.next();
  if (!greeting.startsWith('220')) throw new Error(greeting);
  await c.cmd('USER bench');
  const pass = await c.cmd('PASS bench');
  if (!pass.startsWith('230')) throw new Error(pass);
  return c;
}

function port227(line) {
  const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(line);
  if (m === null) throw new Error(`bad 227: ${line}`);
  return { host: `${m[1]}.${m[2]}.${m[3]}.${m[4]}`, port: Number(m[5]) * 256 + Number(m[6]) };
}

async function connectFlood() {
  const perTick = Number(opt.rate) / 100;
  const maxInFlight = Number(opt['max-in-flight']);
  const counts = { started: 0, greeted: 0, refused: 0, errors: 0, skipped: 0 };
  let inFlight = 0;
  let owed = 0;
  const began = performance.now();
  const one = () => {
    counts.started++;
    inFlight++;
    const s = net.connect(target);
    let done = false;
    const end = (kind) => {
      if (done) return;
      done = true;
      inFlight--;
      counts[kind]++;
      s.destroy();
    };
    s.once('data', (c) => end(c.toString('latin1').startsWith('220') ? 'greeted' : 'refused'));
    s.once('error', () => end('errors'));
    s.once('close', () => end('errors'));
  };
  let last = began;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (now >= deadline) {
        clearInterval(timer);
        return resolve();
      }
      owed += (perTick * (now - last)) / 10; // by the clock: a late tick owes more
      last = now;
      while (owed >= 1) {
        owed--;
        if (inFlight >= maxInFlight) counts.skipped++;
        else one();
      }
    }, 10);
  });
  const elapsed = (performance.now() - began) / 1000;
  finish({ mode: 'connect', ...counts, seconds: elapsed, ratePerSecond: counts.started / elapsed, completedPerSecond: (counts.greeted + counts.refused) / elapsed });
}

async function pasvFlood() {
  const sessions = await Promise.all(Array.from({ length: Number(opt.sessions) }, () => loggedIn()));
  startClock();
  let pasvs = 0;
  const began = performance.now();
  await Promise.all(
    sessions.map(async (c) => {
      while (performance.now() < deadline) {
        const r = await c.cmd('PASV');
        if (r.startsWith('227')) pasvs++;
      }
      c.socket.destroy();
    }),
  );
  const elapsed = (performance.now() - began) / 1000;
  finish({ mode: 'pasv', sessions: sessions.length, pasvs, perSecond: pasvs / elapsed });
}

function download(where, bytes) {
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = net.connect({ ...where, onread: sinkOnread((_buf, n) => (got += n)) });
    s.once('connect', () => s.write(Buffer.concat([Buffer.from('S'), u64(bytes)])));
    s.once('error', reject);
    s.once('end', () => {
      s.destroy();
      if (got === bytes) resolve(got);
      else reject(new Error(`short: ${got} of ${bytes}`));
    });
  });
}

async function transfers() {
  const bytes = Number(opt.bytes);
  const sessions = await Promise.all(Array.from({ length: Number(opt.flows) }, () => loggedIn()));
  startClock();
  let total = 0;
  let done = 0;
  let failed = 0;
  const began = performance.now();
  await Promise.all(
    sessions.map(async (c) => {
      while (performance.now() < deadline) {
        try {
          const where = port227(await c.cmd('PASV'));
          total += await download(where, bytes);
          done++;
        } catch {
          failed++;
        }
      }
      c.socket.destroy();
    }),
  );
  const elapsed = (performance.now() - began) / 1000;
  finish({ mode: 'transfers', flows: sessions.length, transfers: done, failed, gbitPerSecond: (total * 8) / elapsed / 1e9 });
}

const modes = { connect: connectFlood, pasv: pasvFlood, transfers };
const mode = modes[positionals[0]];
if (mode === undefined) {
  process.stderr.write(`usage: loadgen.mjs connect|pasv|transfers --target H:P ...\n`);
  process.exit(64);
}
mode().catch((err) => finish({ error: String(err?.message ?? err) }));
