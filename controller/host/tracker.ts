// Host tracking: ping every agent of every host each interval (an agent that answered a real
// request since its host's last round is not pinged: its answer told what a ping tells).
//  - maxMisses (3) rounds in a row without an answer from an agent → host Disconnected (with the
//    reason); if kvmagent is among the silent ones, the host's Running/Paused VMs → Unknown
//    (store.transition; VMs in transitional states belong to their workflow).
//  - answers again → connect again (new event token), Connected, VM state sync from vm/sync.
//  - an agent that restarted (startedAt changed) is connected again (it lost its controller binding);
//    so is every host once per controller process (event tokens live in the controller's memory):
//    a Connected host not yet bound by this process is connected without a ping first.
//  - a changed bootId: the host rebooted → VM sync (VMs not running there → Stopped) + event.
//  - an agent of another version → reconnect (re-deploy).
//  - a host that stays Disconnected (and is not in Maintenance) is reconnected over SSH every
//    autoReconnectMs (60 s): the re-deploy restarts dead agents.
//  - a host left Connecting by a controller that stopped mid-add/reconnect is resolved the same
//    way (never stuck): pinged if its agents are known, else Disconnected at once.
//  - several controllers on one (Redis) inventory: each host is tracked by the one controller
//    holding its lease 'host-tracker:<uuid>' (store compare-and-set, renewed every round). A
//    controller that dies stops renewing; after the TTL the next round of another controller
//    takes the host, rebinds its agents (their events now go there), syncs its VM states and
//    tracks it. A clean stop gives the leases back at once; the same controller restarted
//    (same machine and data directory) takes its leases back at once.
//  - pings are spread: each round's hosts are started over the first half of the interval in a
//    per-host order that changes every round, at most `concurrency` at a time, so 1,000 hosts
//    coming back after a controller restart are rebound in waves, not all at once.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { logger } from '../../shared/log.js';
import { Leases } from '../workflow/lease.js';
import type { Resource } from '../store/types.js';
import { AGENTS, type AgentName } from './render.js';
import { connectAgents, controllerVersion, endpoint, pingAgents, rebind, reconnectHost, runtimeOf, type HostAgents, type HostDeps } from './service.js';
import type { AgentLiveness } from '../../shared/protocol/index.js';
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
  /** When each host's last track ended: only agent answers after it stand in for a ping. */
  private tracked = new Map<string, number>();
  /** Shared inventory only: which controller tracks which host. */
  private readonly leases: Leases | undefined;
  /**
   * This controller as a lease holder: the same after a restart on this machine with this data
   * directory, so a restarted controller takes its own hosts back at once instead of waiting
   * out the TTL of the leases its previous process held.
   */
  readonly holder: string;
  readonly leaseTtlMs: number;
  readonly concurrency: number;
  private held = new Set<string>();

  constructor(private readonly d: HostDeps) {
    this.intervalMs = d.options?.pingIntervalMs ?? 10_000;
    this.maxMisses = d.options?.maxMisses ?? 3;
    this.pingTimeoutMs = d.options?.pingTimeoutMs ?? Math.min(5_000, Math.max(500, this.intervalMs));
    this.autoReconnectMs = d.options?.autoReconnectMs ?? 60_000;
    this.concurrency = Math.max(1, d.options?.trackerConcurrency ?? 32);
    // a round lasts the interval plus its pings: the lease outlives two of them
    this.leaseTtlMs = d.options?.trackerLeaseTtlMs ?? Math.max(3 * this.intervalMs, 3 * this.pingTimeoutMs, 5_000);
    this.leases = d.store.backend === 'redis' ? new Leases(d.store) : undefined;
    this.holder = `tracker-${createHash('sha256').update(`${hostname()}\0${d.dataDir}`).digest('hex').slice(0, 24)}`;
  }

  /** Hosts this tracker holds the lease of (shared inventory), else undefined. */
  leased(): ReadonlySet<string> | undefined {
    return this.leases ? this.held : undefined;
  }

  start(): this {
    this.stopped = false;
    // several controllers: each applies the network services of the hosts it tracks
    if (this.leases) this.d.reconcile?.setOwner({ owns: (h: string) => this.held.has(h) });
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

  private halted = false;

  /** Stop tracking and keep the leases, as a controller that died would (tests; another controller takes over after the TTL). */
  async halt(): Promise<void> {
    this.halted = true;
    await this.stop();
  }

  /** Stop tracking and give the host leases back, so another controller takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    if (this.leases && !this.halted) {
      await Promise.all([...this.held].map((u) => this.leases!.release(leaseKey(u), this.holder).catch(() => undefined)));
      this.held.clear();
    }
  }

  /** One round over the hosts this controller tracks: spread over half the interval, bounded parallelism. */
  async round(): Promise<void> {
    const hosts = await this.mine((await this.d.store.list({ kind: 'host' })).items);
    const busy = runtimeOf(this.d).busy;
    const queue = hosts.filter((h) => !busy.has(h.uuid)).sort(() => Math.random() - 0.5);
    const spreadMs = queue.length > this.concurrency ? this.intervalMs / 2 : 0;
    const t0 = Date.now();
    const total = queue.length;
    let started = 0;
    const workers = Array.from({ length: Math.min(this.concurrency, queue.length) }, async () => {
      for (let h = queue.shift(); h && !this.stopped; h = queue.shift()) {
        // the n-th host of the round starts no earlier than n/total of the spread
        const due = t0 + (spreadMs * started++) / total;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        await this.track(h).catch((e: unknown) => log.warn({ host: h!.uuid, err: (e as Error).message }, 'tracking a host failed'));
      }
    });
    await Promise.all(workers);
  }

  /**
   * With a shared inventory, the hosts whose lease this controller holds or takes now: all of
   * them in a few store calls (issue 19: one lease read and renewal per host cost 3 round trips
   * and an event each, 300 Redis calls/s at 1,000 hosts).
   */
  private async mine(hosts: Resource[]): Promise<Resource[]> {
    if (!this.leases) return hosts;
    let ours: Set<string>;
    try {
      ours = await this.leases.tryAcquireMany(hosts.map((h) => leaseKey(h.uuid)), this.holder, this.leaseTtlMs, this.concurrency);
    } catch (e) {
      // nothing tracked this round; what we hold and the miss counts are kept (the leases outlive
      // two rounds: the next one renews them, or another controller takes them after the TTL)
      log.warn({ err: (e as Error).message }, 'host tracker leases: store error');
      return [];
    }
    const out: Resource[] = [];
    const gained = new Set<string>();
    for (const h of hosts) {
      if (ours.has(leaseKey(h.uuid))) {
        if (!this.held.has(h.uuid)) {
          log.info({ host: h.uuid }, 'tracking this host (lease taken)');
          gained.add(h.uuid);
        }
        this.held.add(h.uuid);
        out.push(h);
      } else {
        // another controller tracks it: forget our count, and its event binding is theirs
        this.held.delete(h.uuid);
        this.misses.delete(h.uuid);
      }
    }
    // the network services of hosts taken over are this controller's to apply now (what their
    // last tracker applied may be a change behind)
    if (gained.size) void this.d.reconcile?.hostsGained(gained);
    return out;
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
    // a host recorded Connected that this controller has not bound (its first round after a
    // start or a takeover): its agents are connected straight away, since a connect answers
    // what a ping does; one request per agent instead of a ping and then a connect. An agent
    // that refuses the connect (another version) is pinged, and goes the ping way; one that
    // does not answer is silent, as to a ping.
    const unbound = status === 'Connected' && !runtimeOf(d).bound.has(host.uuid);
    let pings: Partial<Record<AgentName, AgentLiveness>>;
    const since = this.tracked.get(host.uuid);
    try {
      if (unbound) {
        const c = await connectAgents(d, host, this.pingTimeoutMs);
        pings = c.infos;
        if (c.refused.length) Object.assign(pings, await pingAgents(d, { ...host, _agents: onlyAgents(agents, c.refused) }, this.pingTimeoutMs, true));
      } else pings = await this.pingUnproven(host, agents, status, since);
      await this.judge(host, agents, status, unbound, pings);
    } finally {
      // answers before this (to this round's pings, connects, syncs) prove nothing for the next round
      this.tracked.set(host.uuid, Date.now());
    }
  }

  /**
   * Ping the agents of a Connected host that did not prove alive since its last round: an
   * agent that answered a real request after it (within the interval) told what a ping tells
   * (X-Agent-Info: version, startedAt, bootId, hostUuid), so its answer stands in for the ping
   * and the rules below see a restart, a reboot or a new version the same way. A host not
   * Connected is always pinged (its way back is unchanged).
   */
  private async pingUnproven(host: Resource, agents: HostAgents, status: HostStatus, since: number | undefined): Promise<Partial<Record<AgentName, AgentLiveness>>> {
    const d = this.d;
    const proven: Partial<Record<AgentName, AgentLiveness>> = {};
    const ask: AgentName[] = [];
    const after = Math.max(since ?? Infinity, Date.now() - this.intervalMs);
    for (const a of AGENTS) {
      const info = status === 'Connected' && agents[a] ? d.agentClient.answeredSince(endpoint(host, agents[a]).url, after) : undefined;
      if (info) proven[a] = info;
      else ask.push(a);
    }
    if (ask.length === 0) return proven;
    return { ...proven, ...(await pingAgents(d, ask.length === AGENTS.length ? host : { ...host, _agents: onlyAgents(agents, ask) }, this.pingTimeoutMs, true)) };
  }

  /** Apply the rules above to what the host's agents answered (undefined: silent). */
  private async judge(host: Resource, agents: HostAgents, status: HostStatus, unbound: boolean, pings: Partial<Record<AgentName, AgentLiveness>>): Promise<void> {
    const d = this.d;
    const justBound = unbound && runtimeOf(d).bound.has(host.uuid);
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
      // a controller that restarted (or took the host over) lost the event tokens (memory
      // only): hand out a new one (done above when every agent took the connect); the events
      // the agents sent meanwhile were refused, so the VM states are read again
      if (justBound) await syncVms(d, host, 'controller (re)connected');
      else if (!runtimeOf(d).bound.has(host.uuid)) {
        await rebind(d, host);
        await syncVms(d, host, 'controller (re)connected');
      }
      return;
    }

    // an agent restarted, the host rebooted or came back: what it was known to have is asked again
    runtimeOf(d).known.forget(host.uuid);
    if ((restarted.length || status !== 'Connected') && !justBound) await rebind(d, host);
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
    if (status !== 'Connected' || rebooted || restarted.includes('kvmagent') || justBound) {
      await syncVms(d, updated, rebooted ? 'host rebooted' : status !== 'Connected' ? 'host reconnected' : restarted.includes('kvmagent') ? 'kvmagent restarted' : 'controller (re)connected');
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
    runtimeOf(d).known.forget(host.uuid);
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

const leaseKey = (hostUuid: string): string => `host-tracker:${hostUuid}`;

/** The agents record with only `names` (the others left out: pingAgents skips them). */
const onlyAgents = (agents: HostAgents, names: readonly AgentName[]): HostAgents => Object.fromEntries(names.map((a) => [a, agents[a]])) as HostAgents;

/** Start tracking all hosts; returns the tracker (stop() it on shutdown). */
export function startHostTracker(d: HostDeps): HostTracker {
  return new HostTracker(d).start();
}
