#!/usr/bin/env node
/**
 * ftp-alg command line: `--config FILE` (or FTP_ALG_CONFIG; JSON, or YAML
 * for .yaml/.yml) runs the gateway; `--check-config FILE` validates and
 * exits, naming the file, line and key of a problem. Exit codes follow
 * sysexits(3) where systemd users look for them: 0 done, 1 failure or
 * invalid config under --check-config, 64 usage, 78 invalid config at start.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pinControlThread } from './common/controlCpus.js';
import { raiseControlThread } from './common/controlPriority.js';
import { EX_CONFIG, EX_FAILURE, EX_USAGE } from './common/exitCodes.js';
import { ConfigError, loadConfigFile } from './config/load.js';
import type { GatewayConfig } from './config/types.js';
import { Gateway } from './edge/Gateway.js';
import { runBalancerAgent } from './deploy/agentCommand.js';
import { DEPLOY_OPTIONS, DEPLOY_USAGE, type DeployValues, deployCommand } from './deploy/command.js';
import { createLogger } from './observe/logger.js';

const USAGE = `Usage: ftp-alg --config FILE        run the gateway (or set FTP_ALG_CONFIG=FILE)
       ftp-alg --check-config FILE  validate FILE (JSON, or YAML if it ends in .yaml/.yml): exit 0 valid, 1 invalid
${DEPLOY_USAGE}
       ftp-alg --version | --help`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let values: DeployValues & { 'check-config'?: string; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        'check-config': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
        ...DEPLOY_OPTIONS,
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`ftp-alg: ${(err as Error).message}\n${USAGE}\n`);
    return EX_USAGE;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version === true) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (values['balancer-agent'] === true) return runBalancerAgent(values);
  const deploy = deployCommand(values);
  if (deploy !== undefined) {
    process.stdout.write(deploy.stdout);
    process.stderr.write(deploy.stderr);
    return deploy.code;
  }
  const check = values['check-config'];
  if (check !== undefined) return checkConfig(check);
  const file = values.config ?? process.env.FTP_ALG_CONFIG;
  if (file === undefined || file === '') {
    process.stderr.write(`ftp-alg: no configuration: give --config FILE or set FTP_ALG_CONFIG\n${USAGE}\n`);
    return EX_USAGE;
  }
  let config: GatewayConfig;
  try {
    config = loadConfigFile(file);
  } catch (err) {
    process.stderr.write(`ftp-alg: invalid configuration: ${(err as Error).message}\n`);
    return err instanceof ConfigError ? EX_CONFIG : EX_FAILURE;
  }
  return run(config, file);
}

function checkConfig(file: string): number {
  try {
    const config = loadConfigFile(file);
    process.stdout.write(`${file}: valid, ${config.sites.length} site(s)\n`);
    return 0;
  } catch (err) {
    // `file:line:column: key: problem` (the line when the key is written in the file), as compilers print it.
    process.stderr.write(`${err instanceof ConfigError ? err.message : `${file}: ${(err as Error).message}`}\ninvalid configuration\n`);
    return 1;
  }
}

async function run(config: GatewayConfig, file: string): Promise<number> {
  const log = createLogger(config.log.level);
  // Before anything starts threads or processes: they then begin at the ordinary priority (reset on fork).
  raiseControlThread(config.controlPriority, log);
  pinControlThread(config.controlPriority.cpus, log);
  const gateway = new Gateway(config, log);
  // Signals are handled from the first moment: a SIGTERM that arrives while the sites start still drains.
  let stopping = false;
  let finish: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      gateway.destroy();
      finish(1);
      return;
    }
    stopping = true;
    log.info({ signal }, 'stopping: no new sessions, waiting for running ones');
    void gateway.close().then(() => {
      log.info('stopped');
      finish(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {
    if (stopping || !gateway.running) return;
    let next: GatewayConfig;
    try {
      next = loadConfigFile(file);
    } catch (err) {
      const refusal = err instanceof ConfigError ? { key: err.key, line: err.line } : {};
      log.error({ file, ...refusal, problem: (err as Error).message }, 'reload refused: invalid configuration; the running one stays');
      gateway.metrics.reloaded(false);
      return;
    }
    gateway.reload(next).catch((err: unknown) => log.error({ err }, 'reload failed'));
  });
  try {
    await gateway.start();
  } catch (err) {
    log.fatal({ err }, 'cannot start');
    gateway.destroy();
    return 1;
  }
  if (!stopping) log.info({ sites: config.sites.length, dataPlane: gateway.dataPlaneKind }, 'started');
  return finished; // a signal during start drains once the start is done (Gateway.close waits for it)
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 500).unref(); // a lingering handle must not keep a stopped gateway alive
  },
  (err: unknown) => {
    process.stderr.write(`ftp-alg: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
