// State reporting: a fast poll of libvirt's domain states (the Node binding has no event API,
// and a long-running `virsh event` would bypass the exec helper's bounded runs). Each poll is
// one connectListAllDomains + getInfo per domain through the binding: cheap. A change the agent
// did not cause (guest powered off, crashed, paused on an I/O error, someone used virsh) is
// pushed to the controller as a `vm.state-changed` event. Changes during an operation the agent
// runs on that VM are its own and are not reported; the baseline is re-read after the operation.
import { logger } from '../shared/log.js';
import { KvmEvents, type VmStateT } from '../shared/protocol/kvm.js';
import { vmUuidOfDomain, domainName } from './domain-xml.js';
import type { HypervisorDriver } from './hypervisor/driver.js';

const log = logger('kvm-watcher');

export interface StateChange {
  vmUuid: string;
  domainName: string;
  from: VmStateT;
  to: VmStateT;
  reason?: string;
  cause: 'external';
}

export class StateWatcher {
  private last = new Map<string, VmStateT>();
  private busy = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private running = false;
  private polling?: Promise<void>;
  private started = false;
  private baselined = false;

  constructor(
    private readonly driver: HypervisorDriver,
    private readonly emit: (type: string, data: Record<string, unknown>) => void,
    private readonly intervalMs = 1000,
  ) {}

  /** The last known state of each tstack VM (what the metrics report). */
  states(): ReadonlyMap<string, VmStateT> {
    return this.last;
  }

  /** Take the baseline silently (restart safety: nothing is reported or touched), then poll. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      this.last = await this.snapshot();
      this.baselined = true;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'cannot read domains at start; the first poll that can takes the baseline');
    }
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.polling = this.poll()
        .then(() => undefined)
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'state poll failed'))
        .finally(() => {
          this.polling = undefined;
          this.schedule();
        });
    }, this.intervalMs);
    this.timer.unref();
  }

  private async snapshot(): Promise<Map<string, VmStateT>> {
    const m = new Map<string, VmStateT>();
    for (const d of await this.driver.list()) {
      const u = vmUuidOfDomain(d.name);
      if (u) m.set(u, d.state);
    }
    return m;
  }

  /** One poll: compare with the last states, report what changed behind the agent's back. */
  async poll(): Promise<StateChange[]> {
    const now = await this.snapshot();
    if (!this.baselined) {
      // libvirt was unreachable when the agent started: nothing is known to have changed
      this.last = now;
      this.baselined = true;
      return [];
    }
    const changes: StateChange[] = [];
    const uuids = new Set([...this.last.keys(), ...now.keys()]);
    for (const u of uuids) {
      if ((this.busy.get(u) ?? 0) > 0) continue;
      const from = this.last.get(u) ?? 'Stopped';
      const to = now.get(u) ?? 'Stopped';
      if (to === 'Stopped' && !now.has(u)) this.last.delete(u);
      else this.last.set(u, to);
      if (from === to) continue;
      const c: StateChange = { vmUuid: u, domainName: domainName(u), from, to, cause: 'external' };
      const reason = now.has(u) ? await this.driver.reason(c.domainName) : 'domain-removed';
      if (reason) c.reason = reason;
      changes.push(c);
    }
    for (const c of changes) {
      log.info(c, 'VM state changed outside tstack');
      this.emit(KvmEvents.vmStateChanged, { ...c });
    }
    return changes;
  }

  /** Run an agent operation on a VM: its state changes are not reported as external. */
  async during<T>(vmUuid: string, fn: () => Promise<T>): Promise<T> {
    this.busy.set(vmUuid, (this.busy.get(vmUuid) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      // let a poll that started before the op ended finish (bounded: a hung libvirt must not
      // hold the VM's queue), then re-read the baseline
      if (this.polling) await Promise.race([this.polling.catch(() => undefined), new Promise((r) => setTimeout(r, 5_000).unref())]);
      try {
        const s = await this.driver.get(domainName(vmUuid));
        if (s) this.last.set(vmUuid, s.state);
        else this.last.delete(vmUuid);
      } catch {
        /* the next poll will sort it out */
      }
      const n = (this.busy.get(vmUuid) ?? 1) - 1;
      if (n <= 0) this.busy.delete(vmUuid);
      else this.busy.set(vmUuid, n);
    }
  }
}
