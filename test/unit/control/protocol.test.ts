/**
 * The sans-IO control core by tables: each row is one exchange, events in
 * and the actions the core asks for, written as the wire would show them.
 * Every intercepted verb (PASV EPSV PORT EPRT AUTH PBSZ PROT CCC FEAT ABOR
 * REIN, USER/PASS for login) has rows here, across data modes, address
 * families and policies, and so do pipelining orders.
 */
import { describe, expect, it } from 'vitest';
import { MAX_PENDING } from '../../../src/control/protocol.js';
import { MAX_COLLECTED_LINES } from '../../../src/control/ReplyFifo.js';
import type { ControlSettings, ControlTls } from '../../../src/control/types.js';
import { CLIENT4, CLIENT6, Driver, UPSTREAM6 } from './drive.js';

// 5001 = 19*256+137; 50000 = 195*256+80; 51000 = 199*256+56; 6000 = 23*256+112
const PASV_5001 = '227 Entering Passive Mode (192,0,2,10,19,137).';
const EPSV_5001 = '229 Entering Extended Passive Mode (|||5001|)';
const OPEN_PASSIVE = 'open#1 passive client=listen(passive 203.0.113.1 peer 198.51.100.7) upstream=connect(192.0.2.10:5001)';
const OPEN_ACTIVE = 'open#1 active client=connect(198.51.100.7:6000) upstream=listen(active 192.0.2.1 peer 192.0.2.10)';
const CLOSE_WAITING = 'close waiting replaced';

interface Row {
  readonly name: string;
  readonly settings?: Partial<ControlSettings>;
  /** Steps: client lines `C:`, upstream lines `U:`, `opened:<client>/<upstream>`, `failed:<code>`. */
  readonly steps: readonly string[];
  readonly expected: readonly string[];
}

function play(row: Row, d = Driver.ready(row.settings)): string[] {
  for (const step of row.steps) {
    const [kind, rest = ''] = step.split(/:(.*)/s);
    if (kind === 'C') d.client(rest);
    else if (kind === 'U') d.upstream(rest);
    else if (kind === 'opened') {
      const [c, u] = rest.split('/');
      d.opened(1, { client: c === '' ? undefined : Number(c), upstream: u === '' || u === undefined ? undefined : Number(u) });
    } else if (kind === 'failed') d.failed(1, rest);
    else throw new Error(`bad step ${step}`);
  }
  return d.log;
}

