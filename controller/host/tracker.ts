// Host tracking: ping every agent of every host each interval.
//  - maxMisses (3) rounds in a row without an answer from an agent → host Disconnected (with the
//    reason); if kvmagent is among the silent ones, the host's Running/Paused VMs → Unknown
//    (store.transition; VMs in transitional states belong to their workflow).
//  - answers again → connect again (new event token), Connected, VM state sync from vm/sync.
//  - an agent that restarted (startedAt changed) is connected again (it lost its controller binding);
//    so is every host once per controller process (event tokens live in the controller's memory).
//  - a changed bootId: the host rebooted → VM sync (VMs not running there → Stopped) + event.
//  - an agent of another version → reconnect (re-deploy).
//  - a host that stays Disconnected (and is not in Maintenance) is reconnected over SSH every
//    autoReconnectMs (60 s): the re-deploy restarts dead agents.
//  - a host left Connecting by a controller that stopped mid-add/reconnect is resolved the same
//    way (never stuck): pinged if its agents are known, else Disconnected at once.
import { logger } from '../../shared/log.js';
import type { Resource } from '../store/types.js';
import { AGENTS, type AgentName } from './render.js';
import { controllerVersion, pingAgents, rebind, reconnectHost, runtimeOf, type HostAgents, type HostDeps } from './service.js';
import { nextStatus, VM_STATES_TO_UNKNOWN, type HostStatus } from './states.js';
import { emitHostEvent, syncVms } from './vmsync.js';

const log = logger('host-tracker');

export class HostTracker {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private misses = new Map<string, number>();
  private stopped = false;
  readonly intervalMs: number;
  readonly maxMisses: number;
  readonly pingTimeoutMs: number;
  readonly autoReconnectMs: number;
  private lastAuto = new Map<string, number>();

  constructor(private readonly d: HostDeps) {
    this.intervalMs = d.options?.pingIntervalMs ?? 10_000;
    this.maxMisses = d.options?.maxMisses ?? 3;
    this.pingTimeoutMs = d.options?.pingTimeoutMs ?? Math.min(5_000, Math.max(500, this.intervalMs));
    this.autoReconnectMs = d.options?.autoReconnectMs ?? 60_000;
  }

