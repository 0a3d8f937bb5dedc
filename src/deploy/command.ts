/**
 * The deploy generators on the command line: `--k8s-manifests`,
 * `--nftables` and `--balancer` print what they generate from `--config
 * FILE`. The CLI spreads DEPLOY_OPTIONS into its parseArgs options and hands
 * the parsed values here; the result says what to print and the exit code.
 * `--balancer keepalived` prints the balancer hosts' VRRP config (keepalived.ts).
 * `--balancer-agent` is a daemon: balancerAgentSetup checks its line and
 * agentCommand.ts runs it.
 */
import { EX_CONFIG, EX_USAGE } from '../common/exitCodes.js';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { isDnsLabel, KUBE_PATTERNS, kubernetesManifests, ManifestError, type KubePattern } from './kubernetes.js';
import { BALANCER_ENGINES, BalancerError, balancerRules, checkInstances } from './balancer.js';
import { DEFAULT_CHECK_INTERVAL_MS, MIN_CHECK_INTERVAL_MS, probeUrls } from './BalancerAgent.js';
import { nftablesRules } from './nftables.js';
import { DEFAULT_AGENT_UNIT, KeepalivedError, keepalivedConfig } from './keepalived.js';
import type { GatewayConfig } from '../config/types.js';

export const DEPLOY_OPTIONS = {
  'k8s-manifests': { type: 'boolean' },
  nftables: { type: 'boolean' },
  pattern: { type: 'string' },
  name: { type: 'string' },
  namespace: { type: 'string' },
  image: { type: 'string' },
  'upstream-service': { type: 'string' },
  balancer: { type: 'string' },
  instances: { type: 'string' },
  vip: { type: 'string' },
  'balancer-agent': { type: 'boolean' },
  'interval-ms': { type: 'string' },
  interface: { type: 'string' },
  'router-id': { type: 'string' },
  priority: { type: 'string' },
  peers: { type: 'string' },
  'advert-ms': { type: 'string' },
  'inside-vip': { type: 'string' },
  'inside-interface': { type: 'string' },
  'agent-unit': { type: 'string' },
} as const;

export const DEPLOY_USAGE = `       ftp-alg --k8s-manifests --config FILE [--pattern daemonset|loadbalancer|metallb] [--name NAME]
               [--namespace NS] [--image IMAGE] [--upstream-service NAME]
                                    print Kubernetes manifests for the config (YAML)
       ftp-alg --nftables --config FILE  print an nftables ruleset opening exactly the config's ports
       ftp-alg --balancer nftables --config FILE --instances ADDR,ADDR[,...] [--vip ADDR]
                                    print the balancer host's ruleset for instance.count instances
       ftp-alg --balancer keepalived --config FILE --interface IF --router-id N --priority P [--vip ADDR[/len],...]
               [--peers ADDR,...] [--advert-ms N] [--inside-vip ADDR[/len],... --inside-interface IF]
               [--agent-unit UNIT|none]
                                    print keepalived's VRRP config moving the VIP between balancer hosts
       ftp-alg --balancer-agent --config FILE --instances ADDR,ADDR[,...] [--interval-ms N]
                                    keep that ruleset's control map on the instances whose /readyz answers`;