const dataRows: Row[] = [
  {
    name: 'PASV: upstream PASV, pinhole to the control peer at the 227 port, 227 with the external address',
    steps: ['C:PASV', `U:${PASV_5001}`, 'opened:50000/'],
    expected: [CLOSE_WAITING, 'U> PASV', OPEN_PASSIVE, 'C< 227 Entering Passive Mode (203,0,113,1,195,80).'],
  },
  {
    name: 'a 227 naming a foreign address still connects to the control peer only',
    steps: ['C:PASV', 'U:227 Entering Passive Mode (198,51,100,99,19,137).', 'opened:50000/'],
    expected: [CLOSE_WAITING, 'U> PASV', OPEN_PASSIVE, 'C< 227 Entering Passive Mode (203,0,113,1,195,80).'],
  },
  {
    name: 'EPSV: upstream EPSV, 229 with the pinhole port',
    steps: ['C:EPSV', `U:${EPSV_5001}`, 'opened:50000/'],
    expected: [CLOSE_WAITING, 'U> EPSV', OPEN_PASSIVE, 'C< 229 Entering Extended Passive Mode (|||50000|)'],
  },
  {
    name: 'EPSV refused upstream (500): PASV instead, the client still gets 229',
    steps: ['C:EPSV', 'U:500 Unknown command', `U:${PASV_5001}`, 'opened:50000/'],
    expected: [CLOSE_WAITING, 'U> EPSV', 'U> PASV', OPEN_PASSIVE, 'C< 229 Entering Extended Passive Mode (|||50000|)'],
  },
  {
    name: 'after a refused EPSV the upstream gets PASV straight away',
    steps: ['C:EPSV', 'U:502 no', `U:${PASV_5001}`, 'opened:50000/', 'C:EPSV'],
    expected: [CLOSE_WAITING, 'U> EPSV', 'U> PASV', OPEN_PASSIVE, 'C< 229 Entering Extended Passive Mode (|||50000|)', CLOSE_WAITING, 'U> PASV'],
  },
  {
    name: 'PORT: active pinhole first, then PORT with the private address upstream; the upstream 200 passes',
    steps: ['C:PORT 198,51,100,7,23,112', 'opened:/51000', 'U:200 PORT ok'],
    expected: [CLOSE_WAITING, OPEN_ACTIVE, 'U> PORT 192,0,2,1,199,56', 'C< 200 PORT ok'],
  },
  {
    name: 'EPRT |1|: EPRT upstream; refused (500): PORT instead',
    steps: ['C:EPRT |1|198.51.100.7|6000|', 'opened:/51000', 'U:500 no', 'U:200 ok'],
    expected: [CLOSE_WAITING, OPEN_ACTIVE, 'U> EPRT |1|192.0.2.1|51000|', 'U> PORT 192,0,2,1,199,56', 'C< 200 ok'],
  },
  {
    name: 'PORT refused upstream: its pinhole closes and the refusal passes',
    steps: ['C:PORT 198,51,100,7,23,112', 'opened:/51000', 'U:550 no'],
    expected: [CLOSE_WAITING, OPEN_ACTIVE, 'U> PORT 192,0,2,1,199,56', 'close 1 upstream-refused', 'C< 550 no'],
  },
  {
    name: 'upstreamDataMode passive: PORT becomes PASV upstream, both legs connect, our own 200',
    settings: { upstreamDataMode: 'passive' },
    steps: ['C:PORT 198,51,100,7,23,112', `U:${PASV_5001}`, 'opened:/'],
    expected: [CLOSE_WAITING, 'U> PASV', 'open#1 active client=connect(198.51.100.7:6000) upstream=connect(192.0.2.10:5001)', 'C< 200 PORT command successful.'],
  },
  {
    name: 'upstreamDataMode active: PASV becomes PORT upstream, both legs listen, 227 to the client',
    settings: { upstreamDataMode: 'active' },
    steps: ['C:PASV', 'opened:50000/51000', 'U:200 ok'],
    expected: [
      CLOSE_WAITING,
      'open#1 passive client=listen(passive 203.0.113.1 peer 198.51.100.7) upstream=listen(active 192.0.2.1 peer 192.0.2.10)',
      'U> PORT 192,0,2,1,199,56',
      'C< 227 Entering Passive Mode (203,0,113,1,195,80).',
    ],
  },
  {
    name: 'a converted command the upstream refuses is told in the client’s terms (425)',
    settings: { upstreamDataMode: 'passive' },
    steps: ['C:PORT 198,51,100,7,23,112', 'U:500 no PASV here'],
    expected: [CLOSE_WAITING, 'U> PASV', "C< 425 Can't open data connection."],
  },
  {
    name: 'a 227 answering EPSV is a wrong success: 425, the upstream address never leaks',
    steps: ['C:EPSV', `U:${PASV_5001}`],
    expected: [CLOSE_WAITING, 'U> EPSV', 'note rejected upstream wrong-success-reply', "C< 425 Can't open data connection."],
  },
  {
    name: 'a 227 with a privileged data port: 425 and a note',
    steps: ['C:PASV', 'U:227 Entering Passive Mode (192,0,2,10,0,21).'],
    expected: [CLOSE_WAITING, 'U> PASV', 'note rejected upstream privileged-data-port', "C< 425 Can't open data connection."],
  },
  {
    name: 'a 227 without numbers: 425',
    steps: ['C:PASV', 'U:227 Entering Passive Mode.'],
    expected: [CLOSE_WAITING, 'U> PASV', 'note rejected upstream 227-no-host-port', "C< 425 Can't open data connection."],
  },
  {
    name: 'no free port: 425 naming it, a note',
    steps: ['C:PASV', `U:${PASV_5001}`, 'failed:ERR_ALG_PORT_EXHAUSTED'],
    expected: [CLOSE_WAITING, 'U> PASV', OPEN_PASSIVE, 'note pinhole-refused ports-exhausted', "C< 425 Can't open data connection: no free port."],
  },
  {
    name: 'a bind failure is not called "no free port"',
    steps: ['C:PASV', `U:${PASV_5001}`, 'failed:ERR_ALG_BIND'],
    expected: [CLOSE_WAITING, 'U> PASV', OPEN_PASSIVE, 'note pinhole-refused bind-failed', "C< 425 Can't open data connection."],
  },
];

