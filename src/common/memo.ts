/**
 * `make`, kept per key: for the few values a hot path computes over and over
 * (addresses in conntrack events and netlink messages). Bounded: cleared when
 * it holds `entries` keys. A `make` that throws caches nothing.
 */
export function boundedMemo<V>(make: (key: string) => V, entries = 4096): (key: string) => V {
  const kept = new Map<string, V>();
  return (key) => {
    const hit = kept.get(key);
    if (hit !== undefined) return hit;
    const made = make(key);
    if (kept.size >= entries) kept.clear();
    kept.set(key, made);
    return made;
  };
}
