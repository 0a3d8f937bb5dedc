// What /proc says about a process and the machine.
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100; // USER_HZ on Linux

/**
 * A process and its live descendants, found by parent pid in /proc: the edge
 * program's helpers count as the edge program (ftp-alg's kernel plane runs
 * `nft -i` and `conntrack -E`).
 */
function tree(pid) {
  const parent = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])); // ppid, field 4
    } catch {
      // gone meanwhile
    }
  }
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    for (const [child, ppid] of parent) if (ppid === all[i]) all.push(child);
  }
  return all;
}

/** Resident set of a process and its live descendants, in KiB (undefined once it is gone). */
export function rssKiB(pid) {
  const own = rssOne(pid);
  if (own === undefined) return undefined;
  return tree(pid).slice(1).reduce((sum, p) => sum + (rssOne(p) ?? 0), own);
}

function rssOne(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) a process and its live descendants have used. */
export function cpuSeconds(pid) {
  return tree(pid).reduce((sum, p) => sum + cpuOne(p), 0);
}

function cpuOne(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime (fields 14, 15 of stat)
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine (everything but idle and iowait). */
export function machineBusySeconds() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - v[3] - v[4]) / CLK_TCK;
}

/** Samples a process's RSS every `everyMs` until stopped; returns the peak in KiB. */
export function rssSampler(pid, everyMs = 50) {
  let peak = rssKiB(pid) ?? 0;
  const timer = setInterval(() => {
    const v = rssKiB(pid);
    if (v !== undefined && v > peak) peak = v;
  }, everyMs);
  return () => {
    clearInterval(timer);
    const v = rssKiB(pid);
    return Math.max(peak, v ?? 0);
  };
}

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return undefined;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
