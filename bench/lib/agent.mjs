// The client side of every bench figure except curl's, in the client
// namespace. Each subcommand prints one JSON line and exits.
//
//   flows    --ctl H:P | --direct H:P  --down N --up N --bytes B [--verify]
//   sessions --ctl H:P --concurrency C --duration-ms D [--max N]
//   noop     --ctl H:P --count N [--warmup N]
//   idle     --ctl H:P --n N [--concurrency C] [--hold-ms MS]   (holds until stdin ends)
//   paced    --ctl H:P --gap-ms G --duration-ms D   (one session every G ms: greeting, login, QUIT)
import net from 'node:net';
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { patternHash, sendPattern, sendZeros, sinkOnread, u64 } from './fastio.mjs';

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    ctl: { type: 'string' },
    direct: { type: 'string' },
    down: { type: 'string', default: '0' },
    up: { type: 'string', default: '0' },
    bytes: { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '1' },
    'duration-ms': { type: 'string', default: '3000' },
    max: { type: 'string', default: '1000000' },
    count: { type: 'string', default: '1000' },
    warmup: { type: 'string', default: '100' },
    n: { type: 'string', default: '100' },
    'hold-ms': { type: 'string', default: '120000' },
    'gap-ms': { type: 'string', default: '450' },
    'timeout-ms': { type: 'string', default: '120000' },
    verify: { type: 'boolean', default: false },
    user: { type: 'string', default: 'anonymous' },
    pass: { type: 'string', default: 'bench@example.org' },
  },
});

const hostPort = (s) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};

// ---- a minimal FTP control client -------------------------------------

class Control {
  static open(target) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ ...target, noDelay: true });
      const ctl = new Control(socket);
      socket.once('error', reject);
      ctl.next().then((greeting) => {
        socket.off('error', reject);
        socket.on('error', (err) => ctl.fail(err));
        if (greeting.code !== 220) reject(new Error(`greeting ${greeting.line}`));
        else resolve(ctl);
      }, reject);
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.pending = '';
    this.replies = [];
    this.waiters = [];
    this.multi = '';
    this.error = undefined;
    socket.setNoDelay(true);
    socket.on('data', (c) => this.onData(c));
    socket.on('close', () => this.fail(new Error('control connection closed')));
  }

  onData(chunk) {
    this.pending += chunk.toString('latin1');
    let eol;
    while ((eol = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, eol).replace(/\r$/, '');
      this.pending = this.pending.slice(eol + 1);
      const m = /^(\d{3})([ -])/.exec(line);
      if (this.multi !== '') {
        if (line.startsWith(`${this.multi} `)) {
          this.multi = '';
          this.deliver({ code: Number(m[1]), line });
        }
      } else if (m !== null && m[2] === '-') this.multi = m[1];
      else if (m !== null) this.deliver({ code: Number(m[1]), line });
    }
  }

  deliver(reply) {
    const w = this.waiters.shift();
    if (w !== undefined) w.resolve(reply);
    else this.replies.push(reply);
  }

  fail(err) {
    this.error ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  next() {
    const r = this.replies.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.error !== undefined) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async cmd(line, expect) {
    this.socket.write(`${line}\r\n`);
    const reply = await this.next();
    if (expect !== undefined && reply.code !== expect) throw new Error(`${line.split(' ')[0]}: ${reply.line}`);
    return reply;
  }

  async login() {
    const r = await this.cmd(`USER ${opt.user}`);
    if (r.code === 331) await this.cmd(`PASS ${opt.pass}`, 230);
    else if (r.code !== 230) throw new Error(`USER: ${r.line}`);
  }

  /** PASV, and the address its 227 names (honoured, as a strict client does). */
  async pasv() {
    const r = await this.cmd('PASV', 227);
    const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(r.line);
    if (m === null) throw new Error(`bad 227: ${r.line}`);
    return { host: `${m[1]}.${m[2]}.${m[3]}.${m[4]}`, port: Number(m[5]) * 256 + Number(m[6]) };
  }

  async quit() {
    try {
      await this.cmd('QUIT');
    } catch {
      // closed already
    }
    this.socket.destroy();
  }
}

function connect(target, extra = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ ...target, ...extra });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))];

// ---- flows: raw relay throughput --------------------------------------

