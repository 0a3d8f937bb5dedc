/**
 * Lines of `conntrack -E` and `conntrack -L` (conntrack-tools 1.4), parsed:
 * pure and total (a listed flow reads as NEW). The one parser of them: the
 * kernel data plane's flow watch and transparent sites' original-destination
 * lookup (edge/conntrack.ts) both read lines through it.
 *
 *     [NEW] tcp 6 120 SYN_SENT src=A dst=B sport=1 dport=2 [UNREPLIED] src=C dst=D sport=3 dport=4 id=7
 */
import { normalise } from '../../common/address.js';

export type FlowEventType = 'NEW' | 'UPDATE' | 'DESTROY';

export interface Tuple {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
}

export interface FlowEvent {
  readonly type: FlowEventType;
  /** TCP state (SYN_SENT, ESTABLISHED, TIME_WAIT, CLOSE…); '' on DESTROY lines that omit it. */
  readonly state: string;
  readonly orig: Tuple;
  readonly reply: Tuple;
  readonly id: string;
}

const LINE = /^\s*(?:\[(NEW|UPDATE|DESTROY)\]\s+)?tcp\s+6\s+(?:\d+\s+)?([A-Z_]+)?\s*(.*)$/;

export function parseFlowEvent(line: string): FlowEvent | undefined {
  const m = LINE.exec(line);
  if (m === null) return undefined;
  const fields = [...(m[3] ?? '').matchAll(/(src|dst|sport|dport|id)=(\S+)/g)].map((f) => [f[1] as string, f[2] as string] as const);
  const tuples: Partial<Record<string, string>>[] = [{}, {}];
  let which = 0;
  let id = '';
  for (const [k, v] of fields) {
    if (k === 'id') id = v;
    else {
      const t = tuples[which] as Partial<Record<string, string>>;
      if (t[k] !== undefined && which === 0) which = 1;
      (tuples[which] as Partial<Record<string, string>>)[k] = v;
    }
  }
  const orig = tuple(tuples[0]);
  const reply = tuple(tuples[1]);
  if (orig === undefined || reply === undefined) return undefined;
  return { type: (m[1] ?? 'NEW') as FlowEventType, state: m[2] ?? '', orig, reply, id };
}

/** Addresses as `normalise` writes them (which keeps them: the same few come back in every event). */
function address(text: string | undefined): string {
  return normalise(text);
}

function tuple(t: Partial<Record<string, string>> | undefined): Tuple | undefined {
  if (t === undefined) return undefined;
  const src = address(t.src);
  const dst = address(t.dst);
  const sport = Number(t.sport);
  const dport = Number(t.dport);
  const port = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;
  if (src === '' || dst === '' || !port(sport) || !port(dport)) return undefined;
  return { src, dst, sport, dport };
}

/** The flow is over: both FINs seen, reset, or gone from the table. */
export function flowEnded(e: FlowEvent): boolean {
  return e.type === 'DESTROY' || e.state === 'TIME_WAIT' || e.state === 'CLOSE';
}
