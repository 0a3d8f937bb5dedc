/**
 * The probe's FTP conversation by tables: the replies a server gives, the
 * lines the probe writes in answer, and the verdict. Every probe that got
 * past the greeting ends with QUIT, so the server logs a normal session.
 */
import { describe, expect, it } from 'vitest';
import { ProbeDialog, type ProbeLogin } from '../../../src/edge/health/probeDialog.js';

interface Row {
  readonly name: string;
  readonly login?: ProbeLogin;
  /** Final reply codes, the greeting first. */
  readonly replies: readonly number[];
  readonly sent: readonly string[];
  readonly verdict: string | undefined;
}

const LOGIN: ProbeLogin = { user: 'health', password: 's3cret' };

const ROWS: readonly Row[] = [
  { name: 'greeting, QUIT, 221', replies: [220, 221], sent: ['QUIT'], verdict: 'ok' },
  { name: 'a 120 before the greeting is waited through', replies: [120, 220, 221], sent: ['QUIT'], verdict: 'ok' },
  { name: 'any 2xx greeting will do', replies: [230, 221], sent: ['QUIT'], verdict: 'ok' },
  { name: '421 greeting: refused, nothing sent (the server closes)', replies: [421], sent: [], verdict: 'greeting-refused' },
  { name: '530 greeting: refused', replies: [530], sent: [], verdict: 'greeting-refused' },
  { name: 'QUIT answered by something else than 221', replies: [220, 500], sent: ['QUIT'], verdict: 'quit-refused' },
  { name: 'no verdict before the QUIT reply', replies: [220], sent: ['QUIT'], verdict: undefined },
  { name: 'login: USER, PASS, NOOP, QUIT', login: LOGIN, replies: [220, 331, 230, 200, 221], sent: ['USER health', 'PASS s3cret', 'NOOP', 'QUIT'], verdict: 'ok' },
  { name: 'login without a password step (230 to USER)', login: LOGIN, replies: [220, 230, 200, 221], sent: ['USER health', 'NOOP', 'QUIT'], verdict: 'ok' },
  { name: '202 to PASS counts as logged in', login: LOGIN, replies: [220, 331, 202, 200, 221], sent: ['USER health', 'PASS s3cret', 'NOOP', 'QUIT'], verdict: 'ok' },
  { name: 'a refused password still says QUIT', login: LOGIN, replies: [220, 331, 530, 221], sent: ['USER health', 'PASS s3cret', 'QUIT'], verdict: 'login-refused' },
  { name: 'a refused user still says QUIT', login: LOGIN, replies: [220, 530, 221], sent: ['USER health', 'QUIT'], verdict: 'login-refused' },
  { name: 'ACCT wanted (332): a login the probe cannot make', login: LOGIN, replies: [220, 331, 332, 221], sent: ['USER health', 'PASS s3cret', 'QUIT'], verdict: 'login-refused' },
  { name: 'a refused NOOP still says QUIT', login: LOGIN, replies: [220, 230, 502, 221], sent: ['USER health', 'NOOP', 'QUIT'], verdict: 'noop-refused' },
  { name: 'replies after the verdict are ignored', replies: [220, 221, 500], sent: ['QUIT'], verdict: 'ok' },
];

describe('ProbeDialog', () => {
  it.each(ROWS)('$name', (row) => {
    const dialog = new ProbeDialog(row.login);
    const sent: string[] = [];
    let verdict: string | undefined;
    for (const code of row.replies) {
      const step = dialog.onReply(code);
      if (step === undefined) continue;
      if ('verdict' in step) verdict ??= step.verdict;
      else sent.push(step.send);
    }
    expect(sent.every((l) => l.endsWith('\r\n'))).toBe(true);
    expect(sent.map((l) => l.slice(0, -2))).toEqual(row.sent);
    expect(verdict).toBe(row.verdict);
  });
});
