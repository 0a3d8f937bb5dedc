// Issue 9: the issue-3 matrix (every server × client × mode × family, byte-
// exact by sha256) with `dataPlane.kind: "nftables"`: the kernel forwards what
// it can, and the fallbacks (an IPv6 client in front of the IPv4 upstream,
// the "passive" site's PORT/EPRT converted to PASV/EPSV) are relayed and say
// so in the log.
import { expect } from 'vitest';
import { jsonLines } from './lib/gateway.js';
import { defineModesMatrix } from './lib/modesMatrix.js';

defineModesMatrix('nftables', (output) => {
  const lines = jsonLines(output);
  expect(lines.find((l) => l.msg === 'data plane')?.dataPlane).toBe('nftables');
  const relayed = new Set(lines.filter((l) => l.msg === 'pinhole relayed').map((l) => l.reason));
  expect([...relayed].sort()).toEqual(['family', 'mode-conversion']);
  const kernelTransfers = lines.filter((l) => l.msg === 'transfer done' && l.plane === 'nftables');
  expect(kernelTransfers.length).toBeGreaterThan(20);
  expect(lines.filter((l) => l.msg === 'data connection refused' || /kernel data plane/.test(String(l.msg)))).toEqual([]);
});