const refusalRows: Row[] = [
  { name: 'PORT to a third host (RFC 2577 bounce)', steps: ['C:PORT 192,0,2,99,23,112'], expected: [CLOSE_WAITING, 'note refused PORT bounce-host', 'C< 504 Illegal PORT command: data connections go to your own address and a port from 1024.'] },
  { name: 'PORT to a privileged port', steps: ['C:PORT 198,51,100,7,0,25'], expected: [CLOSE_WAITING, 'note refused PORT privileged-port', 'C< 504 Illegal PORT command: data connections go to your own address and a port from 1024.'] },
  { name: 'PORT to a third host with substitute: the client’s own address is used', settings: { activeMode: { enabled: true, clientAddress: 'substitute', sourcePort20: false } }, steps: ['C:PORT 10,0,0,5,23,112'], expected: [CLOSE_WAITING, OPEN_ACTIVE] },
  { name: 'EPRT |2| from an IPv4 client', steps: ['C:EPRT |2|2001:db8::9|6000|'], expected: [CLOSE_WAITING, 'note refused EPRT family', 'C< 522 Network protocol not supported, use (1)'] },
  { name: 'PORT with a bad argument', steps: ['C:PORT 1,2,3'], expected: [CLOSE_WAITING, 'note rejected client port-field-count', 'C< 501 Syntax error in PORT argument.'] },
  { name: 'EPSV with a bad argument', steps: ['C:EPSV x'], expected: [CLOSE_WAITING, 'note rejected client epsv-arg', 'C< 501 Syntax error in EPSV argument.'] },
  { name: 'EPSV 2 from an IPv4 client', steps: ['C:EPSV 2'], expected: [CLOSE_WAITING, 'note refused EPSV family', 'C< 522 Network protocol not supported, use (1)'] },
  { name: 'EPSV ALL answered here, then PASV/PORT/EPRT refused (503)', steps: ['C:EPSV ALL', 'C:PASV', 'C:PORT 198,51,100,7,23,112'], expected: [CLOSE_WAITING, 'C< 200 EPSV ALL command successful.', CLOSE_WAITING, 'note refused PASV epsv-all', 'C< 503 PASV not allowed after EPSV ALL.', CLOSE_WAITING, 'note refused PORT epsv-all', 'C< 503 PORT not allowed after EPSV ALL.'] },
  { name: 'active mode disabled', settings: { activeMode: { enabled: false, clientAddress: 'strict', sourcePort20: false } }, steps: ['C:EPRT |1|198.51.100.7|6000|'], expected: [CLOSE_WAITING, 'note refused EPRT active-disabled', 'C< 502 Active mode is not allowed here, use PASV or EPSV.'] },
  { name: 'a site without an IPv4 external address refuses PASV', settings: { externalAddress: ['2001:db8:1::1'] }, steps: ['C:PASV'], expected: [CLOSE_WAITING, 'note refused PASV pasv-needs-ipv4', 'C< 522 PASV needs IPv4, use EPSV.'] },
  { name: 'NUL in a line', steps: ['C:NO\0OP'], expected: ['note rejected client nul', 'C< 500 Syntax error, NUL in command.'] },
  { name: 'a verb that is not letters is never forwarded', steps: ['C:"PORT" 1,2,3,4,5,6'], expected: ['note rejected client bad-verb', 'C< 500 Syntax error, command unrecognized.'] },
  { name: 'AUTH on a site without TLS, policy refuse: 534 and the session goes on', steps: ['C:AUTH TLS', 'C:NOOP'], expected: ['note refused AUTH ftps-policy', 'C< 534 Request denied for policy reasons: TLS not available through this gateway.', 'U> NOOP'] },
  { name: 'AUTH on a site without TLS, policy deny: 534 and the end', settings: { ftps: 'deny' }, steps: ['C:AUTH SSL'], expected: ['note refused AUTH ftps-policy', 'end ftps-denied | 534 Request denied for policy reasons: TLS not available through this gateway.'] },
  { name: 'PBSZ and PROT on a site without TLS pass to the upstream', steps: ['C:PBSZ 0', 'C:PROT P'], expected: ['U> PBSZ 0', 'U> PROT P'] },
];

