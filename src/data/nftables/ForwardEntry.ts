/**
 * A transparent site's direct passive data on the kernel plane (issue 15
 * item 5): the client dials the server's own data port through the edge, and
 * one element of fwd4/fwd6 admits exactly that flow. The `gate` chain
 * consumes the element at the client's first SYN and marks the flow
 * (DIRECT_MARK), which the edge's forward chain accepts: a second
 * connection, another port or another client finds no element and meets the
 * chain's `policy drop`. No NAT and no port of ours: the gateway never sees
 * the flow, so it holds the entry only until the accept deadline, a new
 * PASV, ABOR or the session's end, whichever comes first.
 */
import { familyOf } from '../../common/address.js';
import { KernelPlaneError } from '../../common/errors.js';
import type { Logger } from '../../observe/logger.js';
import type { ForwardRequest, PinholeHandle } from '../DataPlane.js';
import type { PinholeState } from '../Pinhole.js';
import type { ElementDriver } from './ElementDriver.js';
import { type ForwardKey, forwardCloseOps, forwardOpenOps } from './ruleset.js';

export interface ForwardEntryDeps {
  readonly elements: ElementDriver;
  /** False while the plane's tools are down: the entry is refused (425), never assumed. */
  readonly healthy: () => boolean;
  readonly onError: (op: string) => void;
}

export class ForwardEntry implements PinholeHandle {
  state: PinholeState = 'new';
  command = '';
  readonly bytes = { up: 0, down: 0 };
  readonly clientPort = undefined;
  readonly upstreamPort = undefined;
  private readonly key: ForwardKey;
  private deadline: NodeJS.Timeout | undefined;
  private added = false;
  private finished = false;
  private readonly closeWaiters: (() => void)[] = [];
  private readonly log: Logger;

  constructor(
    private readonly deps: ForwardEntryDeps,
    private readonly request: ForwardRequest,
  ) {
    const { client, server, port } = request;
    this.key = { family: familyOf(server), client, server, port };
    this.log = request.log.child({ port, dir: 'direct', plane: 'nftables' });
  }

  async open(): Promise<void> {
    if (!this.deps.healthy()) {
      this.close('kernel-down');
      throw new KernelPlaneError('forward-open', 'the kernel data plane is down');
    }
    const { acceptTimeoutMs } = this.request;
    try {
      await this.deps.elements.apply('forward-open', forwardOpenOps(this.key, acceptTimeoutMs));
    } catch (err) {
      this.deps.onError('forward-open');
      this.close('open-failed');
      throw err;
    }
    this.added = true;
    if (this.state === 'closed') return void this.remove(); // closed while the element was on its way
    this.state = 'waiting';
    this.log.debug({ client: this.key.client, server: this.key.server }, 'forward entry open');
    this.deadline = setTimeout(() => this.close('accept-timeout'), acceptTimeoutMs);
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'waiting';
    this.state = 'closed';
    clearTimeout(this.deadline);
    this.log.debug({ reason }, 'forward entry closed');
    if (wasOpen) void this.remove();
    else if (!this.added) this.wake(); // never added (refused, or open() still on its way: it removes it)
  }

  closed(): Promise<void> {
    if (this.finished) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** Consumed by the SYN, timed out or still there: gone after this either way. */
  private async remove(): Promise<void> {
    try {
      await this.deps.elements.apply('forward-close', forwardCloseOps(this.key));
    } catch (err) {
      this.deps.onError('forward-close');
      this.log.warn({ err }, 'forward entry not removed (it times out by itself)');
    }
    this.wake();
  }

  private wake(): void {
    this.finished = true;
    for (const wake of this.closeWaiters.splice(0)) wake();
  }
}
