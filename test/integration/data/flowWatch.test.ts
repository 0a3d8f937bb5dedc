/**
 * FlowWatch against a stand-in for `conntrack -E` (a shell script printing
 * event lines as conntrack-tools 1.4.7 does): each event reaches the watcher
 * of its original destination (address, port) and no other; events of ports
 * nobody watches are dropped before they are parsed. The real conntrack runs
 * in test/e2e/kernel.e2e.test.ts.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { FlowEvent } from '../../../src/data/nftables/flowEvents.js';
import { FlowWatch } from '../../../src/data/nftables/FlowWatch.js';

const LINES = [
  // a control connection to the edge: nobody watches port 21
  '    [NEW] tcp      6 120 SYN_SENT src=203.0.113.10 dst=203.0.113.1 sport=40000 dport=21 [UNREPLIED] src=203.0.113.1 dst=203.0.113.10 sport=21 dport=40000 id=1',
  // a pinhole flow, NATed
  '    [NEW] tcp      6 120 SYN_SENT src=203.0.113.10 dst=203.0.113.1 sport=40001 dport=50000 [UNREPLIED] src=192.0.2.10 dst=192.0.2.1 sport=6000 dport=40001 id=2',
  // the same port on another edge address
  '    [NEW] tcp      6 120 SYN_SENT src=2001:db8:1::10 dst=2001:db8:1::1 sport=40002 dport=50000 [UNREPLIED] src=2001:db8:2::10 dst=2001:db8:2::1 sport=6000 dport=40002 id=3',
  // a reply tuple whose dport is watched (the original's is not): not a pinhole's flow
  '    [NEW] tcp      6 120 SYN_SENT src=192.0.2.10 dst=192.0.2.1 sport=50001 dport=22 [UNREPLIED] src=192.0.2.1 dst=192.0.2.10 sport=22 dport=50000 id=4',
  ' [UPDATE] tcp      6 120 TIME_WAIT src=203.0.113.10 dst=203.0.113.1 sport=40001 dport=50000 src=192.0.2.10 dst=192.0.2.1 sport=6000 dport=40001 [ASSURED] id=2',
];

const dir = mkdtempSync(join(tmpdir(), 'ftpalg-conntrack-'));
const fake = join(dir, 'conntrack');
writeFileSync(fake, `#!/bin/sh\ncat <<'EOF'\n${LINES.join('\n')}\nEOF\nexec sleep 30\n`);
chmodSync(fake, 0o755);

describe('FlowWatch', () => {
  let flows: FlowWatch | undefined;

  afterEach(async () => {
    await flows?.close();
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("hands each event to the watcher of its original destination, and only those of watched (address, port)", async () => {
    flows = new FlowWatch(fake);
    const seen: Record<string, FlowEvent[]> = { v4: [], v6: [], other: [] };
    flows.watch('203.0.113.1', 50000, (e) => seen.v4?.push(e));
    flows.watch('2001:db8:1::1', 50000, (e) => seen.v6?.push(e));
    flows.watch('203.0.113.1', 50001, (e) => seen.other?.push(e));
    flows.unwatch('203.0.113.1', 50001);
    flows.unwatch('203.0.113.1', 50001); // twice: no effect on the others
    await flows.start();
    await waitUntil(() => (seen.v4?.length ?? 0) >= 2);
    expect(seen.v4?.map((e) => [e.type, e.state, e.id])).toEqual([
      ['NEW', 'SYN_SENT', '2'],
      ['UPDATE', 'TIME_WAIT', '2'],
    ]);
    expect(seen.v6?.map((e) => e.id)).toEqual(['3']);
    expect(seen.other).toEqual([]);
  });
});

async function waitUntil(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('not within 5 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}
