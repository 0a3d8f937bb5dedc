// Runs a list of steps against the gateway from inside a namespace and prints
// one JSON line with what each step saw: `node ftpProbe.mjs '<steps json>'`.
// Steps: {op:'control', host, port} | {op:'send', line} (answer: the final
// reply line; '{listen}' becomes the h,h,h,h,p,p of the last 'listen') |
// {op:'dial', host, port (a number, 'last' or 'last-1': the port of the
// latest 227/229 or the one before, 'last+1': the port after the latest), from?, slot?, hold?} (answer: 'refused' |
// 'connected', the connection kept as `slot`) | {op:'read', slot} (answer:
// {bytes, sha256}) | {op:'listen', host} (answer: the port; the connection it
// accepts is the next `read` of slot 'listen') | {op:'sleep', ms}.
import { createHash } from 'node:crypto';
import net from 'node:net';

const DIAL_TIMEOUT_MS = 3_000;
const READ_TIMEOUT_MS = 10_000;
const steps = JSON.parse(process.argv[2]);
const results = [];
const slots = new Map();
let control;
let replies = [];
let wake;

function onControl(chunk) {
  replies.push(...chunk.toString('latin1').split('\r\n').filter((l) => l !== ''));
  wake?.();
}

async function finalReply() {
  const deadline = Date.now() + READ_TIMEOUT_MS;
  for (;;) {
    const at = replies.findIndex((l) => /^\d{3} /.test(l));
    if (at !== -1) {
      const line = replies[at];
      replies = replies.slice(at + 1);
      return line;
    }
    if (Date.now() > deadline) return 'timeout';
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 100);
    });
  }
}

/** `port: 'last'` is the port of the latest 227/229; `port: 'last-1'` the one before it; 'last+1' the port after the latest. */
function portOf(step) {
  if (typeof step.port === 'number') return step.port;
  if (step.port === 'last+1') return portOf({ port: 'last' }) + 1;
  const passive = results.filter((r) => typeof r === 'string' && /^22[79] /.test(r));
  const reply = passive[passive.length - (step.port === 'last-1' ? 2 : 1)] ?? '';
  const epsv = /\|\|\|(\d+)\|/.exec(reply);
  if (epsv !== null) return Number(epsv[1]);
  const pasv = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(reply);
  return pasv === null ? 0 : Number(pasv[5]) * 256 + Number(pasv[6]);
}

let listened = { host: '', port: 0 };

function dial(step) {
  return new Promise((resolve) => {
    // hold: never send our FIN, so the flow stays open (and idle) after the peer's.
    const s = net.connect({ host: step.host, port: portOf(step), localAddress: step.from, allowHalfOpen: step.hold === true });
    const chunks = [];
    s.on('data', (c) => chunks.push(c));
    const ended = new Promise((done) => s.on('close', () => done()));
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, DIAL_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      slots.set(step.slot ?? 'default', { chunks, ended });
      resolve('connected');
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' ? 'refused' : err.code);
    });
  });
}

function listen(step) {
  return new Promise((resolve) => {
    const chunks = [];
    let accepted;
    const ended = new Promise((done) => {
      accepted = done;
    });
    const server = net.createServer((s) => {
      server.close();
      const peer = s.remoteAddress;
      s.on('data', (c) => chunks.push(c));
      s.on('close', () => accepted(peer));
    });
    slots.set('listen', { chunks, ended });
    server.listen(0, step.host, () => {
      listened = { host: step.host, port: server.address().port };
      resolve(listened.port);
    });
  });
}

async function read(step) {
  const slot = slots.get(step.slot ?? 'default');
  if (slot === undefined) return 'no such slot';
  const peer = await Promise.race([slot.ended, new Promise((r) => setTimeout(() => r('timeout'), READ_TIMEOUT_MS))]);
  const data = Buffer.concat(slot.chunks);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex'), peer: typeof peer === 'string' ? peer : undefined };
}

for (const step of steps) {
  if (step.op === 'control') {
    control = net.connect({ host: step.host, port: step.port });
    control.on('data', onControl);
    control.on('error', () => undefined);
    results.push(await finalReply());
  } else if (step.op === 'send') {
    const hostPort = `${listened.host.split('.').join(',')},${listened.port >> 8},${listened.port & 255}`;
    control.write(`${step.line.replace('{listen}', hostPort)}\r\n`);
    results.push(await finalReply());
  } else if (step.op === 'dial') results.push(await dial(step));
  else if (step.op === 'read') results.push(await read(step));
  else if (step.op === 'listen') results.push(await listen(step));
  else if (step.op === 'sleep') results.push(await new Promise((r) => setTimeout(() => r('slept'), step.ms)));
}
console.log(JSON.stringify(results));
process.exit(0);
