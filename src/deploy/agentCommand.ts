/**
 * `ftp-alg --balancer-agent`: runs the balancer's health checks until
 * SIGTERM or SIGINT. Its log is pino JSON lines on stdout, at the config's
 * log.level.
 */
import { createLogger } from '../observe/logger.js';
import { BalancerAgent } from './BalancerAgent.js';
import { balancerAgentSetup, type DeployValues } from './command.js';

export async function runBalancerAgent(values: DeployValues): Promise<number> {
  const setup = balancerAgentSetup(values);
  if ('code' in setup) {
    process.stderr.write(setup.stderr);
    return setup.code;
  }
  const log = createLogger(setup.logLevel);
  const agent = new BalancerAgent({ ...setup, log });
  const signal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  agent.start();
  log.info({ signal: await signal }, 'balancer agent stopping');
  await agent.stop();
  return 0;
}
