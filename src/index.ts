/** Public API of ftp-alg. */
export { ConfigError, loadConfigFile, parseConfig } from './config/load.js';
export type { GatewayConfig, SiteConfig, PortRange } from './config/types.js';
export { Gateway, type GatewayStats } from './edge/Gateway.js';
export { createLogger, type Logger } from './observe/logger.js';

import type { GatewayConfig } from './config/types.js';
import { Gateway } from './edge/Gateway.js';
import { createLogger, type Logger } from './observe/logger.js';

/** Build and start a gateway from a validated config. */
export async function createGateway(config: GatewayConfig, log: Logger = createLogger(config.log.level)): Promise<Gateway> {
  const gateway = new Gateway(config, log);
  await gateway.start();
  return gateway;
}