const passRows: Row[] = [
  { name: 'everything else passes byte-exact', steps: ['C:SIZE  a file name with  spaces', 'U:213 42'], expected: ['U> SIZE  a file name with  spaces', 'C< 213 42'] },
  { name: 'a transfer verb labels the newest pinhole', steps: ['C:RETR x', 'U:150 go', 'U:226 done'], expected: ['label RETR', 'U> RETR x', 'C< 150 go', 'C< 226 done'] },
  { name: 'ABOR closes every pinhole, then goes upstream', steps: ['C:ABOR', 'U:226 aborted'], expected: ['close all ABOR', 'U> ABOR', 'C< 226 aborted'] },
  { name: 'REIN closes every pinhole, then goes upstream', steps: ['C:REIN', 'U:220 again'], expected: ['close all REIN', 'U> REIN', 'C< 220 again'] },
  { name: 'USER/PASS: a 230 is a login', steps: ['C:USER a', 'U:331 pass', 'C:PASS b', 'U:230 in'], expected: ['U> USER a', 'C< 331 pass', 'U> PASS b', 'C< 230 in', 'loggedIn'] },
  { name: 'a 230 to another command is no login', steps: ['C:NOOP', 'U:230 odd'], expected: ['U> NOOP', 'C< 230 odd'] },
  { name: 'an unsolicited 227 is passed on and opens nothing', steps: ['U:227 Entering Passive Mode (192,0,2,10,19,137).'], expected: ['C< 227 Entering Passive Mode (192,0,2,10,19,137).'] },
  { name: 'a 227 inside a multi-line reply opens nothing', steps: ['C:HELP', 'U:214-text', 'U:227 Entering Passive Mode (192,0,2,10,19,137).', 'U:214 end'], expected: ['U> HELP', 'C< 214-text', 'C< 227 Entering Passive Mode (192,0,2,10,19,137).', 'C< 214 end'] },
  { name: 'FEAT: collected whole and rewritten', steps: ['C:FEAT', 'U:211-Features:', 'U: AUTH TLS', 'U: SIZE', 'U:211 End'], expected: ['U> FEAT', 'C< 211-Features:\r\n SIZE\r\n EPSV\r\n EPRT\r\n211 End'] },
];

describe('control core: data commands', () => {
  it.each(dataRows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    expect(play(row)).toEqual(row.expected);
  });
});

describe('control core: refusals', () => {
  it.each(refusalRows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    expect(play(row)).toEqual(row.expected);
  });
});

describe('control core: pass-through and the other intercepted verbs', () => {
  it.each(passRows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    expect(play(row)).toEqual(row.expected);
  });
});

describe('control core: address families', () => {
  it('an IPv6 client in front of an IPv4 upstream: EPSV becomes EPSV then 229', () => {
    const d = Driver.ready({}, CLIENT6);
    d.client('EPSV');
    d.upstream(EPSV_5001);
    d.opened(1, { client: 50000 });
    expect(d.log).toEqual([
      CLOSE_WAITING,
      'U> EPSV',
      'open#1 passive client=listen(passive 2001:db8:1::1 peer 2001:db8:1::7) upstream=connect(192.0.2.10:5001)',
      'C< 229 Entering Extended Passive Mode (|||50000|)',
    ]);
  });

  it('an IPv6 client: PASV is refused with 522 (it could not reach an IPv4 pinhole)', () => {
    const d = Driver.ready({ externalAddress: ['203.0.113.1', '2001:db8:1::1'] }, CLIENT6);
    expect(d.client('PASV')).toEqual([CLOSE_WAITING, 'note refused PASV pasv-needs-ipv4', 'C< 522 PASV needs IPv4, use EPSV.']);
  });

  it('an IPv6 client’s EPRT |2| becomes PORT for an IPv4 upstream that refuses EPRT', () => {
    const d = Driver.ready({}, CLIENT6);
    d.client('EPRT |2|2001:db8:1::7|6000|');
    d.opened(1, { upstream: 51000 });
    d.upstream('500 no');
    d.upstream('200 ok');
    expect(d.log.filter((l) => l.startsWith('U>'))).toEqual(['U> EPRT |1|192.0.2.1|51000|', 'U> PORT 192,0,2,1,199,56']);
    expect(d.log.at(-1)).toBe('C< 200 ok');
  });

  it('an IPv6 upstream always gets the extended commands', () => {
    const d = Driver.ready({}, CLIENT4, UPSTREAM6);
    d.client('PASV');
    expect(d.log).toEqual([CLOSE_WAITING, 'U> EPSV']);
  });
});