async function flows() {
  const down = Number(opt.down);
  const up = Number(opt.up);
  const bytes = Number(opt.bytes);
  const kinds = [...Array(down).fill('down'), ...Array(up).fill('up')];
  const controls = [];
  const targets = [];
  for (const _ of kinds) {
    if (opt.ctl !== undefined) {
      const ctl = await Control.open(hostPort(opt.ctl));
      controls.push(ctl);
      await ctl.login();
      targets.push(await ctl.pasv());
    } else targets.push(hostPort(opt.direct));
  }
  const verify = opt.verify;
  const expected = verify ? patternHash(bytes) : '';
  const flows = kinds.map((kind, i) => ({ kind, target: targets[i], got: 0, ack: Buffer.alloc(0), doneAt: 0, hash: verify ? createHash('sha256') : undefined }));
  const sockets = await Promise.all(
    flows.map((f) =>
      connect(f.target, {
        allowHalfOpen: true,
        noDelay: true,
        onread: sinkOnread((buf, n) => {
          if (f.kind === 'down') {
            f.got += n;
            f.hash?.update(buf.subarray(0, n));
          } else f.ack = Buffer.concat([f.ack, buf.subarray(0, n)]);
        }),
      }),
    ),
  );
  const t0 = performance.now();
  await Promise.all(
    flows.map(
      (f, i) =>
        new Promise((resolve, reject) => {
          const s = sockets[i];
          s.on('error', reject);
          s.once('end', () => {
            f.doneAt = performance.now();
            s.end();
            const ackBytes = verify ? 40 : 8;
            const count = f.kind === 'down' ? f.got : f.ack.length === ackBytes ? Number(f.ack.readBigUInt64BE(0)) : -1;
            const digest = !verify ? '' : f.kind === 'down' ? f.hash.digest('hex') : f.ack.subarray(8).toString('hex');
            if (count !== bytes) reject(new Error(`${f.kind} flow: ${count < 0 ? 'no answer' : count} of ${bytes} bytes`));
            else if (digest !== expected) reject(new Error(`${f.kind} flow: ${bytes} bytes arrived but their sha256 differs`));
            else resolve();
          });
          if (f.kind === 'down') s.write(Buffer.concat([Buffer.from(verify ? 'P' : 'S'), u64(bytes)]));
          else {
            s.write(Buffer.concat([Buffer.from(verify ? 'H' : 'K'), u64(0)]));
            (verify ? sendPattern : sendZeros)(s, bytes, () => s.end());
          }
        }),
    ),
  );
  const ms = performance.now() - t0;
  for (const c of controls) await c.quit();
  const total = bytes * flows.length;
  // When each flow ended, from t0: a long tail (one flow far behind the others) shows as max ≫ p50.
  const ends = flows.map((f) => f.doneAt - t0).sort((a, b) => a - b);
  const at = (q) => ends[Math.min(ends.length - 1, Math.floor(q * ends.length))];
  const endsMs = { first: ends[0], p50: at(0.5), p90: at(0.9), last: ends[ends.length - 1] };
  return { flows: flows.length, bytes: total, ms, gbps: (total * 8) / (ms / 1000) / 1e9, endsMs };
}

// ---- sessions: login + PASV + LIST + QUIT -----------------------------

/** Where a session's time goes: per step, the milliseconds of each session (medians reported). */
const STEPS = ['connect', 'login', 'pasv', 'dataConnect', 'list150', 'dataEnd', 'list226', 'quit'];

async function oneSession(target, steps) {
  let mark = performance.now();
  const step = (name) => {
    const now = performance.now();
    (steps[name] ??= []).push(now - mark);
    mark = now;
  };
  const ctl = await Control.open(target);
  step('connect');
  try {
    await ctl.login();
    step('login');
    const dataAt = await ctl.pasv();
    step('pasv');
    const data = await connect(dataAt);
    step('dataConnect');
    let listed = 0;
    const eof = new Promise((resolve, reject) => {
      data.on('data', (c) => (listed += c.length));
      data.once('end', resolve);
      data.once('error', reject);
    });
    const first = await ctl.cmd('LIST');
    if (first.code !== 150 && first.code !== 125) throw new Error(`LIST: ${first.line}`);
    step('list150');
    await eof;
    step('dataEnd');
    data.destroy();
    const done = await ctl.next();
    if (done.code !== 226) throw new Error(`LIST end: ${done.line}`);
    step('list226');
    if (listed === 0) throw new Error('LIST sent nothing');
    await ctl.quit();
    step('quit');
  } catch (err) {
    ctl.socket.destroy();
    throw err;
  }
}

