// What every VM operation of the kvmagent needs: the hypervisor driver, the network backend, the
// state watcher, the options, and the small waits and lookups the operations share.
import { access, constants } from 'node:fs/promises';
import { TStackError } from '../../shared/errors.js';
import type { RequestOf, ResponseOf } from '../../shared/protocol/command.js';
import type * as kvm from '../../shared/protocol/kvm.js';
import { domainName, parseDomainXml, type ParsedDomain } from '../domain-xml.js';
import type { HypervisorDriver } from '../hypervisor/driver.js';
import type { NetworkBackend } from '../network/bridges.js';
import type { StateWatcher } from '../watcher.js';

export interface VmServiceOptions {
  /** Check that volume files, ISOs and NIC bridges exist before starting (default true). */
  checkHostResources?: boolean;
  /** Poll interval while waiting for a state or device change (default 200 ms). */
  pollMs?: number;
}

export type Res<C> = ResponseOf<C>;
export type Req<C> = RequestOf<C>;

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new TStackError('CANCELLED', 'aborted'));
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new TStackError('CANCELLED', 'aborted'));
      },
      { once: true },
    );
  });

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export class VmContext {
  /** Whether host resources (files, bridges) are checked before use. */
  readonly check: boolean;
  readonly pollMs: number;

  constructor(
    readonly driver: HypervisorDriver,
    readonly network: NetworkBackend,
    readonly watcher: StateWatcher,
    opts: VmServiceOptions = {},
  ) {
    this.check = opts.checkHostResources ?? true;
    this.pollMs = opts.pollMs ?? 200;
  }

  async parsed(name: string): Promise<ParsedDomain> {
    return parseDomainXml(await this.driver.xml(name));
  }

  /** The domain name of a VM that runs here in one of the allowed states, or a typed error. */
  async mustRun(uuid: string, what: string, allowed: kvm.VmStateT[] = ['Running', 'Paused']): Promise<string> {
    const name = domainName(uuid);
    const cur = await this.driver.get(name);
    if (!cur || !cur.active) throw new TStackError('VM_NOT_FOUND', `${what}: VM ${uuid} is not running on this host`, { uuid });
    if (!allowed.includes(cur.state)) throw new TStackError('CONFLICT', `${what}: VM ${uuid} is ${cur.state}`, { uuid, state: cur.state });
    return name;
  }

  async waitInactive(name: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.driver.get(name);
      if (!s || !s.active) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())), signal);
    }
  }

  async waitDeviceGone(name: string, pred: (p: ParsedDomain) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!pred(await this.parsed(name))) return true;
      if (Date.now() >= deadline) return false;
      await sleep(this.pollMs, signal);
    }
  }
}
