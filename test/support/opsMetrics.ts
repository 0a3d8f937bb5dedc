/**
 * The operator's HTTP endpoint from a test: GET with status and body, and
 * the Prometheus text format read into values by name and labels.
 */
import http from 'node:http';

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly contentType: string;
}

export function httpGet(address: { host: string; port: number }, path: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address.host, port: address.port, path, agent: false, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        body += text;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, contentType: String(res.headers['content-type'] ?? '') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Every sample line of a Prometheus text exposition. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

export class Scrape {
  constructor(readonly samples: readonly Sample[]) {}

  static async from(address: { host: string; port: number }): Promise<Scrape> {
    const answer = await httpGet(address, '/metrics');
    if (answer.status !== 200) throw new Error(`/metrics answered ${answer.status}`);
    return new Scrape(parseExposition(answer.body));
  }

  /** The sum of the samples of `name` whose labels include `labels`; undefined if there is none. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const hits = this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    return hits.length === 0 ? undefined : hits.reduce((sum, s) => sum + s.value, 0);
  }
}
