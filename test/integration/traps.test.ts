/**
 * The connect recorder in test/support/traps.ts knows the gateway's code by
 * the folders its stack frames come from. If a folder is renamed, every
 * "the gateway connected nowhere" assertion would pass without testing
 * anything: this guards the list, and that a real gateway connect is seen.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { PortRange } from '../../src/config/types.js';
import { describe, expect, it } from 'vitest';
import { GATEWAY_ROOMS, recordGatewayConnects } from '../support/traps.js';
import { startGateway } from '../support/gateway.js';
import { portRanges } from '../support/ports.js';

describe('recordGatewayConnects', () => {
  it.each(GATEWAY_ROOMS)('src/%s exists', (room) => {
    expect(existsSync(fileURLToPath(new URL(`../../src/${room}`, import.meta.url)))).toBe(true);
  });

  it('records the upstream control connection a session opens', async () => {
    const upstream = net.createServer((s) => s.end('220 hi\r\n'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as net.AddressInfo).port;
    const [passivePorts, activePorts] = portRanges(2, 10) as [PortRange, PortRange];
    const record = recordGatewayConnects();
    const gw = await startGateway({ upstream: { host: '127.0.0.1', port }, passivePorts, activePorts });
    try {
      const client = net.connect(gw.port, '127.0.0.1');
      await new Promise((r) => client.once('data', r));
      client.destroy();
      expect(record.targets).toContainEqual({ host: '127.0.0.1', port });
    } finally {
      record.stop();
      await gw.close();
      upstream.close();
    }
  });
});
