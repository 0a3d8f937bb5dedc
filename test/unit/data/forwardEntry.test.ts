/**
 * Transparent sites' direct passive data on the kernel plane (issue 15 item
 * 5): the forward sets and the gate rule of the table, the element ops of an
 * entry, and ForwardEntry's life against a recording element driver. The
 * kernel side (one connection admitted, a drop chain passing it) is in
 * test/e2e/outbound-kernel.e2e.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KernelPlaneError } from '../../../src/common/errors.js';
import type { ElementDriver } from '../../../src/data/nftables/ElementDriver.js';
import { ForwardEntry } from '../../../src/data/nftables/ForwardEntry.js';
import { DIRECT_MARK_HEX, type ElementOp, forwardCloseOps, forwardOpenOps, renderNft, tableScript } from '../../../src/data/nftables/ruleset.js';
import { Metrics } from '../../../src/observe/metrics.js';
import { quietLog } from '../../support/dataPlanes.js';

const KEY4 = { family: 4, client: '203.0.113.10', server: '192.0.2.10', port: 40001 } as const;
const KEY6 = { family: 6, client: '2001:db8:1::10', server: '2001:db8:2::10', port: 40002 } as const;

describe('the forward sets of the table', () => {
  const script = tableScript();

  it.each([
    [4, 'ip'],
    [6, 'ip6'],
  ])('IPv%i: a set keyed (client . server . port) whose element the first SYN consumes, marking its flow', (f, ip) => {
    expect(script).toContain(`set fwd${f} { type ${f === 4 ? 'ipv4_addr . ipv4_addr' : 'ipv6_addr . ipv6_addr'} . inet_service; flags timeout; size 65535; }`);
    const key = `${ip} saddr . ${ip} daddr . tcp dport`;
    expect(script).toContain(
      `tcp flags & (syn | ack) == syn ct state new ${key} @fwd${f} ct mark set ct mark or ${DIRECT_MARK_HEX} delete @fwd${f} { ${key} } accept`,
    );
  });

  it('the mark is one bit, set with `or` (the operator\'s other bits stay)', () => {
    expect(DIRECT_MARK_HEX).toBe('0x10000000');
  });
});

describe('a forward entry\'s element ops', () => {
  it('opens with the accept deadline as the timeout', () => {
    expect(renderNft(forwardOpenOps(KEY4, 15_000))).toBe('add element inet ftp_alg_dp fwd4 { 203.0.113.10 . 192.0.2.10 . 40001 timeout 15000ms }');
  });

  it('closes whether or not the SYN consumed it: re-added (a no-op when present), then deleted', () => {
    expect(renderNft(forwardCloseOps(KEY6)).split('; ')).toEqual([
      'add element inet ftp_alg_dp fwd6 { 2001:db8:1::10 . 2001:db8:2::10 . 40002 timeout 1000ms }',
      'delete element inet ftp_alg_dp fwd6 { 2001:db8:1::10 . 2001:db8:2::10 . 40002 }',
    ]);
  });
});

/** Records every transaction; `fail` makes the next one reject. */
class RecordingDriver implements ElementDriver {
  readonly name = 'nft';
  readonly applied: { op: string; ops: readonly ElementOp[] }[] = [];
  fail = false;
  onExit = (): void => undefined;

  start(): void {}

  async close(): Promise<void> {}

  async apply(op: string, ops: readonly ElementOp[]): Promise<[]> {
    this.applied.push({ op, ops });
    if (this.fail) throw new KernelPlaneError(op, 'refused');
    return [];
  }
}

function entry(driver: RecordingDriver, healthy = true, acceptTimeoutMs = 5_000) {
  const errors: string[] = [];
  const request = { site: 's', client: KEY4.client, server: KEY4.server, port: KEY4.port, acceptTimeoutMs, log: quietLog, metrics: new Metrics() };
  const e = new ForwardEntry({ elements: driver, healthy: () => healthy, onError: (op) => errors.push(op) }, request);
  return { e, errors };
}

describe('ForwardEntry', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('adds its element, waits, and removes it when closed (a new PASV, ABOR, the end)', async () => {
    const driver = new RecordingDriver();
    const { e } = entry(driver);
    await e.open();
    expect(e.state).toBe('waiting');
    expect(driver.applied.map((a) => a.op)).toEqual(['forward-open']);
    e.close('replaced');
    await e.closed();
    expect(e.state).toBe('closed');
    expect(driver.applied.map((a) => [a.op, renderNft(a.ops)])).toEqual([
      ['forward-open', renderNft(forwardOpenOps(KEY4, 5_000))],
      ['forward-close', renderNft(forwardCloseOps(KEY4))],
    ]);
  });

  it('is gone at the accept deadline by itself', async () => {
    vi.useFakeTimers();
    const driver = new RecordingDriver();
    const { e } = entry(driver, true, 1_000);
    await e.open();
    await vi.advanceTimersByTimeAsync(1_000);
    await e.closed();
    expect(driver.applied.map((a) => a.op)).toEqual(['forward-open', 'forward-close']);
  });

  it('a refused element rejects with the kernel error (the client hears 425) and is counted', async () => {
    const driver = new RecordingDriver();
    driver.fail = true;
    const { e, errors } = entry(driver);
    await expect(e.open()).rejects.toMatchObject({ code: 'ERR_ALG_KERNEL' });
    await e.closed();
    expect(errors).toEqual(['forward-open']);
  });

  it('while the plane is down nothing is assumed: refused at once, no element', async () => {
    const driver = new RecordingDriver();
    const { e } = entry(driver, false);
    await expect(e.open()).rejects.toMatchObject({ code: 'ERR_ALG_KERNEL' });
    await e.closed();
    expect(driver.applied).toEqual([]);
  });

  it('closed while its element is on the way: the element is removed once added', async () => {
    const driver = new RecordingDriver();
    const { e } = entry(driver);
    const opening = e.open();
    e.close('session-end');
    await opening;
    await vi.waitFor(() => expect(driver.applied.map((a) => a.op)).toEqual(['forward-open', 'forward-close']));
    expect(e.state).toBe('closed');
  });
});
