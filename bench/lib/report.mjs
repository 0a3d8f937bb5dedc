// The result table: each figure per variant (median of its runs), the ratio
// of every ftp-alg variant to kernel and to none, and its target.
import { median } from './measure.mjs';

/**
 * Figures in the order printed. `better`: which way is good. `target(v, r)`
 * gets the ftp-alg value and the medians of the baselines, and returns
 * { met, text } or undefined when the figure has no target; `kernelTarget`
 * replaces it for a gateway on the kernel data plane (issue 9's targets).
 */
export const FIGURES = [
  { id: 'raw.down1', label: 'raw relay, 1 flow download', unit: 'Gbit/s', better: 'higher', target: rawOne, kernelTarget: ratio('kernel', 0.9) },
  { id: 'raw.up1', label: 'raw relay, 1 flow upload', unit: 'Gbit/s', better: 'higher', target: rawOne, kernelTarget: ratio('kernel', 0.9) },
  { id: 'raw.flows', label: 'raw relay, {flows} flows (half each way)', unit: 'Gbit/s', better: 'higher', target: ratio('kernel', 0.8), kernelTarget: ratio('kernel', 0.9) },
  { id: 'curl.pasv.down', label: 'curl download {file}, passive', unit: 'MiB/s', better: 'higher', target: ratio('kernel', 0.9) },
  { id: 'curl.pasv.up', label: 'curl upload {file}, passive', unit: 'MiB/s', better: 'higher', target: ratio('kernel', 0.9) },
  { id: 'curl.port.down', label: 'curl download {file}, active', unit: 'MiB/s', better: 'higher', target: ratio('kernel', 0.9) },
  { id: 'curl.port.up', label: 'curl upload {file}, active', unit: 'MiB/s', better: 'higher', target: ratio('kernel', 0.9) },
  // The same transfers without the session's setup (from curl's pretransfer time: connect, login, PASV/PORT), and the setup itself.
  { id: 'curl.pasv.down.data', label: 'curl download {file}, passive: data phase', unit: 'MiB/s', better: 'higher' },
  { id: 'curl.pasv.up.data', label: 'curl upload {file}, passive: data phase', unit: 'MiB/s', better: 'higher' },
  { id: 'curl.port.down.data', label: 'curl download {file}, active: data phase', unit: 'MiB/s', better: 'higher' },
  { id: 'curl.port.up.data', label: 'curl upload {file}, active: data phase', unit: 'MiB/s', better: 'higher' },
  { id: 'curl.pasv.down.setup', label: 'curl download, passive: setup (connect to RETR sent)', unit: 'ms', better: 'lower' },
  { id: 'curl.pasv.up.setup', label: 'curl upload, passive: setup (connect to STOR sent)', unit: 'ms', better: 'lower' },
  { id: 'curl.port.down.setup', label: 'curl download, active: setup (connect to RETR sent)', unit: 'ms', better: 'lower' },
  { id: 'curl.port.up.setup', label: 'curl upload, active: setup (connect to STOR sent)', unit: 'ms', better: 'lower' },
  { id: 'ftps.down', label: 'curl FTPS download {ftpsFile}, passive (TLS control and data)', unit: 'MiB/s', better: 'higher', target: ratio('none', 0.7) },
  { id: 'ftps.up', label: 'curl FTPS upload {ftpsFile}, passive (TLS control and data)', unit: 'MiB/s', better: 'higher', target: ratio('none', 0.7) },
  { id: 'sessions.seq.cold', label: 'sessions/s, sequential, fresh edge program (first {sessions})', unit: '1/s', better: 'higher' },
  { id: 'sessions.seq', label: 'sessions/s, sequential (login+PASV+LIST+QUIT), after {warmup} of warm-up', unit: '1/s', better: 'higher', target: ratio('kernel', 0.9) },
  { id: 'sessions.c32', label: 'sessions/s, 32 concurrent clients', unit: '1/s', better: 'higher', target: ratio('kernel', 0.9) },
  { id: 'noop.median', label: 'control RTT (NOOP), median', unit: 'µs', better: 'lower', target: added(50) },
  { id: 'noop.p99', label: 'control RTT (NOOP), p99', unit: 'µs', better: 'lower' },
  { id: 'mem.base', label: 'RSS of the edge program at start', unit: 'MiB', better: 'lower' },
  { id: 'mem.idle', label: 'RSS per idle session at {idle} sessions', unit: 'KiB', better: 'lower', target: atMost(16) },
  { id: 'mem.flows', label: 'RSS during {flows} transfers (peak)', unit: 'MiB', better: 'lower' },
  { id: 'mem.flows.before', label: 'RSS just before the {flows} transfers (idle, after 6 transfers)', unit: 'MiB', better: 'lower' },
  { id: 'mem.flows.growth', label: 'RSS growth during {flows} transfers (peak − just before)', unit: 'MiB', better: 'lower', kernelTarget: atMost(10) },
  { id: 'cpu.process', label: 'CPU of the edge program per GiB relayed', unit: 's/GiB', better: 'lower', kernelTarget: nearZero(0.05) },
  { id: 'cpu.session.cold', label: 'CPU of the edge program per session, fresh (first {sessions})', unit: 'ms', better: 'lower' },
  { id: 'cpu.session', label: 'CPU of the edge program per session, warm', unit: 'ms', better: 'lower' },
  { id: 'cpu.ftps', label: 'CPU of the edge program per GiB over FTPS', unit: 's/GiB', better: 'lower' },
  { id: 'cpu.ftps.machine', label: 'CPU of the whole machine per GiB over FTPS', unit: 's/GiB', better: 'lower' },
  { id: 'cpu.machine', label: 'CPU of the whole machine per GiB relayed', unit: 's/GiB', better: 'lower' },
];

