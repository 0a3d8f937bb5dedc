/**
 * Health probes toward an upstream that reads PROXY headers
 * (upstream.proxyProtocol): the probe sends a LOCAL header first (the
 * gateway speaking for itself), or such an upstream would close every
 * probe and keep a member ejected for ever.
 */
import net, { type Server } from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { parseProxyHeader, type ProxyHeader } from '../../../src/common/proxyProtocol.js';
import { probeOnce } from '../../../src/edge/health/probe.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
});

/** An FTP upstream behind `accept-proxy`: a header first, or the connection is closed; records the headers. */
async function proxyReadingUpstream(headers: ProxyHeader[]): Promise<number> {
  const server = net.createServer((socket) => {
    let received = Buffer.alloc(0);
    let greeted = false;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!greeted) {
        const r = parseProxyHeader(received);
        if (r.kind === 'more') return;
        if (r.kind === 'refused') return void socket.destroy();
        headers.push(r.header);
        received = received.subarray(r.consumed);
        greeted = true;
        socket.write('220 ready\r\n');
      }
      if (received.toString('latin1').includes('QUIT\r\n')) socket.end('221 bye\r\n');
    });
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

describe('a probe of an upstream that reads PROXY headers', () => {
  it.each([1, 2] as const)('v%i: sends a LOCAL header first and passes', async (version) => {
    const headers: ProxyHeader[] = [];
    const port = await proxyReadingUpstream(headers);
    const result = await probeOnce({ host: '127.0.0.1', port, login: undefined, timeoutMs: 2_000, proxyHeader: version });
    expect(result.ok).toBe(true);
    expect(headers).toEqual([{ version, command: version === 1 ? 'proxy' : 'local', addresses: undefined, tlvs: [] }]);
  });

  it('without the header it fails (the upstream closes it)', async () => {
    const port = await proxyReadingUpstream([]);
    const result = await probeOnce({ host: '127.0.0.1', port, login: undefined, timeoutMs: 2_000 });
    expect(result.ok).toBe(false);
  });
});
