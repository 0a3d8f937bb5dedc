/** What a total parser returns: a value, or the reason there is none. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

export function parsed<T>(value: T): Parsed<T> {
  return { ok: true, value };
}

export function refused<T>(reason: string): Parsed<T> {
  return { ok: false, reason };
}
