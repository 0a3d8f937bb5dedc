// Runs in the edge namespace of bench/origdst.mjs: a listener fed by the
// redirect rule, timing for each accept the original-destination lookup of
// a transparent site (dist/edge/conntrack.js), which is all a transparent
// site adds to session setup. Prints one JSON line once `count` accepts are
// done (or at the deadline).
import net from 'node:net';
import { OriginalDestinations } from '../../dist/edge/conntrack.js';

const [host, port, count, deadlineMs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5])];
const silent = { warn() {}, error() {}, info() {}, debug() {} };
const origins = new OriginalDestinations({ port, log: silent });
await origins.start();
const samples = [];
let found = 0;
let wrong = 0;
const server = net.createServer({ pauseOnConnect: true }, async (socket) => {
  const began = performance.now();
  const accepted = { client: socket.remoteAddress, clientPort: socket.remotePort, local: socket.localAddress, localPort: socket.localPort };
  const dst = await origins.lookup(accepted);
  samples.push(performance.now() - began);
  if (dst !== undefined) found++;
  else if (process.env.OD_DEBUG) console.error(JSON.stringify(accepted));
  // Every address the client dials is in 192.0.2.0/24: anything else would be a wrong answer.
  if (dst !== undefined && !dst.host.startsWith('192.0.2.')) wrong++;
  socket.destroy();
  if (samples.length >= count) finish();
});
server.listen(port, host, () => console.log('ready'));
const timer = setTimeout(finish, deadlineMs);
function finish() {
  clearTimeout(timer);
  const sorted = [...samples].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? null;
  console.log(JSON.stringify({ accepts: samples.length, found, wrong, medianMs: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99), maxMs: sorted.at(-1) ?? null }));
  server.close();
  void origins.close().then(() => process.exit(0));
}
