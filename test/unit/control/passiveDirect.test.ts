/**
 * Transparent outbound sites (issue 15 item 5): PASV/EPSV reach the server and
 * its reply reaches the client with no pinhole (the client dials the server
 * through the edge), checked like any 227/229: the address can only be the
 * server's own, a privileged port is 425. Before the reply goes on, Session
 * is asked to admit exactly that flow (`forward#`: the kernel plane's forward
 * entry; nothing on the relay plane); if it cannot, the client hears 425.
 * PORT/EPRT still get a pinhole.
 */
import { describe, expect, it } from 'vitest';
import { Driver } from './drive.js';

const direct = () => Driver.ready({ passiveDirect: true });
const FORWARD = 'forward#1 198.51.100.7 -> 192.0.2.10:5001';

describe('control core: passive data on a transparent site (passiveDirect)', () => {
  const rows: [string, string, string[], string[]][] = [
    ['PASV: the server\'s own 227 passes unchanged', 'PASV', ['227 Entering Passive Mode (192,0,2,10,19,137)'], ['U> PASV', FORWARD, 'C< 227 Entering Passive Mode (192,0,2,10,19,137)']],
    ['EPSV: the 229 passes unchanged', 'EPSV', ['229 Extended (|||5001|)'], ['U> EPSV', FORWARD, 'C< 229 Extended (|||5001|)']],
    ['EPSV 1 keeps its argument', 'EPSV 1', ['229 Extended (|||5001|)'], ['U> EPSV 1', FORWARD, 'C< 229 Extended (|||5001|)']],
    [
      'a 227 naming another host names the server instead (the client never dials an inside host)',
      'PASV',
      ['227 Entering Passive Mode (10,0,0,5,19,137)'],
      ['U> PASV', 'note rejected upstream 227-foreign-address', FORWARD, 'C< 227 Entering Passive Mode (192,0,2,10,19,137).'],
    ],
    ['a privileged data port is 425', 'PASV', ['227 Entering Passive Mode (192,0,2,10,0,25)'], ['U> PASV', 'note rejected upstream privileged-data-port', "C< 425 Can't open data connection."]],
    ['a 229 to PASV is 425', 'PASV', ['229 Extended (|||5001|)'], ['U> PASV', 'note rejected upstream wrong-success-reply', "C< 425 Can't open data connection."]],
    ['a refusal passes on', 'EPSV', ['500 no EPSV'], ['U> EPSV', 'C< 500 no EPSV']],
  ];
  it.each(rows)('%s', (_name, command, replies, want) => {
    const d = direct();
    d.client(command);
    d.upstream(...replies);
    if (d.log.includes(FORWARD)) d.opened(1, {});
    expect(d.log).toEqual(['close waiting replaced', ...want]);
    expect(d.log.some((l) => l.startsWith('open#'))).toBe(false);
  });

  it('the reply waits until the flow is admitted', () => {
    const d = direct();
    d.client('EPSV');
    d.upstream('229 Extended (|||5001|)');
    expect(d.log).toEqual(['close waiting replaced', 'U> EPSV', FORWARD]);
    d.opened(1, {});
    expect(d.log.at(-1)).toBe('C< 229 Extended (|||5001|)');
  });

  it.each([
    ['the kernel refused the entry', 'ERR_ALG_KERNEL', 'kernel-error', "425 Can't open data connection."],
    ['the client has too many open', 'ERR_ALG_PINHOLE_LIMIT_CLIENT', 'client-pinhole-limit', "425 Can't open data connection: too many open from your address."],
  ])('the flow cannot be admitted (%s): 425, never the server\'s reply', (_name, code, reason, reply) => {
    const d = direct();
    d.client('EPSV');
    d.upstream('229 Extended (|||5001|)');
    d.failed(1, code);
    expect(d.log.slice(3)).toEqual([`note pinhole-refused ${reason}`, `C< ${reply}`]);
  });

  it('client input waits for the passive reply, then flows', () => {
    const d = direct();
    d.client('PASV', 'RETR x');
    expect(d.log).toEqual(['close waiting replaced', 'U> PASV']);
    d.upstream('227 Entering Passive Mode (192,0,2,10,19,137)');
    d.opened(1, {});
    expect(d.log.slice(3)).toEqual(['C< 227 Entering Passive Mode (192,0,2,10,19,137)', 'label RETR', 'U> RETR x']);
  });

  it('a transfer the gateway does not carry runs from the command to its final reply (the quiet control connection is not idle then)', () => {
    const d = direct();
    d.client('EPSV');
    d.upstream('229 Extended (|||5001|)');
    d.opened(1, {});
    expect(d.core.directTransfer).toBe(false);
    d.client('RETR big');
    d.upstream('150 Opening BINARY mode data connection');
    expect(d.core.directTransfer).toBe(true);
    d.upstream('226 Transfer complete');
    expect(d.core.directTransfer).toBe(false);
    d.client('NOOP');
    expect(d.core.directTransfer).toBe(false);
  });

  it('on a reverse site a transfer is the pinhole\'s to show, never the core\'s', () => {
    const d = Driver.ready();
    d.client('RETR big');
    d.upstream('150 Opening BINARY mode data connection');
    expect(d.core.directTransfer).toBe(false);
  });

  it('PORT still becomes an active pinhole on the outside address admitting only the server', () => {
    const d = direct();
    d.client('PORT 198,51,100,7,19,137');
    expect(d.log).toEqual(['close waiting replaced', 'open#1 active client=connect(198.51.100.7:5001) upstream=listen(active 192.0.2.1 peer 192.0.2.10)']);
  });

  it('without passiveDirect the same PASV opens a pinhole (the reverse behaviour)', () => {
    const d = Driver.ready();
    d.client('PASV');
    d.upstream('227 Entering Passive Mode (192,0,2,10,19,137)');
    expect(d.log.some((l) => l.startsWith('open#1 passive'))).toBe(true);
  });
});
