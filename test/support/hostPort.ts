/**
 * PORT/EPRT arguments and 227/229 replies in tests: the one place tests
 * format and read them. Written here by hand from RFC 959 and RFC 2428,
 * not with the gateway's codec (src/ftp/hostPort.ts), so that a codec bug
 * cannot hide in both sides of a test. The parsers throw: in a test, a
 * reply that does not parse is a failure.
 */

export interface Target {
  readonly address: string;
  readonly port: number;
}

/** `h1,h2,h3,h4,p1,p2` (RFC 959 4.1.2, PORT argument). */
export function portArg(address: string, port: number): string {
  return `${address.split('.').join(',')},${Math.floor(port / 256)},${port % 256}`;
}

/** `|1|a.b.c.d|port|` or `|2|v6|port|` (RFC 2428 2, EPRT argument). */
export function eprtArg(address: string, port: number): string {
  return `|${address.includes(':') ? 2 : 1}|${address}|${port}|`;
}

/** `227 <text> (h1,h2,h3,h4,p1,p2).` with its terminator, for a fake upstream to send. */
export function pasvReply(address: string, port: number, text = 'Entering Passive Mode'): string {
  return `227 ${text} (${portArg(address, port)}).\r\n`;
}

/** The address and port of six comma-separated numbers, each 0-255, the port not 0. */
function hostPort(numbers: readonly string[], text: string): Target {
  const n = numbers.map(Number);
  if (n.length !== 6 || n.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`no host-port in: ${text}`);
  const port = (n[4] as number) * 256 + (n[5] as number);
  if (port === 0) throw new Error(`port 0 in: ${text}`);
  return { address: n.slice(0, 4).join('.'), port };
}

/** The address and port of a `227 …(h1,h2,h3,h4,p1,p2)…` reply line. */
export function parse227(text: string): Target {
  const m = /^227[ -].*?(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(text);
  if (m === null) throw new Error(`not a 227 with a host-port: ${text}`);
  return hostPort(m.slice(1), text);
}

/** The port of a `229 … (|||port|)` reply line (any one delimiter, four times). */
export function parse229(text: string): number {
  const m = /^229[ -].*\((.)\1\1(\d+)\1\)/.exec(text);
  const port = Number(m?.[2]);
  if (m === null || !(port >= 1 && port <= 65535)) throw new Error(`not a 229 with a port: ${text}`);
  return port;
}

/** The verb, address and port of a PORT or EPRT line (as an upstream received it). */
export function parseActiveLine(line: string): Target & { verb: 'PORT' | 'EPRT' } {
  const port = /^PORT (\d+),(\d+),(\d+),(\d+),(\d+),(\d+)$/i.exec(line);
  if (port !== null) return { verb: 'PORT', ...hostPort(port.slice(1), line) };
  const eprt = /^EPRT (.)([12])\1([^|!#]+)\1(\d+)\1$/i.exec(line);
  const p = Number(eprt?.[4]);
  if (eprt !== null && p >= 1 && p <= 65535) return { verb: 'EPRT', address: eprt[3] as string, port: p };
  throw new Error(`not a PORT/EPRT line: ${line}`);
}