describe('control core: pipelining keeps replies in order', () => {
  it('NOOP then PORT with no free port: 200 before 425 (error paths go through the FIFO)', () => {
    const d = Driver.ready();
    d.client('NOOP', 'PORT 198,51,100,7,23,112');
    d.failed(1, 'ERR_ALG_PORT_EXHAUSTED');
    expect(d.log.filter((l) => l.startsWith('C<'))).toEqual([]);
    d.upstream('200 noop');
    expect(d.log.filter((l) => l.startsWith('C<'))).toEqual(['C< 200 noop', "C< 425 Can't open data connection: no free port."]);
  });

  it('NOOP then a line too long: the 500 comes after NOOP’s reply', () => {
    const d = Driver.ready();
    d.client('NOOP');
    d.fault('too-long');
    d.upstream('200 noop');
    expect(d.log.filter((l) => l.startsWith('C<'))).toEqual(['C< 200 noop', 'C< 500 Command line too long.']);
  });

  it('a fault queued behind a data command waits its turn too', () => {
    const d = Driver.ready();
    d.client('PASV');
    d.fault('too-long');
    d.client('NOOP');
    expect(d.log).toEqual([CLOSE_WAITING, 'U> PASV']);
    d.upstream(PASV_5001);
    d.opened(1, { client: 50000 });
    d.upstream('200 noop');
    expect(d.log.filter((l) => l.startsWith('C<') || l.startsWith('U>'))).toEqual([
      'U> PASV',
      'C< 227 Entering Passive Mode (203,0,113,1,195,80).',
      'C< 500 Command line too long.',
      'U> NOOP',
      'C< 200 noop',
    ]);
  });

  it('commands after PASV wait until its pinhole is open (a RETR never overtakes its 227)', () => {
    const d = Driver.ready();
    d.client('PASV', 'RETR f');
    expect(d.core.wantsClientInput).toBe(false);
    d.upstream(PASV_5001);
    expect(d.log.includes('U> RETR f')).toBe(false);
    d.opened(1, { client: 50000 });
    expect(d.log.slice(-3)).toEqual(['C< 227 Entering Passive Mode (203,0,113,1,195,80).', 'label RETR', 'U> RETR f']);
    expect(d.core.wantsClientInput).toBe(true);
  });

  it('input queued while the upstream delays its 227 is bounded: past MAX_PENDING the session ends', () => {
    const d = Driver.ready();
    d.client('PASV');
    for (let i = 0; i < MAX_PENDING + 5; i++) d.client('NOOP');
    expect(d.log.filter((l) => l.startsWith('end'))).toEqual(['end too-many-pipelined | 421 Too many commands without reply.']);
    expect(d.log.filter((l) => l === 'U> NOOP')).toEqual([]);
  });

  it('a multi-line reply longer than the collect cap: the extra lines are dropped and counted, nothing goes out of turn', () => {
    const d = Driver.ready();
    d.client('NOOP', 'FEAT');
    d.upstream('200 noop', '211-Features:');
    for (let i = 0; i < MAX_COLLECTED_LINES + 10; i++) d.upstream(` X${i}`);
    expect(d.log.filter((l) => l.startsWith('C<'))).toEqual(['C< 200 noop']);
    d.upstream('211 End');
    expect(d.log).toContain('note discarded upstream reply-too-long 11');
    const replies = d.log.filter((l) => l.startsWith('C<'));
    expect(replies).toHaveLength(2);
    expect(replies[1]?.startsWith('C< 211-Features:\r\n X0\r\n')).toBe(true);
    expect(replies[1]?.endsWith(' EPSV\r\n EPRT\r\n211 End')).toBe(true);
  });
});

