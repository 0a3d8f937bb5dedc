/**
 * `npm run demo`: a demo upstream (ftp-srv, anonymous, on a loopback port
 * of the kernel's choosing) with ftp-alg in front of it on 127.0.0.1:2121.
 * Try: curl ftp://127.0.0.1:2121/  and  curl ftp://127.0.0.1:2121/hello.txt
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGateway, createLogger, parseConfig } from '../src/index.js';
import { startUpstream } from './support/upstream.js';

const port = Number(process.env.DEMO_PORT ?? 2121);
const upstream = await startUpstream();
writeFileSync(join(upstream.root, 'hello.txt'), 'Hello through ftp-alg!\n');
const config = parseConfig({
  log: { level: 'info' },
  sites: [
    {
      name: 'demo',
      listen: { host: '127.0.0.1', port },
      upstream: { host: upstream.host, port: upstream.port },
      externalAddress: '127.0.0.1',
      passivePorts: { min: 50000, max: 50099 },
      activePorts: { min: 50100, max: 50199 },
    },
  ],
});
const gateway = await createGateway(config, createLogger('info'));
process.stderr.write(`\nftp-alg demo: gateway on ftp://127.0.0.1:${port}/ in front of ftp-srv on ${upstream.host}:${upstream.port}\n`);
process.stderr.write(`  curl ftp://127.0.0.1:${port}/hello.txt\n  curl -T somefile ftp://127.0.0.1:${port}/\nCtrl-C stops it.\n\n`);
const stop = async () => {
  await gateway.close(1_000);
  await upstream.close();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
