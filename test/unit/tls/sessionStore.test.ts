/** The server-side TLS session cache: bounded in entries (oldest out first) and in age. */
import { describe, expect, it } from 'vitest';
import { SessionStore } from '../../../src/tls/sessionStore.js';

const id = (n: number) => Buffer.from([n]);
const data = (n: number) => Buffer.from(`session ${n}`);

describe('SessionStore', () => {
  it('gives back what was saved under the same id, nothing for an unknown id', () => {
    const store = new SessionStore(4, 1_000, () => 0);
    store.save(id(1), data(1));
    expect(store.load(id(1))).toEqual(data(1));
    expect(store.load(id(2))).toBeUndefined();
  });

  it('holds at most its bound; the oldest goes first', () => {
    const store = new SessionStore(3, 1_000, () => 0);
    for (let n = 1; n <= 5; n++) store.save(id(n), data(n));
    expect(store.size).toBe(3);
    expect([1, 2, 3, 4, 5].map((n) => store.load(id(n)) !== undefined)).toEqual([false, false, true, true, true]);
  });

  it('saving an id again makes it the youngest', () => {
    const store = new SessionStore(2, 1_000, () => 0);
    store.save(id(1), data(1));
    store.save(id(2), data(2));
    store.save(id(1), data(11));
    store.save(id(3), data(3));
    expect(store.load(id(1))).toEqual(data(11));
    expect(store.load(id(2))).toBeUndefined();
  });

  it('forgets a session older than its time to live', () => {
    let now = 0;
    const store = new SessionStore(10, 300, () => now);
    store.save(id(1), data(1));
    now = 300;
    expect(store.load(id(1))).toEqual(data(1));
    now = 301;
    expect(store.load(id(1))).toBeUndefined();
    expect(store.size).toBe(0);
  });
});