describe('control core: the greeting', () => {
  it('nothing of the client is read before the greeting; a multi-line 220 is passed whole, then input flows', () => {
    const d = new Driver();
    expect(d.core.wantsClientInput).toBe(false);
    d.core.upstreamConnected({ address: '192.0.2.10', local: '192.0.2.1' });
    d.upstream('220-Welcome', '220 ready');
    expect(d.log).toEqual(['C< 220-Welcome', 'C< 220 ready', 'ready']);
    expect(d.core.wantsClientInput).toBe(true);
  });

  it('a 421 greeting is not passed on at once: Session may try another upstream', () => {
    const d = new Driver();
    d.core.upstreamConnected({ address: '192.0.2.10', local: '192.0.2.1' });
    d.upstream('421 Too many users');
    expect(d.log).toEqual(['upstream refused | 421 Too many users']);
    expect(d.core.upstreamLost()).toBe(true);
    d.core.upstreamConnected({ address: '192.0.2.11', local: '192.0.2.1' });
    d.upstream('220 hi');
    expect(d.log.slice(1)).toEqual(['C< 220 hi', 'ready']);
    expect(d.core.endpoints.upstream).toBe('192.0.2.11');
  });

  it('once ready the upstream cannot be swapped', () => {
    const d = Driver.ready();
    expect(d.core.upstreamLost()).toBe(false);
  });
});

const TLS: ControlTls = { client: 'optional', implicit: false, upstream: 'plain', requireProtP: false };
const REQUIRED: ControlTls = { ...TLS, client: 'required', requireProtP: true };

