// VM HA (manual 高可用): vm-instances action `setHaLevel {level: NeverStop|OnHostFailure|None}`
// and the HA monitor that restarts VMs.
//
// Host failure must be proven, never guessed from a silent agent (a network split would start
// a VM twice). A host's VMs are restarted elsewhere only when all of these hold:
//   1. the host tracker made the host Disconnected with its kvmagent silent (its VMs Unknown);
//   2. its storage heartbeat (storageagent writes <shared PS>/.tstack-ha/<host>.json every
//      heartbeatIntervalMs; storageagent/ha.ts) did not change for hostDeadAfterMs, as read by
//      a Connected peer host of the same cluster and timed on the controller's clock;
//   3. fencing: the peer finds no QEMU holding its image lock on the VM's disks (QEMU locks its
//      images; a half-dead host still running the VM keeps the lock, and a second QEMU could not
//      open the disk anyway). A VM whose disk is held stays Unknown, with the reason.
// A host without shared primary storage cannot be proven dead: its VMs stay Unknown (reason).
// Then NeverStop and OnHostFailure VMs go Stopped (reservation on the dead host released) and
// start on another host (allocator + affinity; the dead host is Disconnected so never chosen);
// each restart emits the agent-bus event `VmHaStarted` and sets `lastHaStartDate`. No capacity:
// the VM stays Stopped with `haReason` and is retried every retryMs.
// A NeverStop VM that stopped without an API call (QEMU killed, guest poweroff) is marked
// `_haPending` by watchVmEvents (vm.ts) and started again here. An API stop never is.
// When the dead host comes back, syncVms reports VMs HA moved away as unmanaged; kvmagent's
// domains of VMs recorded on another host are destroyed there (vmsync.ts) so none runs twice.
import { logger } from '../../shared/log.js';
import * as H from '../../shared/protocol/ha.js';
import type { PrimaryStorageSpec } from '../../shared/protocol/storage.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { releaseHost } from '../allocator/host.js';
import { attachedTo } from '../model/attachments.js';
import { psSpec } from '../storage/index.js';
import type { HostAgents } from '../host/service.js';
import { callHost, mustGet, type CloudDeps } from '../cloud/common.js';
import { startStoppedVm } from './vm-power.js';

const log = logger('vm-ha');

export interface HaOptions {
  /** How often the monitor looks (default 5 s). */
  checkIntervalMs?: number;
  /** How often each host writes its storage heartbeat (default 2 s). */
  heartbeatIntervalMs?: number;
  /** A heartbeat unchanged this long (controller clock) is silent (default 12 s). */
  hostDeadAfterMs?: number;
  /** A failed HA start is tried again after this long (default 30 s). */
  retryMs?: number;
}

const HA_VM = new Set(['NeverStop', 'OnHostFailure']);
const SHARED = new Set(['SharedMountPoint', 'NFS']);

export interface HostVerdict {
  dead: boolean;
  reason: string;
}

/**
 * The heartbeat part of a host's death, pure: `beats` as read now by a peer; `seen` is what the
 * monitor remembers (the beat it last saw change, and when). Any beat the peer could not read
 * makes the verdict "not proven"; a changed beat is alive; an unchanged one for deadAfterMs is dead.
 */
export function judgeHeartbeat(beats: H.Beat[], seen: { key: string; since: number } | undefined, now: number, deadAfterMs: number): { verdict: HostVerdict; seen: { key: string; since: number } } {
  const unreadable = beats.filter((b) => b.error);
  const key = beats.map((b) => `${b.psUuid}=${b.writer ?? '-'}:${b.seq ?? '-'}`).join(',');
  const next = seen && seen.key === key ? seen : { key, since: now };
  if (unreadable.length) return { verdict: { dead: false, reason: `the heartbeat on primary storage ${unreadable.map((b) => b.psUuid).join(', ')} is unreadable from the peer: ${unreadable[0]!.error}` }, seen: next };
  const silentFor = now - next.since;
  // reasons without running numbers: they are stored on the VM only when they change
  if (silentFor < deadAfterMs) return { verdict: { dead: false, reason: seen && seen.key !== key ? 'the storage heartbeat still beats' : `the storage heartbeat has not changed for ${deadAfterMs} ms yet` }, seen: next };
  return { verdict: { dead: true, reason: `no agent answers and the storage heartbeat stopped ${silentFor} ms ago` }, seen: next };
}

export class HaMonitor {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private seen = new Map<string, { key: string; since: number }>();
  private configured = new Map<string, string>();
  private lastTry = new Map<string, number>();
  readonly checkIntervalMs: number;
  readonly heartbeatIntervalMs: number;
  readonly hostDeadAfterMs: number;
  readonly retryMs: number;

  constructor(
    private readonly d: CloudDeps,
    o: HaOptions = {},
  ) {
    this.checkIntervalMs = o.checkIntervalMs ?? 5_000;
    this.heartbeatIntervalMs = o.heartbeatIntervalMs ?? 2_000;
    this.hostDeadAfterMs = o.hostDeadAfterMs ?? 12_000;
    this.retryMs = o.retryMs ?? 30_000;
  }

