// A scripted FTP upstream for the kernel-plane e2e suite, run inside the
// server namespace: `node scriptedUpstream.mjs <host> <payloadBytes>`. Unlike a
// real server, its passive data listener accepts every connection (each gets
// the whole payload), so a second connection that fails was refused by the
// gateway, not by the server. PORT/EPRT targets get the payload on RETR.
import net from 'node:net';

const [host, size] = [process.argv[2], Number(process.argv[3])];
const payload = Buffer.alloc(size);
for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff;

function dataListener(onReady) {
  const server = net.createServer((s) => {
    console.log(`data from ${s.remoteAddress}`);
    s.on('error', () => undefined);
    s.end(payload);
  });
  server.listen(0, host, () => onReady(server.address().port));
}

net
  .createServer((control) => {
    control.on('error', () => undefined);
    let target;
    const say = (line) => control.write(`${line}\r\n`);
    say('220 scripted');
    let buffered = '';
    control.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      let nl;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl).replace(/\r$/, '');
        buffered = buffered.slice(nl + 1);
        const [verb, arg = ''] = [line.split(' ')[0].toUpperCase(), line.slice(line.indexOf(' ') + 1)];
        if (verb === 'USER') say('331 pass');
        else if (verb === 'PASS') say('230 in');
        else if (verb === 'PASV') dataListener((p) => say(`227 Entering Passive Mode (${host.split('.').join(',')},${p >> 8},${p & 255}).`));
        else if (verb === 'EPSV') dataListener((p) => say(`229 Entering Extended Passive Mode (|||${p}|)`));
        else if (verb === 'PORT') {
          const n = arg.split(',').map(Number);
          target = { host: n.slice(0, 4).join('.'), port: n[4] * 256 + n[5] };
          console.log(`port ${target.host}:${target.port}`);
          say('200 PORT ok');
        } else if (verb === 'RETR' && target !== undefined) {
          say('150 sending');
          const s = net.connect({ host: target.host, port: target.port, localAddress: host }, () => s.end(payload));
          s.on('error', () => say('425 no data connection'));
          s.on('close', () => say('226 done'));
          target = undefined;
        } else if (verb === 'QUIT') {
          say('221 bye');
          control.end();
        } else say('200 ok');
      }
    });
  })
  .listen(21, host, () => console.log('ready'));
