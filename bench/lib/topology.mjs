// The bench's three network namespaces, and the edge in each variant.
//
//   client ns                edge ns                       server ns
//   203.0.113.10/24 ──veth── 203.0.113.1/24
//                            192.0.2.1/24   ──veth──       192.0.2.10/24
//
// Variants of the edge, switched between runs:
//   none     routed: forwarding on, the client has a route to 192.0.2.0/24;
//   kernel   forwarding on, no client route: nftables DNAT of 203.0.113.1
//            ports 21 and 2121 to the server, masquerade towards it, and the
//            "ftp" conntrack helper (nf_conntrack_ftp + nf_nat_ftp) attached;
//   haproxy, ftp-alg   forwarding off: only a program in the edge connects
//            the two sides;
//   haproxy-ctl  haproxy relays the control connection alone; data is routed
//            (the client's route to 192.0.2.0/24) and masqueraded towards the
//            server, so vsftpd sees its data connections come from the
//            address of the control connection: the floor of any proxy that
//            handles the control connection in userspace and no data bytes.
// Names carry our pid; namespaces left by a bench run whose pid is gone are
// removed at start.
import { randomBytes } from 'node:crypto';
import { must, nsMust, nsRun, run, runSync } from './proc.mjs';

export const ADDR = {
  client: '203.0.113.10',
  edgePublic: '203.0.113.1',
  edgePrivate: '192.0.2.1',
  server: '192.0.2.10',
  privateNet: '192.0.2.0/24',
};

const PREFIX = 'ftpalg-bench';
const NAME = /^ftpalg-bench-(\d+)-[0-9a-f]+-(client|edge|server)$/;
const NFT_TABLE = 'ftpalg_bench';

const MASQUERADE_RULES = `
table ip ${NFT_TABLE} {
  chain postrouting_nat {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "to-server" masquerade
  }
}
`;

const KERNEL_RULES = `
table ip ${NFT_TABLE} {
  ct helper ftp-standard {
    type "ftp" protocol tcp
    l3proto ip
  }
  chain prerouting_nat {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "to-client" ip daddr ${ADDR.edgePublic} tcp dport { 21, 2121 } dnat to ${ADDR.server}
  }
  chain helpers {
    type filter hook prerouting priority filter; policy accept;
    iifname "to-client" ct state new ip daddr ${ADDR.server} tcp dport { 21, 2121 } ct helper set "ftp-standard"
  }
  chain postrouting_nat {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "to-server" masquerade
  }
}
`;

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

async function removeStale() {
  const r = await run('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  for (const line of r.stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = NAME.exec(name);
    if (m !== null && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      await run('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
    }
  }
}

const live = new Set();

/** Synchronous teardown for process 'exit': delete every namespace we made. */
export function destroyAllSync() {
  for (const name of live) {
    runSync('ip', ['netns', 'del', name]);
    live.delete(name);
  }
}

export async function createTopology() {
  await removeStale();
  const id = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const ns = { client: `${PREFIX}-${id}-client`, edge: `${PREFIX}-${id}-edge`, server: `${PREFIX}-${id}-server` };
  const topo = {
    ns,
    variant: '',
    async destroy() {
      for (const name of Object.values(ns)) {
        if (!live.has(name)) continue;
        await run('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
        live.delete(name);
      }
    },
    /** Switch the edge to one variant: forwarding, the client's route, the kernel rules. */
    async setVariant(variant) {
      if (topo.variant === variant) return;
      // ftp-alg-nft: ftp-alg's kernel data plane forwards the pinholes it DNATs (no client route either).
      const routed = variant === 'none' || variant === 'kernel' || variant === 'ftp-alg-nft' || variant === 'haproxy-ctl';
      await nsMust(ns.edge, 'sysctl', ['-q', '-w', `net.ipv4.ip_forward=${routed ? 1 : 0}`]);
      await nsRun(ns.edge, 'nft', ['delete', 'table', 'ip', NFT_TABLE], { timeoutMs: 10_000 });
      await nsRun(ns.client, 'ip', ['route', 'del', ADDR.privateNet], { timeoutMs: 10_000 });
      if (variant === 'none' || variant === 'haproxy-ctl') {
        await nsMust(ns.client, 'ip', ['route', 'add', ADDR.privateNet, 'via', ADDR.edgePublic]);
      }
      if (variant === 'kernel') await loadRules(ns.edge, KERNEL_RULES);
      else if (variant === 'haproxy-ctl') await loadRules(ns.edge, MASQUERADE_RULES);
      topo.variant = variant;
    },
  };
  try {
    for (const name of Object.values(ns)) {
      await must('ip', ['netns', 'add', name]);
      live.add(name);
      await must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    }
    await must('ip', ['-n', ns.client, 'link', 'add', 'to-edge', 'type', 'veth', 'peer', 'name', 'to-client', 'netns', ns.edge]);
    await must('ip', ['-n', ns.edge, 'link', 'add', 'to-server', 'type', 'veth', 'peer', 'name', 'to-edge', 'netns', ns.server]);
    await must('ip', ['-n', ns.client, 'addr', 'add', `${ADDR.client}/24`, 'dev', 'to-edge']);
    await must('ip', ['-n', ns.edge, 'addr', 'add', `${ADDR.edgePublic}/24`, 'dev', 'to-client']);
    await must('ip', ['-n', ns.edge, 'addr', 'add', `${ADDR.edgePrivate}/24`, 'dev', 'to-server']);
    await must('ip', ['-n', ns.server, 'addr', 'add', `${ADDR.server}/24`, 'dev', 'to-edge']);
    for (const [name, dev] of [[ns.client, 'to-edge'], [ns.edge, 'to-client'], [ns.edge, 'to-server'], [ns.server, 'to-edge']]) {
      await must('ip', ['-n', name, 'link', 'set', dev, 'up']);
    }
    await must('ip', ['-n', ns.server, 'route', 'add', 'default', 'via', ADDR.edgePrivate]);
    // Ephemeral ports stay clear of every listening range (vsftpd 40000-44999,
    // the raw source/sink 45000-46000, pinholes 50000-53999); thousands of
    // sessions a second may reuse TIME_WAIT tuples.
    for (const name of Object.values(ns)) {
      await nsMust(name, 'sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 39999', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=65535', 'net.ipv4.tcp_max_syn_backlog=65535']);
    }
  } catch (err) {
    await topo.destroy();
    throw err;
  }
  return topo;
}

async function loadRules(edgeNs, rules) {
  const { spawn } = await import('node:child_process');
  await new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', edgeNs, 'nft', '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`nft rules of the edge failed (${code}): ${err.trim()}`));
    });
    child.stdin.end(rules);
  });
}

/** Is the kernel's FTP helper there (built in, or a module that loads)? */
export async function kernelHelperStatus() {
  const { existsSync } = await import('node:fs');
  const builtIn = existsSync('/sys/module/nf_conntrack_ftp');
  const m = await run('modprobe', ['nf_conntrack_ftp'], { timeoutMs: 10_000 });
  const loaded = m.code === 0 || existsSync('/sys/module/nf_conntrack_ftp');
  await run('modprobe', ['nf_nat_ftp'], { timeoutMs: 10_000 });
  return { ok: loaded, how: m.code === 0 ? 'modprobe nf_conntrack_ftp: ok' : builtIn ? `built into the kernel (modprobe: ${m.code === -1 ? 'not installed' : `exit ${m.code}`})` : `missing (modprobe: ${m.stderr.trim()})` };
}