  start(): this {
    this.stopped = false;
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.round()
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'HA round failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.checkIntervalMs);
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

  /** One pass: heartbeats configured, dead hosts' VMs restarted, pending restarts retried. */
  async round(): Promise<void> {
    this.psThisRound = new Map();
    try {
      await this.roundHosts();
    } finally {
      this.psThisRound = undefined;
    }
    await this.retryPending();
  }

  private async roundHosts(): Promise<void> {
    const hosts = (await this.d.store.list({ kind: 'host' })).items;
    for (const h of hosts) {
      if (h.status === 'Connected') {
        this.seen.delete(h.uuid);
        await this.ensureHeartbeat(h).catch((e: unknown) => log.warn({ host: h.uuid, err: (e as Error).message }, 'could not configure the storage heartbeat'));
      } else if (h.status === 'Disconnected') {
        await this.checkHost(h, hosts).catch((e: unknown) => log.warn({ host: h.uuid, err: (e as Error).message }, 'HA check of a disconnected host failed'));
      }
    }
  }

  /** A round's shared storages by cluster: read once per cluster per round, not per host (a local primary storage's record holds every host's capacity: ~90 KB at 1,000 hosts). */
  private psThisRound: Map<string, Promise<Resource[]>> | undefined;

  private sharedPs(clusterUuid: string): Promise<Resource[]> {
    const memo = this.psThisRound;
    let p = memo?.get(clusterUuid);
    if (!p) {
      p = this.readSharedPs(clusterUuid);
      memo?.set(clusterUuid, p);
      // a failed read is not kept for the rest of the round
      p.catch(() => memo?.delete(clusterUuid));
    }
    return p;
  }

  private async readSharedPs(clusterUuid: string): Promise<Resource[]> {
    const out: Resource[] = [];
    for (const u of await attachedTo(this.d.store, 'cluster-primary-storage', clusterUuid)) {
      const ps = await this.d.store.get(u);
      if (ps && SHARED.has(String(ps.type)) && ps.state !== 'Disabled') out.push(ps);
    }
    return out;
  }

  /** Tell a connected host's storageagent where to beat (again after it restarted or the storages changed). */
  private async ensureHeartbeat(h: Resource): Promise<void> {
    const ps = await this.sharedPs(String(h.parentUuid));
    const agents = h._agents as HostAgents | undefined;
    const key = `${ps.map((p) => p.uuid).sort().join(',')}|${String(agents?.storageagent?.startedAt ?? '')}|${String(h.lastConnectDate ?? '')}`;
    if (this.configured.get(h.uuid) === key) return;
    // tried once per agent start / reconnect / storage change: a storage it cannot beat on is logged, not retried every round
    this.configured.set(h.uuid, key);
    const r = await callHost(this.d, h.uuid, 'storageagent', H.HeartbeatSet, { hostUuid: h.uuid, ps: ps.map((p) => psSpec(p)), intervalMs: this.heartbeatIntervalMs });
    if (r.skipped?.length) log.warn({ host: h.uuid, skipped: r.skipped }, 'no storage heartbeat on some shared primary storage of this host');
  }

  private async checkHost(host: Resource, all: Resource[]): Promise<void> {
    this.configured.delete(host.uuid);
    const vms = (await this.d.store.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: host.uuid }, { field: 'state', op: '=', value: 'Unknown' }] })).items.filter((v) => HA_VM.has(String(v.haLevel)));
    if (!vms.length) {
      this.seen.delete(host.uuid);
      return;
    }
    const ps = await this.sharedPs(String(host.parentUuid));
    if (!ps.length) return this.hold(vms, `host ${host.name} is unreachable, but with no shared primary storage in its cluster its death cannot be proven (no storage heartbeat): not restarted`);
    const peers = all.filter((h) => h.uuid !== host.uuid && h.parentUuid === host.parentUuid && h.status === 'Connected');
    const paths = new Map<string, string[]>();
    for (const vm of vms) paths.set(vm.uuid, await this.diskPaths(vm));
    let res: { beats: H.Beat[]; volumesInUse: string[] } | undefined;
    let lastErr = 'no other Connected host in the cluster';
    for (const p of peers) {
      try {
        res = await callHost(this.d, p.uuid, 'storageagent', H.HeartbeatCheck, { hostUuid: host.uuid, ps: ps.map((x) => psSpec(x)) as PrimaryStorageSpec[], volumePaths: [...paths.values()].flat() });
        break;
      } catch (e) {
        lastErr = `${p.name}: ${(e as Error).message}`;
      }
    }
    if (!res) return this.hold(vms, `host ${host.name} is unreachable; no peer host could read its storage heartbeat (${lastErr}): not restarted`);
    const j = judgeHeartbeat(res.beats, this.seen.get(host.uuid), Date.now(), this.hostDeadAfterMs);
    this.seen.set(host.uuid, j.seen);
    if (!j.verdict.dead) return this.hold(vms, `host ${host.name} is unreachable but not proven dead: ${j.verdict.reason}`);
    const inUse = new Set(res.volumesInUse);
    for (const vm of vms) {
      const held = paths.get(vm.uuid)!.filter((p) => inUse.has(p));
      if (held.length) {
        await this.hold([vm], `host ${host.name} looks dead, but a QEMU still holds the lock on ${held.join(', ')}: not restarted elsewhere`);
        continue;
      }
      const local = await this.localVolumes(vm);
      if (local.length) {
        await this.hold([vm], `host ${host.name} is dead; the VM's volume(s) ${local.join(', ')} are on its local storage: it cannot start elsewhere`);
        continue;
      }
      await this.failOver(vm, host, j.verdict.reason);
    }
  }

  private async diskPaths(vm: Resource): Promise<string[]> {
    const vols = (await this.d.store.list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: vm.uuid }] })).items;
    return vols.map((v) => String(v.installPath ?? '')).filter((p) => p.startsWith('/'));
  }

  private async localVolumes(vm: Resource): Promise<string[]> {
    const vols = (await this.d.store.list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: vm.uuid }] })).items;
    const out: string[] = [];
    for (const v of vols) {
      const ps = await this.d.store.get(String(v.primaryStorageUuid));
      if (ps?.type === 'LocalStorage') out.push(v.name);
    }
    return out;
  }

  private async hold(vms: Resource[], reason: string): Promise<void> {
    for (const vm of vms) {
      if (vm.haReason === reason) continue;
      log.warn({ vm: vm.uuid, host: vm.hostUuid }, reason);
      await this.d.store.update(vm.uuid, { haReason: reason }).catch(() => undefined);
    }
  }

  /** The dead host's VM: Stopped there (reservation released), then started on another host. */
  private async failOver(vm: Resource, host: Resource, why: string): Promise<void> {
    const stopped = await this.d.engine.queues.run([vm.uuid], async () => {
      const cur = await this.d.store.get(vm.uuid);
      if (!cur || cur.state !== 'Unknown' || cur.hostUuid !== host.uuid) return false;
      await this.d.store.transition(vm.uuid, 'Unknown', 'Stopped', { hostUuid: undefined, lastHostUuid: host.uuid, _haFromHost: host.uuid, _haPending: `host ${host.name} failed: ${why}` });
      await releaseHost(this.d.store, host.uuid, vm.uuid);
      return true;
    });
    if (stopped) await this.restart(vm.uuid, host.uuid);
  }

  /** Start a VM HA owes a start; on failure it stays Stopped with the reason and is retried later. */
  private async restart(vmUuid: string, fromHostUuid?: string): Promise<void> {
    this.lastTry.set(vmUuid, Date.now());
    const vm = await mustGet(this.d.store, vmUuid, 'vm-instance');
    const cause = String(vm._haPending ?? 'HA');
    try {
      const now = new Date().toISOString();
      const r = await startStoppedVm(this.d, vmUuid, undefined, { lastHaStartDate: now });
      this.lastTry.delete(vmUuid);
      log.warn({ vm: vmUuid, from: fromHostUuid ?? vm.lastHostUuid, to: r.hostUuid, cause }, 'VM started by HA');
      this.d.bus.publishAgentEvent({ type: 'VmHaStarted', hostUuid: String(r.hostUuid), agent: 'tstack-controller', time: now, data: { vmUuid, vmName: vm.name, fromHostUuid: fromHostUuid ?? vm.lastHostUuid, toHostUuid: r.hostUuid, reason: cause } });
    } catch (e) {
      const reason = `HA could not start the VM (${cause}): ${(e as Error).message}`;
      log.warn({ vm: vmUuid }, reason);
      await this.d.store.update(vmUuid, { haReason: reason }).catch(() => undefined);
    }
  }

  private async retryPending(): Promise<void> {
    const vms = (await this.d.store.list({ kind: 'vm-instance', filters: [{ field: 'state', op: '=', value: 'Stopped' }] })).items.filter((v) => v._haPending && HA_VM.has(String(v.haLevel)));
    for (const vm of vms) {
      const last = this.lastTry.get(vm.uuid);
      if (last !== undefined && Date.now() - last < this.retryMs) continue;
      await this.restart(vm.uuid);
    }
  }
}

async function setHaLevel(vm: Resource, p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const level = String(p.level);
  // None also cancels a restart HA still owed the VM
  return oc.store.update(vm.uuid, level === 'None' ? { haLevel: 'None', _haPending: undefined, haReason: undefined } : { haLevel: level });
}

export function registerHaApi(reg: ApiRegistry): void {
  // schema from the model: {level}
  if (!reg.action('vm-instances', 'setHaLevel')?.run) reg.registerAction('vm-instances', 'setHaLevel', { long: false, run: setHaLevel });
}