export interface DeployValues {
  readonly config?: string;
  readonly 'k8s-manifests'?: boolean;
  readonly nftables?: boolean;
  readonly pattern?: string;
  readonly name?: string;
  readonly namespace?: string;
  readonly image?: string;
  readonly 'upstream-service'?: string;
  readonly balancer?: string;
  readonly instances?: string;
  readonly vip?: string;
  readonly 'balancer-agent'?: boolean;
  readonly 'interval-ms'?: string;
  readonly interface?: string;
  readonly 'router-id'?: string;
  readonly priority?: string;
  readonly peers?: string;
  readonly 'advert-ms'?: string;
  readonly 'inside-vip'?: string;
  readonly 'inside-interface'?: string;
  readonly 'agent-unit'?: string;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const KUBE_ONLY = ['pattern', 'name', 'namespace', 'image', 'upstream-service'] as const;
const KEEPALIVED_ONLY = ['interface', 'router-id', 'priority', 'peers', 'advert-ms', 'inside-vip', 'inside-interface', 'agent-unit'] as const;

/** The command's outcome, or undefined when the line asks for no deploy command. */
export function deployCommand(values: DeployValues): CommandResult | undefined {
  if (values['balancer-agent'] === true) return undefined; // a daemon: balancerAgentSetup
  if (values['interval-ms'] !== undefined) return usage('--interval-ms goes with --balancer-agent');
  if (values.balancer === 'keepalived') return keepalivedCommand(values);
  const strayKeepalived = KEEPALIVED_ONLY.find((key) => values[key] !== undefined);
  if (strayKeepalived !== undefined) return usage(`--${strayKeepalived} goes with --balancer keepalived`);
  if (values.balancer !== undefined || values.instances !== undefined || values.vip !== undefined) return balancerCommand(values);
  const kube = values['k8s-manifests'] === true;
  const nft = values.nftables === true;
  const stray = KUBE_ONLY.find((key) => values[key] !== undefined);
  if (!kube && !nft) return stray === undefined ? undefined : usage(`--${stray} goes with --k8s-manifests`);
  if (kube && nft) return usage('give one of --k8s-manifests and --nftables');
  if (nft && stray !== undefined) return usage(`--${stray} goes with --k8s-manifests`);
  const pattern = values.pattern ?? 'daemonset';
  if (!isPattern(pattern)) return usage(`--pattern must be ${KUBE_PATTERNS.join(' or ')}, got ${JSON.stringify(pattern)}`);
  for (const key of ['name', 'namespace', 'upstream-service'] as const) {
    const value = values[key];
    if (value !== undefined && !isDnsLabel(value)) return usage(`--${key} must be a DNS label (a-z, 0-9, -), got ${JSON.stringify(value)}`);
  }
  if (values.image === '') return usage('--image must not be empty');
  const file = values.config;
  if (file === undefined || file === '') return usage('give the gateway config with --config FILE');
  try {
    const config = loadConfigFile(file);
    const text = nft
      ? nftablesRules(config)
      : kubernetesManifests(config, {
          pattern,
          name: values.name,
          namespace: values.namespace,
          image: values.image,
          upstreamService: values['upstream-service'],
        });
    return { code: 0, stdout: text, stderr: '' };
  } catch (err) {
    if (err instanceof ConfigError) return { code: EX_CONFIG, stdout: '', stderr: `ftp-alg: ${err.message}\n` }; // it names the file
    if (err instanceof ManifestError) return { code: EX_CONFIG, stdout: '', stderr: `ftp-alg: ${file}: ${err.message}\n` };
    throw err;
  }
}

/** `--balancer ENGINE --instances A,B --config FILE [--vip ADDR]`, alone. */
function balancerCommand(values: DeployValues): CommandResult {
  const engine = values.balancer;
  if (engine === undefined) return usage('--instances and --vip go with --balancer');
  if (!(BALANCER_ENGINES as readonly string[]).includes(engine)) return usage(`--balancer must be ${[...BALANCER_ENGINES, 'keepalived'].join(' or ')}, got ${JSON.stringify(engine)}`);
  if (values['k8s-manifests'] === true || values.nftables === true || KUBE_ONLY.some((key) => values[key] !== undefined)) {
    return usage('--balancer goes alone with --config, --instances and --vip');
  }
  if (values.instances === undefined || values.instances === '') return usage('give the instances\' addresses with --instances A,B,...');
  const file = values.config;
  if (file === undefined || file === '') return usage('give the gateway config with --config FILE');
  try {
    const instances = values.instances.split(',').map((a) => a.trim());
    return { code: 0, stdout: balancerRules(loadConfigFile(file), { instances, vip: values.vip }), stderr: '' };
  } catch (err) {
    if (err instanceof ConfigError) return { code: EX_CONFIG, stdout: '', stderr: `ftp-alg: ${err.message}\n` };
    if (err instanceof BalancerError) return usage(err.message);
    throw err;
  }
}

/** `--balancer keepalived --config FILE --interface IF --router-id N --priority P [...]`, alone. */
function keepalivedCommand(values: DeployValues): CommandResult {
  if (values.instances !== undefined || values['k8s-manifests'] === true || values.nftables === true || KUBE_ONLY.some((key) => values[key] !== undefined)) {
    return usage('--balancer keepalived goes alone with --config, --vip, --interface, --router-id, --priority, --peers, --advert-ms, --inside-vip, --inside-interface and --agent-unit');
  }
  for (const key of ['interface', 'router-id', 'priority'] as const) {
    if (values[key] === undefined || values[key] === '') return usage(`--balancer keepalived needs --${key}`);
  }
  const numbers = { routerId: values['router-id'], priority: values.priority, advertMs: values['advert-ms'] };
  for (const [flag, text] of [['--router-id', numbers.routerId], ['--priority', numbers.priority], ['--advert-ms', numbers.advertMs]] as const) {
    if (text !== undefined && !/^[0-9]{1,6}$/.test(text)) return usage(`${flag} must be a whole number, got ${JSON.stringify(text)}`);
  }
  const file = values.config;
  if (file === undefined || file === '') return usage('give the gateway config with --config FILE');
  try {
    const config = loadConfigFile(file);
    const agentUnit = values['agent-unit'] ?? DEFAULT_AGENT_UNIT;
    const text = keepalivedConfig({
      vips: values.vip === undefined ? externalAddresses(config) : list(values.vip),
      interface: values.interface ?? '',
      routerId: Number(numbers.routerId),
      priority: Number(numbers.priority),
      peers: values.peers === undefined ? [] : list(values.peers),
      advertMs: numbers.advertMs === undefined ? undefined : Number(numbers.advertMs),
      insideVips: values['inside-vip'] === undefined ? undefined : list(values['inside-vip']),
      insideInterface: values['inside-interface'],
      agentUnit: agentUnit === 'none' ? undefined : agentUnit,
    });
    return { code: 0, stdout: text, stderr: '' };
  } catch (err) {
    if (err instanceof ConfigError) return { code: EX_CONFIG, stdout: '', stderr: `ftp-alg: ${err.message}\n` };
    if (err instanceof KeepalivedError) return usage(err.message);
    throw err;
  }
}

/** Every site's external addresses, each once, in config order: the addresses clients are told to use. */
function externalAddresses(config: GatewayConfig): string[] {
  return [...new Set(config.sites.flatMap((site) => (site.externalAddress === 'auto' ? [] : site.externalAddress)))];
}

function list(text: string): string[] {
  return text.split(',').map((a) => a.trim());
}

export interface AgentSetup {
  readonly instances: readonly string[];
  readonly urls: readonly string[];
  readonly intervalMs: number;
  readonly logLevel: string;
}

/** `--balancer-agent --config FILE --instances A,B [--interval-ms N]`: what to run, or why not. */
export function balancerAgentSetup(values: DeployValues): AgentSetup | CommandResult {
  const strayKeepalived = KEEPALIVED_ONLY.find((key) => values[key] !== undefined);
  if (strayKeepalived !== undefined) return usage(`--${strayKeepalived} goes with --balancer keepalived`);
  if (values.balancer !== undefined || values.vip !== undefined || values['k8s-manifests'] === true || values.nftables === true || KUBE_ONLY.some((key) => values[key] !== undefined)) {
    return usage('--balancer-agent goes alone with --config, --instances and --interval-ms');
  }
  if (values.instances === undefined || values.instances === '') return usage('give the instances\' addresses with --instances A,B,...');
  const interval = values['interval-ms'] ?? String(DEFAULT_CHECK_INTERVAL_MS);
  if (!/^[1-9][0-9]{0,6}$/.test(interval) || Number(interval) < MIN_CHECK_INTERVAL_MS) {
    return usage(`--interval-ms must be a whole number of milliseconds from ${MIN_CHECK_INTERVAL_MS}, got ${JSON.stringify(interval)}`);
  }
  const file = values.config;
  if (file === undefined || file === '') return usage('give the gateway config with --config FILE');
  try {
    const config = loadConfigFile(file);
    const instances = values.instances.split(',').map((a) => a.trim());
    checkInstances(config, instances);
    return { instances, urls: probeUrls(config, instances), intervalMs: Number(interval), logLevel: config.log.level };
  } catch (err) {
    if (err instanceof ConfigError) return { code: EX_CONFIG, stdout: '', stderr: `ftp-alg: ${err.message}\n` };
    if (err instanceof BalancerError) return usage(err.message);
    throw err;
  }
}

function isPattern(text: string): text is KubePattern {
  return (KUBE_PATTERNS as readonly string[]).includes(text);
}

function usage(problem: string): CommandResult {
  return { code: EX_USAGE, stdout: '', stderr: `ftp-alg: ${problem}\n` };
}