function rawOne(v, base) {
  const k = ratio('kernel', 0.8)(v, base);
  const h = ratio('haproxy', 1.5)(v, base);
  if (k === undefined || h === undefined) return undefined;
  return { met: k.met && h.met, text: `≥ 0.8× kernel, ≥ 1.5× haproxy (${fmtRatio(v / base.haproxy)} haproxy)` };
}

function ratio(baseline, min) {
  return (v, base) => {
    const b = base[baseline];
    if (v === undefined || b === undefined || b === 0) return undefined;
    return { met: v / b >= min, text: `≥ ${min}× ${baseline}` };
  };
}

function added(maxUs) {
  return (v, base) => {
    if (v === undefined || base.none === undefined) return undefined;
    const add = v - base.none;
    return { met: add <= maxUs, text: `added ≤ ${maxUs} µs (added ${add.toFixed(0)} µs)` };
  };
}

function nearZero(max) {
  return (v) => (v === undefined ? undefined : { met: v <= max, text: `≈ 0 (≤ ${max})` });
}

function atMost(max) {
  return (v) => (v === undefined ? undefined : { met: v <= max, text: `≤ ${max}` });
}

const fmt = (v) => {
  if (v === undefined) return '—';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
};
const fmtRatio = (r) => (r === undefined || !Number.isFinite(r) ? '—' : `${r.toFixed(2)}×`);

/**
 * samples: { [figure]: { [variant]: number[] } }; gateways: names of the
 * ftp-alg variants. Returns { markdown, rows } with medians and verdicts.
 */
export function buildTable(samples, gateways, labels, kernelPlane = new Set()) {
  const baselines = ['none', 'kernel', 'haproxy'];
  const head = ['figure', 'unit', ...baselines, ...gateways.flatMap((g) => [g, `${g}/kernel`, `${g}/none`, 'target', 'met'])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const rows = [];
  for (const f of FIGURES) {
    const per = samples[f.id] ?? {};
    const med = Object.fromEntries(Object.entries(per).map(([k, xs]) => [k, median(xs)]));
    if (Object.values(med).every((x) => x === undefined)) continue;
    const label = f.label.replace(/\{(\w+)\}/g, (_, k) => labels[k] ?? k);
    const cells = [label, f.unit, ...baselines.map((b) => fmt(med[b]))];
    const row = { id: f.id, label, unit: f.unit, medians: med, runs: per, verdicts: {} };
    for (const g of gateways) {
      const v = med[g];
      const t = ((kernelPlane.has(g) ? f.kernelTarget : undefined) ?? f.target)?.(v, med);
      row.verdicts[g] = t;
      cells.push(fmt(v), fmtRatio(v / med.kernel), fmtRatio(v / med.none), t?.text ?? (f.target ? 'n/a' : '—'), t === undefined ? '—' : t.met ? 'yes' : '**no**');
    }
    rows.push(row);
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return { markdown: lines.join('\n'), rows };
}