async function sessions() {
  const target = hostPort(opt.ctl);
  const concurrency = Number(opt.concurrency);
  const durationMs = Number(opt['duration-ms']);
  const max = Number(opt.max);
  let started = 0;
  let done = 0;
  let errors = 0;
  let firstError = '';
  const lat = [];
  const steps = {};
  const t0 = performance.now();
  const worker = async () => {
    while (performance.now() - t0 < durationMs && started < max) {
      started++;
      const s0 = performance.now();
      try {
        await oneSession(target, steps);
        done++;
        lat.push(performance.now() - s0);
      } catch (err) {
        errors++;
        firstError ||= err.message;
        if (errors > 20 && errors > done) throw new Error(`too many session errors: ${firstError}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = performance.now() - t0;
  lat.sort((a, b) => a - b);
  return { sessions: done, errors, firstError, ms, rate: done / (ms / 1000), p50ms: pct(lat, 0.5), p99ms: pct(lat, 0.99), steps: Object.fromEntries(STEPS.map((k) => [k, pct((steps[k] ?? []).sort((a, b) => a - b), 0.5)])) };
}

// ---- noop: control round trips -----------------------------------------

async function noop() {
  const ctl = await Control.open(hostPort(opt.ctl));
  await ctl.login();
  const warmup = Number(opt.warmup);
  const count = Number(opt.count);
  const rtts = [];
  for (let i = 0; i < warmup + count; i++) {
    const t = process.hrtime.bigint();
    await ctl.cmd('NOOP', 200);
    if (i >= warmup) rtts.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  await ctl.quit();
  rtts.sort((a, b) => a - b);
  return { n: rtts.length, medianUs: pct(rtts, 0.5), p99Us: pct(rtts, 0.99) };
}

// ---- idle: hold many sessions open -------------------------------------

async function idle() {
  const target = hostPort(opt.ctl);
  const n = Number(opt.n);
  const concurrency = Number(opt.concurrency);
  const held = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      next++;
      held.push(await Control.open(target));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  process.stdout.write(`${JSON.stringify({ ready: held.length, openMs: performance.now() - t0 })}\n`);
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, Number(opt['hold-ms']));
    process.stdin.on('data', () => undefined);
    process.stdin.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    process.stdin.resume();
  });
  for (const c of held) c.socket.destroy();
  return { closed: held.length };
}

// ---- paced: sequential sessions at a steady pace, setup times -----------

/** Sessions started every --gap-ms (or as soon as the last ended): time to the 220 greeting and to logged in. */
async function paced() {
  const target = hostPort(opt.ctl);
  const gap = Number(opt['gap-ms']);
  const t0 = performance.now();
  const until = t0 + Number(opt['duration-ms']);
  const greeted = [];
  const loggedIn = [];
  let errors = 0;
  let firstError = '';
  for (let next = t0; performance.now() < until && greeted.length + errors < Number(opt.max); next += gap) {
    const wait = next - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const s0 = performance.now();
    try {
      const ctl = await Control.open(target);
      const s1 = performance.now();
      await ctl.login();
      const s2 = performance.now();
      await ctl.quit();
      greeted.push(s1 - s0);
      loggedIn.push(s2 - s0);
    } catch (err) {
      errors++;
      firstError ||= err.message;
    }
  }
  const summary = (xs) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
    return { p50ms: pct(sorted, 0.5), p90ms: pct(sorted, 0.9), p99ms: pct(sorted, 0.99), maxMs: sorted.at(-1) ?? 0, meanMs: mean, over100ms: sorted.filter((x) => x > 100).length };
  };
  return { sessions: greeted.length, errors, firstError, gapMs: gap, greeting: summary(greeted), login: summary(loggedIn) };
}

const commands = { flows, sessions, noop, idle, paced };
const command = commands[positionals[0]];
if (command === undefined) {
  process.stderr.write(`usage: agent.mjs ${Object.keys(commands).join('|')} ...\n`);
  process.exit(64);
}
const deadline = setTimeout(() => {
  process.stderr.write(`agent ${positionals[0]}: timed out after ${opt['timeout-ms']} ms\n`);
  process.exit(2);
}, Number(opt['timeout-ms']));
deadline.unref();
command().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`agent ${positionals[0]}: ${err.stack ?? err}\n`);
    process.exit(1);
  },
);
