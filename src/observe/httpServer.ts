/**
 * The operator's HTTP endpoint: /metrics (Prometheus text format),
 * /healthz (the process answers) and /readyz (every site listening, some
 * upstream reachable, not draining).
 */
import http, { type Server } from 'node:http';
import { parseListenAddress } from '../config/formats.js';
import type { Logger } from './logger.js';

export interface Probe {
  metrics(): Promise<{ contentType: string; body: string }>;
  ready(): { ready: boolean; detail: Record<string, unknown> };
}

export async function startHttp(listen: string, probe: Probe, log: Logger): Promise<Server> {
  const address = parseListenAddress(listen);
  if (address === undefined) throw new Error(`metrics.listen: bad address ${listen}`);
  const server = http.createServer((req, res) => {
    void answer(req.url ?? '/', probe).then(
      ({ status, type, body }) => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(body);
      },
      (err: unknown) => {
        log.error({ err }, 'metrics endpoint failed');
        res.writeHead(500).end();
      },
    );
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  log.info({ http: typeof bound === 'object' && bound !== null ? `${bound.address}:${bound.port}` : listen }, 'metrics listening');
  return server;
}

async function answer(url: string, probe: Probe): Promise<{ status: number; type: string; body: string }> {
  const path = url.split('?')[0];
  if (path === '/metrics') {
    const { contentType, body } = await probe.metrics();
    return { status: 200, type: contentType, body };
  }
  if (path === '/healthz') return { status: 200, type: 'text/plain', body: 'ok\n' };
  if (path === '/readyz') {
    const { ready, detail } = probe.ready();
    return { status: ready ? 200 : 503, type: 'application/json', body: `${JSON.stringify({ ready, ...detail })}\n` };
  }
  return { status: 404, type: 'text/plain', body: 'not found\n' };
}