describe('control core: FTPS (RFC 4217)', () => {
  const tlsRows: Row[] = [
    { name: 'AUTH TLS: 234 from the gateway, then the handshake; nothing goes upstream', settings: { tls: TLS }, steps: ['C:AUTH TLS'], expected: ['C< 234 AUTH TLS successful, proceed with negotiation.', 'secureClient'] },
    { name: 'AUTH SSL is accepted too (curl sends it first)', settings: { tls: TLS }, steps: ['C:AUTH SSL'], expected: ['C< 234 AUTH TLS successful, proceed with negotiation.', 'secureClient'] },
    { name: 'AUTH with an unknown mechanism: 504', settings: { tls: TLS }, steps: ['C:AUTH KERBEROS_V4'], expected: ['note refused AUTH auth-mechanism', 'C< 504 AUTH mechanism not supported, use AUTH TLS.'] },
    { name: 'PBSZ before AUTH: 503', settings: { tls: TLS }, steps: ['C:PBSZ 0'], expected: ['note refused PBSZ needs-auth', 'C< 503 PBSZ needs AUTH TLS first.'] },
    { name: 'PROT before AUTH: 503', settings: { tls: TLS }, steps: ['C:PROT P'], expected: ['note refused PROT needs-auth', 'C< 503 PROT needs AUTH TLS first.'] },
    { name: 'CCC is refused: the control connection stays protected', settings: { tls: TLS }, steps: ['C:CCC'], expected: ['note refused CCC ccc-refused', 'C< 534 CCC not allowed: the control connection stays protected.'] },
    { name: 'required: USER before TLS never reaches the upstream (530)', settings: { tls: REQUIRED }, steps: ['C:USER alice'], expected: ['note refused USER login-needs-tls', 'C< 530 Login requires TLS: send AUTH TLS first.'] },
    { name: 'required: PASS before TLS never reaches the upstream (530)', settings: { tls: REQUIRED }, steps: ['C:PASS secret'], expected: ['note refused PASS login-needs-tls', 'C< 530 Login requires TLS: send AUTH TLS first.'] },
    { name: 'required: a data command before TLS (534)', settings: { tls: REQUIRED }, steps: ['C:PASV'], expected: ['note refused PASV needs-tls', 'C< 534 Request denied for policy reasons: send AUTH TLS first.'] },
    { name: 'required: FEAT, NOOP and QUIT pass before TLS', settings: { tls: REQUIRED }, steps: ['C:NOOP', 'C:QUIT'], expected: ['U> NOOP', 'U> QUIT'] },
    { name: 'optional: cleartext works as before', settings: { tls: TLS }, steps: ['C:USER alice', 'U:331 pass', 'C:PASV', `U:${PASV_5001}`, 'opened:50000/'], expected: ['U> USER alice', 'C< 331 pass', CLOSE_WAITING, 'U> PASV', OPEN_PASSIVE, 'C< 227 Entering Passive Mode (203,0,113,1,195,80).'] },
  ];
  it.each(tlsRows.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    expect(play(row)).toEqual(row.expected);
  });

  it('after the handshake: PBSZ 0 and PROT P are answered here, and data connections carry TLS on the client leg', () => {
    const d = Driver.ready({ tls: REQUIRED });
    d.client('AUTH TLS');
    d.clientSecured();
    d.clear();
    d.client('PBSZ 0', 'PROT P', 'PASV');
    d.upstream(PASV_5001);
    d.opened(1, { client: 50000 });
    expect(d.log).toEqual(['C< 200 PBSZ=0', 'C< 200 Protection level set to Private.', CLOSE_WAITING, 'U> PASV', `${OPEN_PASSIVE} tls=C-`, 'C< 227 Entering Passive Mode (203,0,113,1,195,80).']);
  });

  it('required with PROT C: a data command is refused with 521, PROT C itself with 534', () => {
    const d = Driver.ready({ tls: REQUIRED });
    d.client('AUTH TLS');
    d.clientSecured();
    d.clear();
    d.client('PROT C', 'EPSV');
    expect(d.log).toEqual([
      'note refused PROT prot-c-refused',
      'C< 534 Clear data connections are not allowed here, use PROT P.',
      CLOSE_WAITING,
      'note refused EPSV needs-prot-p',
      'C< 521 Data connections must be protected: send PBSZ 0 and PROT P.',
    ]);
  });

  it('plaintext pipelined behind AUTH TLS is discarded, never acted upon (command injection)', () => {
    const d = Driver.ready({ tls: TLS });
    d.client('AUTH TLS', 'USER injected', 'PORT 198,51,100,7,23,112');
    expect(d.core.wantsClientInput).toBe(false);
    d.clientSecured();
    expect(d.log).toEqual(['C< 234 AUTH TLS successful, proceed with negotiation.', 'secureClient', 'note discarded client plaintext-after-auth 2']);
    expect(d.core.wantsClientInput).toBe(true);
  });

  it('a second AUTH on a secure connection: 503', () => {
    const d = Driver.ready({ tls: TLS });
    d.client('AUTH TLS');
    d.clientSecured();
    d.clear();
    expect(d.client('AUTH TLS')).toEqual(['note refused AUTH already-secure', 'C< 503 Already using TLS.']);
  });

  it('implicit: the connection is secure from the start, PROT P works at once', () => {
    const d = Driver.ready({ tls: { ...TLS, implicit: true } });
    expect(d.client('PBSZ 0', 'PROT P')).toEqual(['C< 200 PBSZ=0', 'C< 200 Protection level set to Private.']);
  });

  it('FEAT lists AUTH TLS, PBSZ and PROT exactly when the site offers TLS', () => {
    const d = Driver.ready({ tls: TLS });
    d.client('FEAT');
    d.upstream('211-Features:', ' MDTM', '211 End');
    expect(d.log.at(-1)).toBe('C< 211-Features:\r\n MDTM\r\n EPSV\r\n EPRT\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n211 End');
  });

  it('upstream explicit: after its 220 the gateway sends AUTH TLS, handshakes, PBSZ 0, PROT P; only then the client is greeted', () => {
    const d = new Driver({ tls: { ...TLS, upstream: 'explicit' } });
    d.core.upstreamConnected({ address: '192.0.2.10', local: '192.0.2.1' });
    d.upstream('220 vsftpd');
    expect(d.log).toEqual(['U> AUTH TLS']);
    d.upstream('234 Proceed with negotiation.');
    expect(d.log.at(-1)).toBe('secureUpstream');
    d.upstreamSecured();
    expect(d.log.slice(-2)).toEqual(['U> PBSZ 0', 'U> PROT P']);
    d.upstream('200 PBSZ set to 0.', '200 PROT now Private.');
    expect(d.log.slice(-2)).toEqual(['C< 220 vsftpd', 'ready']);
    // data connections: the upstream leg is TLS too
    d.clear();
    d.client('PASV');
    d.upstream(PASV_5001);
    expect(d.log).toContain(`${OPEN_PASSIVE} tls=-U`);
  });

  it('upstream explicit refused (AUTH answered 500): the session ends with 421', () => {
    const d = new Driver({ tls: { ...TLS, upstream: 'explicit' } });
    d.core.upstreamConnected({ address: '192.0.2.10', local: '192.0.2.1' });
    d.upstream('220 plain only', '500 AUTH not understood');
    expect(d.log.at(-1)).toBe('end upstream-tls-failed | 421 Service not available, TLS to the upstream failed.');
  });

  it('upstream implicit: no AUTH, straight to PBSZ and PROT', () => {
    const d = new Driver({ tls: { ...TLS, upstream: 'implicit' } });
    d.core.upstreamConnected({ address: '192.0.2.10', local: '192.0.2.1' });
    d.upstream('220 tls');
    expect(d.log).toEqual(['U> PBSZ 0', 'U> PROT P']);
  });
});

