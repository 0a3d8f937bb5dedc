/** One class per failure, each with a stable code (undici's UND_ERR_* pattern). */

export class AlgError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'AlgError';
  }
}

export class PortExhaustedError extends AlgError {
  constructor(range: string) {
    super('ERR_ALG_PORT_EXHAUSTED', `no free port in ${range}`);
  }
}

export class PinholeLimitError extends AlgError {
  constructor(
    limit: number,
    readonly scope: 'session' | 'client',
  ) {
    super('ERR_ALG_PINHOLE_LIMIT', `${scope} already holds ${limit} pinholes`);
  }
}

export class BindError extends AlgError {
  constructor(cause: string) {
    super('ERR_ALG_BIND', `cannot bind a pinhole: ${cause}`);
  }
}

export class PortInUseError extends AlgError {
  /** How many distinct ports were tried, each found held by another program. */
  constructor(readonly attempts: number) {
    super('ERR_ALG_PORT_IN_USE', attempts === 1 ? '1 port tried, held by another program' : `${attempts} ports tried, all held by other programs`);
  }
}

/** The kernel data plane refused or could not run a command (nft, conntrack). */
export class KernelPlaneError extends AlgError {
  constructor(
    readonly op: string,
    detail: string,
  ) {
    super('ERR_ALG_KERNEL', `kernel data plane ${op} failed: ${detail}`);
  }
}