  start(): this {
    this.stopped = false;
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.round()
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'tracking round failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One round over all hosts (bounded parallelism). */
  async round(): Promise<void> {
    const hosts = (await this.d.store.list({ kind: 'host' })).items;
    const busy = runtimeOf(this.d).busy;
    const queue = hosts.filter((h) => !busy.has(h.uuid));
    const workers = Array.from({ length: Math.min(16, queue.length) }, async () => {
      for (let h = queue.shift(); h; h = queue.shift()) {
        await this.track(h).catch((e: unknown) => log.warn({ host: h!.uuid, err: (e as Error).message }, 'tracking a host failed'));
      }
    });
    await Promise.all(workers);
  }

  /** Ping one host and apply the rules above. */
  async track(host: Resource): Promise<void> {
    const d = this.d;
    const agents = host._agents as HostAgents | undefined;
    const status = (host.status as HostStatus | undefined) ?? 'Connecting';
    if (!agents) {
      if (status === 'Connecting') {
        await d.store.update(host.uuid, { status: 'Disconnected', statusReason: 'the add/reconnect that was deploying this host was interrupted (controller restart); reconnect the host' });
      }
      return;
    }
    const pings = await pingAgents(d, host, this.pingTimeoutMs);
    const silent = AGENTS.filter((a) => !pings[a]);
    const prev = { status, misses: this.misses.get(host.uuid) ?? 0 };
    const next = nextStatus(prev, silent.length === 0, this.maxMisses);
    this.misses.set(host.uuid, next.misses);
    // re-read: an operation may have started meanwhile
    if (runtimeOf(d).busy.has(host.uuid)) return;

    if (!next.ok) {
      if (next.status === 'Disconnected' && status !== 'Disconnected') {
        await this.disconnect(host, silent);
        this.lastAuto.set(host.uuid, Date.now());
      } else if (status === 'Disconnected') this.maybeAutoReconnect(host);
      return;
    }

    const version = controllerVersion(d);
    const stale = AGENTS.filter((a) => pings[a]!.version !== version);
    if (stale.length) {
      log.info({ host: host.uuid, stale }, 'agents of another version answer: reconnecting (re-deploy)');
      void reconnectHost(d, host.uuid).catch((e: unknown) => log.warn({ host: host.uuid, err: (e as Error).message }, 'reconnect after a version change failed'));
      return;
    }
    const restarted = AGENTS.filter((a) => pings[a]!.startedAt !== agents[a].startedAt || pings[a]!.hostUuid !== host.uuid);
    const kvmInfo = pings.kvmagent!;
    const rebooted = typeof host.bootId === 'string' && host.bootId !== kvmInfo.bootId;
    if (status === 'Connected' && restarted.length === 0 && !rebooted) {
      // a controller that restarted lost the event tokens (memory only): hand out a new one
      if (!runtimeOf(d).bound.has(host.uuid)) await rebind(d, host);
      return;
    }

    if (restarted.length || status !== 'Connected') await rebind(d, host);
    const newAgents: HostAgents = { ...agents };
    for (const a of AGENTS) newAgents[a] = { ...agents[a], startedAt: pings[a]!.startedAt };
    const updated = await d.store.update(host.uuid, { status: 'Connected', statusReason: undefined, bootId: kvmInfo.bootId, _agents: newAgents, lastConnectDate: new Date().toISOString() });
    if (status !== 'Connected') {
      log.info({ host: host.uuid, was: status }, 'host answers again: Connected');
      emitHostEvent(d, host.uuid, 'host.connected', { was: status });
    }
    if (rebooted) {
      log.warn({ host: host.uuid, was: host.bootId, now: kvmInfo.bootId }, 'host rebooted');
      emitHostEvent(d, host.uuid, 'host.rebooted', { previousBootId: host.bootId, bootId: kvmInfo.bootId });
    }
    if (status !== 'Connected' || rebooted || restarted.includes('kvmagent')) {
      await syncVms(d, updated, rebooted ? 'host rebooted' : status !== 'Connected' ? 'host reconnected' : 'kvmagent restarted');
    }
  }

  /** Like ZStack's autoReconnectOnError: re-deploy over SSH, which restarts dead agents (no supervisor without systemd). */
  private maybeAutoReconnect(host: Resource): void {
    if (this.autoReconnectMs <= 0 || host.state === 'Maintenance') return;
    const last = this.lastAuto.get(host.uuid) ?? 0;
    if (Date.now() - last < this.autoReconnectMs) return;
    this.lastAuto.set(host.uuid, Date.now());
    log.info({ host: host.uuid }, 'host still Disconnected: reconnecting over SSH');
    void reconnectHost(this.d, host.uuid).catch((e: unknown) => log.warn({ host: host.uuid, err: (e as Error).message }, 'automatic reconnect failed; trying again later'));
  }

  private async disconnect(host: Resource, silent: AgentName[]): Promise<void> {
    const d = this.d;
    const reason = `no answer from ${silent.join(', ')} for ${this.maxMisses} pings`;
    await d.store.update(host.uuid, { status: 'Disconnected', statusReason: reason });
    log.warn({ host: host.uuid, silent }, `host Disconnected: ${reason}`);
    emitHostEvent(d, host.uuid, 'host.disconnected', { reason, silent });
    if (!silent.includes('kvmagent')) return; // VM states are still known from kvmagent
    const vms = (await d.store.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: host.uuid }, { field: 'state', op: '?=', value: [...VM_STATES_TO_UNKNOWN] }] })).items;
    for (const vm of vms) {
      try {
        await d.store.transition(vm.uuid, vm.state!, 'Unknown', { stateBeforeUnknown: vm.state });
      } catch (e) {
        log.info({ vm: vm.uuid, err: (e as Error).message }, 'vm changed meanwhile; not marking it Unknown');
      }
    }
    if (vms.length) log.warn({ host: host.uuid, vms: vms.length }, 'VMs of the disconnected host are Unknown');
  }
}

/** Start tracking all hosts; returns the tracker (stop() it on shutdown). */
export function startHostTracker(d: HostDeps): HostTracker {
  return new HostTracker(d).start();
}