describe('control core: greet first, connect later (forward proxies, routing by user or host)', () => {
  const greetFirst = (settings: Partial<ControlSettings> = {}) => {
    const d = new Driver({ greetFirst: true, ...settings });
    d.start();
    return d;
  };

  it('the gateway greets at once and answers FEAT, SYST, NOOP alone; PASS first is 503, other commands 530', () => {
    const d = greetFirst();
    expect(d.log).toEqual(['C< 220 ftp-alg ready.']);
    expect(d.core.wantsClientInput).toBe(true);
    d.clear();
    d.client('SYST', 'NOOP', 'PASS x', 'LIST');
    expect(d.log).toEqual([
      'C< 215 UNIX Type: L8',
      'C< 200 NOOP ok.',
      'note refused PASS login-first',
      'C< 503 Login with USER first.',
      'note refused LIST not-logged-in',
      'C< 530 Please login with USER and PASS.',
    ]);
  });

  it('USER names the route; once the chosen upstream greets, the login is replayed and its reply reaches the client', () => {
    const d = greetFirst();
    d.clear();
    d.client('USER alice@ftp.example.org', 'PASS secret');
    expect(d.log).toEqual(['route USER alice@ftp.example.org']);
    expect(d.core.wantsClientInput).toBe(false);
    d.routed('alice');
    d.connected();
    d.upstream('220-Welcome', '220 remote ready');
    expect(d.log.slice(1)).toEqual(['ready', 'U> USER alice']);
    d.upstream('331 Password required');
    d.upstream('230 Logged in');
    expect(d.log.slice(3)).toEqual(['C< 331 Password required', 'U> PASS secret', 'C< 230 Logged in', 'loggedIn']);
  });

  it('HOST picks the upstream, is answered 220 once it greeted; USER then goes through as usual', () => {
    const d = greetFirst();
    d.clear();
    d.client('HOST ftp.a.example');
    d.routed(undefined);
    d.connected();
    d.upstream('220 a');
    d.client('USER bob');
    expect(d.log).toEqual(['route HOST ftp.a.example', 'ready', 'C< 220 Host accepted.', 'U> USER bob']);
  });

  it('a refused route answers the command and the client may try again', () => {
    const d = greetFirst();
    d.clear();
    d.client('USER eve@169.254.169.254');
    d.routeRefused('530 Destination not allowed.');
    d.client('USER eve@ftp.example.org');
    expect(d.log).toEqual(['route USER eve@169.254.169.254', 'C< 530 Destination not allowed.', 'route USER eve@ftp.example.org']);
  });

  it('QUIT before a route: 221 and the end', () => {
    const d = greetFirst();
    d.clear();
    expect(d.client('QUIT')).toEqual(['C< 221 Goodbye.', 'end client-quit']);
  });

  it('with TLS: AUTH TLS is answered before any upstream exists, and a required site refuses USER in cleartext', () => {
    const d = greetFirst({ tls: REQUIRED });
    d.clear();
    d.client('USER alice@ftp.example.org');
    expect(d.log).toEqual(['note refused USER login-needs-tls', 'C< 530 Login requires TLS: send AUTH TLS first.']);
    d.clear();
    d.client('AUTH TLS');
    d.clientSecured();
    d.client('USER alice@ftp.example.org');
    expect(d.log).toEqual(['C< 234 AUTH TLS successful, proceed with negotiation.', 'secureClient', 'route USER alice@ftp.example.org']);
  });
});
