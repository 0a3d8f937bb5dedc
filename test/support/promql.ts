/**
 * What a PromQL expression in an alert rule or a dashboard panel names of
 * the gateway's metrics: metric names, the labels its selectors match and
 * the labels it groups or joins by. Checked against the gateway's own
 * registry (src/observe/metrics.ts), so a renamed metric or label fails a
 * test even where no series has data yet. A scan, not a parser: the
 * expressions it reads are our own.
 */
import { Metrics } from '../../src/observe/metrics.js';

/** Labels Prometheus adds to every series it scrapes, and the histogram bucket label. */
const TARGET_LABELS = ['job', 'instance'];
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

/** Every metric of the gateway's registry and its label names, with a histogram's series names. */
export function gatewayMetrics(): Map<string, readonly string[]> {
  const known = new Map<string, readonly string[]>();
  for (const metric of new Metrics().registry.getMetricsAsArray()) {
    const { name, labelNames, type } = metric as unknown as { name: string; labelNames: string[]; type: string };
    if (type === 'histogram') {
      for (const suffix of HISTOGRAM_SUFFIXES) known.set(`${name}${suffix}`, suffix === '_bucket' ? [...labelNames, 'le'] : labelNames);
    } else {
      known.set(name, labelNames);
    }
  }
  return known;
}

export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\bftp_alg_[a-z0-9_]+\b/g)].map((m) => m[0]))];
}

/** Problems with the names `expr` uses: unknown metrics, unknown selector labels, unknown grouping labels. */
export function nameProblems(expr: string, known: ReadonlyMap<string, readonly string[]>): string[] {
  const problems: string[] = [];
  const labels = new Set(TARGET_LABELS);
  for (const name of metricNames(expr)) {
    const own = known.get(name);
    if (own === undefined) problems.push(`unknown metric ${name}`);
    else for (const l of own) labels.add(l);
  }
  for (const m of expr.matchAll(/\b(ftp_alg_[a-z0-9_]+)\{([^}]*)\}/g)) {
    const own = known.get(m[1] as string) ?? [];
    for (const l of (m[2] as string).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      const label = l[1] as string;
      if (!own.includes(label) && !TARGET_LABELS.includes(label)) problems.push(`${m[1]} has no label ${label}`);
    }
  }
  for (const m of expr.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const label of (m[1] as string).split(',').map((l) => l.trim()).filter((l) => l !== '')) {
      if (!labels.has(label)) problems.push(`no metric in the expression has the label ${label}`);
    }
  }
  return problems;
}
