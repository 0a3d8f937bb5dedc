/**
 * NftShell's line protocol against a stand-in for `nft -i` (a shell script
 * that answers like nft 1.0.6: silence on success, an `Error:` block on
 * failure, one fixed line for the `describe tcp dport` sentinel). The real
 * nft is driven by test/e2e/kernel.e2e.test.ts.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { KernelPlaneError } from '../../../src/common/errors.js';
import { NftShell } from '../../../src/data/nftables/NftShell.js';

const FAKE_NFT = `#!/bin/sh
while IFS= read -r line; do
  case "$line" in
    "describe tcp dport") echo "payload expression, datatype inet_service (internet network service) (basetype integer), 16 bits" ;;
    fail*) echo "Error: Could not process rule: No such file or directory"; echo "$line"; echo "     ^^^^" ;;
    print*) echo "\${line#print }" ;;
    hang) sleep 3 ;;
    die) exit 3 ;;
  esac
done
`;

const dir = mkdtempSync(join(tmpdir(), 'ftpalg-nft-'));
const fake = join(dir, 'nft');
writeFileSync(fake, FAKE_NFT);
chmodSync(fake, 0o755);

describe('NftShell', () => {
  let shell: NftShell | undefined;
  const start = (timeoutMs?: number): NftShell => {
    shell = new NftShell(fake, timeoutMs);
    shell.start();
    return shell;
  };

  afterEach(async () => {
    await shell?.close();
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('answers each command with what nft printed before its sentinel, in order, many in flight', async () => {
    const nft = start();
    const answers = await Promise.all([nft.run('a', 'add element x'), nft.run('b', 'print one'), nft.run('c', 'print two')]);
    expect(answers).toEqual([[], ['one'], ['two']]);
  });

  it('fails only the command whose answer holds an Error line, with the op and the reason', async () => {
    const nft = start();
    const [bad, good] = await Promise.allSettled([nft.run('open', 'fail add element'), nft.run('b', 'print fine')]);
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as KernelPlaneError;
    expect(err).toBeInstanceOf(KernelPlaneError);
    expect(err).toMatchObject({ code: 'ERR_ALG_KERNEL', op: 'open' });
    expect(err.message).toContain('No such file or directory');
    expect(good).toEqual({ status: 'fulfilled', value: ['fine'] });
  });

  it('refuses a command of two lines (it would desynchronise the sentinel)', async () => {
    await expect(start().run('x', 'add element a\nflush ruleset')).rejects.toThrow('one line');
  });

  it('fails every pending command when nft exits, says so once, and refuses new ones', async () => {
    const nft = start();
    const reasons: string[] = [];
    nft.onExit = (reason) => reasons.push(reason);
    const results = await Promise.allSettled([nft.run('a', 'die'), nft.run('b', 'print late')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(reasons).toEqual([expect.stringContaining('nft exited (3)')]);
    expect(nft.alive).toBe(false);
    await expect(nft.run('c', 'print x')).rejects.toThrow('not running');
  });

  it('kills a stuck nft after the command deadline and fails what was pending', async () => {
    const nft = start(300);
    const reasons: string[] = [];
    nft.onExit = (reason) => reasons.push(reason);
    await expect(nft.run('open', 'hang')).rejects.toBeInstanceOf(KernelPlaneError);
    expect(reasons).toEqual([expect.stringContaining('SIGKILL')]);
  });
});
