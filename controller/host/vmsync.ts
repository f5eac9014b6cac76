// VM state sync of one host from kvmagent vm/sync: the inventory is corrected to what the
// hypervisor reports (every change through store.transition, so a concurrent workflow wins);
// VMs running on the host that the inventory does not place there are reported (log + event
// 'host.vm.unmanaged'), never destroyed — except the stale copy of a VM that HA restarted on
// another host after declaring this one dead (compute/ha.ts): that copy is destroyed (fencing). A VM the inventory has Stopped on this very host but
// that runs here is corrected to Running (drift the other way round, peers' pain point 2).
// Host capacity follows: a VM corrected to Stopped gives its CPU/memory reservation back, one
// corrected to Running holds it again. The domain of a VM destroyed while this host was down
// is destroyed (host/fence.ts).
import { logger } from '../../shared/log.js';
import * as kvm from '../../shared/protocol/kvm.js';
import type { Resource } from '../store/types.js';
import { holdHost, releaseHost } from '../allocator/host.js';
import { endpoint, type HostAgents, type HostDeps } from './service.js';
import { inventoryStateOf, syncDecisions, type SyncDecision } from './states.js';
import { fencedOn, unfence } from './fence.js';

const log = logger('host-vmsync');

export interface SyncReport {
  changed: SyncDecision[];
  /** Running/paused on the host, not placed there by the inventory. */
  unmanaged: Array<{ vmUuid: string; state: string; inventoryState?: string; inventoryHostUuid?: string }>;
  /** Domains tstack did not create (reported only). */
  foreign: number;
}

export function emitHostEvent(d: HostDeps, hostUuid: string, type: string, data: Record<string, unknown>): void {
  d.bus?.publishAgentEvent({ type, hostUuid, agent: 'tstack-controller', time: new Date().toISOString(), data });
}

export async function syncVms(d: HostDeps, host: Resource, reason = 'sync'): Promise<SyncReport> {
  const agents = host._agents as HostAgents | undefined;
  if (!agents) return { changed: [], unmanaged: [], foreign: 0 };
  const res = await d.agentClient.call(kvm.VmSync, endpoint(host, agents.kvmagent), { includeForeign: true }, { timeoutMs: 60_000 });
  const onHost = new Map(res.vms.map((v) => [v.uuid, v.state as string]));
  const inventory = (await d.store.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: host.uuid }] })).items;
  const report: SyncReport = { changed: [], unmanaged: [], foreign: res.foreign.length };
  for (const c of syncDecisions(inventory, onHost)) {
    try {
      await d.store.transition(c.vmUuid, c.from, c.to, c.to === 'Stopped' ? { hostUuid: undefined, lastHostUuid: host.uuid } : {});
      // after the transition: if a concurrent operation won, the reservation stays its business
      if (c.to === 'Stopped') await releaseHost(d.store, host.uuid, c.vmUuid);
      report.changed.push(c);
      log.info({ host: host.uuid, vm: c.vmUuid, from: c.from, to: c.to, reason }, 'vm state corrected from the hypervisor');
      emitHostEvent(d, host.uuid, 'vm.state.synced', { vmUuid: c.vmUuid, from: c.from, to: c.to, reason });
    } catch (e) {
      log.info({ vm: c.vmUuid, err: (e as Error).message }, 'vm changed meanwhile; leaving it to its operation');
    }
  }
  const known = new Set(inventory.map((v) => v.uuid));
  // domains of VMs destroyed while this host was down (host/fence.ts)
  const fenced = fencedOn((await d.store.get(host.uuid)) ?? host);
  // gone from the host already, or legitimately back on it (recovered and started here)
  const settled = fenced.filter((u) => !onHost.has(u) || known.has(u));
  for (const u of fenced.filter((x) => onHost.has(x) && !known.has(x))) {
    try {
      await d.agentClient.call(kvm.VmDestroy, endpoint(host, agents.kvmagent), { uuid: u }, { timeoutMs: 60_000 });
      settled.push(u);
      onHost.delete(u);
      log.warn({ host: host.uuid, vm: u }, 'destroyed the domain of a VM destroyed while this host was down');
      emitHostEvent(d, host.uuid, 'host.vm.fenced', { vmUuid: u, reason: 'destroyed while the host was down' });
    } catch (e) {
      log.warn({ host: host.uuid, vm: u, err: (e as Error).message }, 'could not destroy the domain of a VM destroyed while this host was down (next sync retries)');
    }
  }
  await unfence(d.store, host.uuid, settled);
  for (const v of res.vms) {
    if (!onHost.has(v.uuid)) continue;
    if (known.has(v.uuid) || !['Running', 'Paused'].includes(v.state)) continue;
    const inv = await d.store.get(v.uuid);
    if (inv && inv.kind === 'vm-instance' && inv._haFromHost === host.uuid && typeof inv.hostUuid === 'string' && inv.hostUuid !== host.uuid) {
      // HA declared this host dead and started the VM elsewhere: this copy is the stale one (fencing on return)
      try {
        await d.agentClient.call(kvm.VmDestroy, endpoint(host, agents.kvmagent), { uuid: v.uuid }, { timeoutMs: 60_000 });
        log.warn({ host: host.uuid, vm: v.uuid, runsOn: inv.hostUuid }, 'destroyed the stale copy of a VM HA restarted on another host');
        emitHostEvent(d, host.uuid, 'host.vm.fenced', { vmUuid: v.uuid, runsOn: inv.hostUuid });
        continue;
      } catch (e) {
        log.warn({ host: host.uuid, vm: v.uuid, err: (e as Error).message }, 'could not destroy the stale copy of a VM HA restarted elsewhere');
      }
    }
    if (inv && inv.kind === 'vm-instance' && inv.state === 'Stopped' && (inv.lastHostUuid === host.uuid || inv.hostUuid === undefined)) {
      const to = inventoryStateOf(v.state)!;
      try {
        await d.store.transition(inv.uuid, 'Stopped', to, { hostUuid: host.uuid });
        await holdHost(d.store, host.uuid, inv.uuid, { cpu: Number(inv.cpuNum ?? 0), memory: Number(inv.memorySize ?? 0) });
        report.changed.push({ vmUuid: inv.uuid, from: 'Stopped', to });
        log.warn({ host: host.uuid, vm: inv.uuid, to }, 'vm recorded Stopped runs on this host: inventory corrected');
        emitHostEvent(d, host.uuid, 'vm.state.synced', { vmUuid: inv.uuid, from: 'Stopped', to, reason });
        continue;
      } catch {
        /* fall through to reporting */
      }
    }
    const u: SyncReport['unmanaged'][number] = { vmUuid: v.uuid, state: v.state };
    if (inv?.state) u.inventoryState = inv.state;
    if (typeof inv?.hostUuid === 'string') u.inventoryHostUuid = inv.hostUuid;
    report.unmanaged.push(u);
    log.warn({ host: host.uuid, ...u }, 'a VM runs on this host that the inventory does not place here; left running (check it: destroy it on the host or recover it in tstack)');
    emitHostEvent(d, host.uuid, 'host.vm.unmanaged', { ...u });
  }
  return report;
}
