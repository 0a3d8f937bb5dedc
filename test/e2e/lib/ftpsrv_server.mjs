// ftp-srv (the Node FTP server the integration suites use) as a real server
// in the server namespace: anonymous, rooted in argv[2], on 192.0.2.10:2100,
// its own address in every 227. Prints "ready" once listening; SIGTERM stops it.
import { FtpSrv } from 'ftp-srv';

const [root, host = '192.0.2.10', port = '2100'] = process.argv.slice(2);
const noop = () => undefined;
const log = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, fatal: noop, child: () => log };
const server = new FtpSrv({ url: `ftp://${host}:${port}`, pasv_url: host, pasv_min: 40200, pasv_max: 40299, anonymous: true, log });
server.on('login', (_data, resolve) => resolve({ root }));
await server.listen();
console.log('ready');
process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
