// Live migration of a running VM to another host: vm-instances action `migrate {hostUuid?}` (a
// Stopped VM on local storage is migrated cold: cold-migrate.ts). A VM whose root volume is on
// local storage migrates live with its disk (libvirt --copy-storage-all into an empty volume
// made on the destination first) when the global config
// localStoragePrimaryStorage.liveMigrationWithStorage.allow is true (default false, as ZStack);
// like ZStack, not with data volumes on local storage, and not with snapshots (they would stay
// behind: cold migration carries them).
//
// vm-migrate steps (a failure, or a controller that dies at any point, leaves the VM running on
// exactly one host, with its DHCP entry and metadata record on that host):
//   state     Running/Paused → Migrating                            ⟲ back to what it was
//   reserve   CPU/memory on the destination                         ⟲ release it (unless the VM is there)
//   prepare   the L2 bridges, DHCP entry and metadata on the destination ⟲ remove them there (idem)
//   disks     local storage only: an empty volume of the same virtual size on the destination
//                                                                    ⟲ delete it there (idem)
//   migrate   source kvmagent vm/migrate (libvirt peer-to-peer)      — libvirt keeps the domain on
//             the source when it fails; a run that finds the VM already on the destination is done
//   switch    hostUuid → destination (the local volumes' too), source reservation and services
//             released, state restored
//   source-disks  the source's copy of the disks that moved is deleted (best effort; also after a
//             flow that failed once the VM had moved)
// onResume 'complete': a restarted controller re-runs the step in progress; every step is
// idempotent and `migrate` first asks the destination whether the VM is already there.
// Test-only fault injection: TSTACK_FAULT_INJECT=vm-migrate:<step> (cloud/common.ts).
import type Koa from 'koa';
import Router from '@koa/router';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as K from '../../shared/protocol/kvm.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { allocateHost, hostCandidates, rankHosts, releaseHost, type HostRequest, type Rejection } from '../allocator/host.js';
import type { FlowContext, FlowDef } from '../workflow/flow.js';
import { callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { dataVolumesOf } from '../storage/volumes.js';
import { addServices, l2sOf, pinnedHost, removeServices } from './vm-spec.js';
import { coldMigrate } from './cold-migrate.js';
import { affinityOf } from './affinity.js';
import * as S from '../../shared/protocol/storage.js';
import { psSpec } from '../storage/index.js';
import { globalConfigBool } from '../config/global-config.js';

const log = logger('vm-migrate');
const FLOW = 'vm-migrate';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Primary storage types whose files every host of the cluster sees at the same path. */
const SHARED_PS = new Set(['SharedMountPoint', 'NFS', 'Ceph']);

export interface VmMigrateData extends Record<string, unknown> {
  vmUuid: string;
  srcHostUuid: string;
  destHostUuid: string;
  fromState: string;
  /** libvirt must be told to migrate although it cannot prove the storage coherent (ext4 shared mount point). */
  unsafe: boolean;
  /** Local-storage volumes copied by the migration (created empty on the destination first). */
  copyVolumeUuids?: string[];
  reserved?: boolean;
  prepared?: boolean;
  disksCreated?: boolean;
  /** The VM was seen running on the destination: nothing may be undone there any more. */
  arrived?: boolean;
}

type Ctx = FlowContext<VmMigrateData>;

/** Whether every volume of the VM is on shared primary storage (live migration moves no disk). */
export async function onSharedStorage(d: CloudDeps, vm: Resource): Promise<boolean> {
  return (await storageOf(d, vm)).local.length === 0;
}

/** Storage facts of a VM: the root volume's primary storage and whether every volume is shared. */
async function storageOf(d: CloudDeps, vm: Resource): Promise<{ rootPs: Resource; local: Resource[]; unsafe: boolean }> {
  const store = d.store;
  const root = await mustGet(store, String(vm.rootVolumeUuid), 'volume');
  const vols = [root, ...(await dataVolumesOf(d, vm.uuid))];
  const local: Resource[] = [];
  let unsafe = false;
  let rootPs: Resource | undefined;
  for (const v of vols) {
    const ps = await mustGet(store, String(v.primaryStorageUuid), 'primary-storage');
    if (v === root) rootPs = ps;
    if (!SHARED_PS.has(String(ps.type))) local.push(v);
    if (ps.type === 'SharedMountPoint') unsafe = true;
  }
  return { rootPs: rootPs!, local, unsafe };
}

export interface MigrationTargets {
  /** Hosts that can take the VM, best first. */
  hosts: Array<{ uuid: string; name: string }>;
  /** Every other host with the reason it cannot. */
  rejected: Rejection[];
}

/**
 * Where a VM could migrate to (pure ranking over the store's snapshot; nothing is reserved): a
 * running VM live, from its host; a stopped one on local storage cold (`cold`), from the host its
 * volumes are on — its volumes travel between the storage agents, so the libvirt address checks
 * do not apply.
 */
export async function migrationTargets(d: CloudDeps, vm: Resource, hostUuid?: string, o: { cold?: boolean } = {}): Promise<MigrationTargets> {
  const store = d.store;
  const src = String(o.cold ? await pinnedHost(d, vm) : vm.hostUuid);
  const { rootPs } = await storageOf(d, vm);
  const req: HostRequest = { cpuNum: Number(vm.cpuNum), memorySize: Number(vm.memorySize), l2NetworkUuids: await l2sOf(d, vm.l3NetworkUuids as string[]), primaryStorageUuid: rootPs.uuid, hypervisorType: 'KVM', avoidHostUuids: [src] };
  if (hostUuid) req.hostUuid = hostUuid;
  // its affinity group: antiHard hosts are refused with the reason, antiSoft ones come last
  const aff = await affinityOf(store, vm);
  if (aff.policy === 'antiHard') req.excluded = aff.excluded;
  const cands = await hostCandidates(store, req);
  const { ranked: r0, rejected } = rankHosts(cands, req);
  const ranked = aff.policy === 'antiSoft' ? [...r0.filter((f) => !aff.excluded[f.candidate.host.uuid]), ...r0.filter((f) => aff.excluded[f.candidate.host.uuid])] : r0;
  const hosts: MigrationTargets['hosts'] = [];
  // a destination on loopback is reachable only from a source on the same machine (simulated hosts)
  const srcLoopback = String((await store.get(src))?.managementIp ?? '').startsWith('127.');
  for (const f of ranked) {
    const h = f.candidate.host;
    if (o.cold) hosts.push({ uuid: h.uuid, name: h.name });
    else if (!IPV4.test(String(h.managementIp))) rejected.push({ hostUuid: h.uuid, name: h.name, reason: `management address ${String(h.managementIp)} is not an IPv4 address (libvirt migrates over it)` });
    else if (String(h.managementIp).startsWith('127.') && !srcLoopback) rejected.push({ hostUuid: h.uuid, name: h.name, reason: `management address ${String(h.managementIp)} is loopback: other hosts cannot migrate into it` });
    else hosts.push({ uuid: h.uuid, name: h.name });
  }
  return { hosts, rejected: rejected.map((r) => (r.hostUuid === src ? { ...r, reason: 'the VM runs there' } : r)) };
}

const stepDeps = (ctx: Ctx): CloudDeps => ctx.controller;

/** Is the VM's domain running on the destination right now? (An unreachable agent counts as no.) */
async function runsOn(d: CloudDeps, hostUuid: string, vmUuid: string): Promise<boolean> {
  try {
    const s = await callHost(d, hostUuid, 'kvmagent', K.VmGetState, { uuid: vmUuid });
    return s.state === 'Running' || s.state === 'Paused';
  } catch {
    return false;
  }
}

/** The VM record follows the domain to the destination; the source's reservation and services go (idempotent). */
async function switchToDestination(ctx: Ctx): Promise<void> {
  const d = stepDeps(ctx);
  const { vmUuid, srcHostUuid, destHostUuid } = ctx.data;
  const vm = await mustGet(ctx.store, vmUuid, 'vm-instance');
  if (ctx.data.copyVolumeUuids?.length) {
    const dest = await mustGet(ctx.store, destHostUuid, 'host');
    for (const u of ctx.data.copyVolumeUuids) await ctx.store.update(u, { hostUuid: destHostUuid, clusterUuid: dest.parentUuid });
  }
  await ctx.store.update(vmUuid, { hostUuid: destHostUuid, lastHostUuid: srcHostUuid, state: vm.state === 'Migrating' ? ctx.data.fromState : vm.state });
  await releaseHost(ctx.store, srcHostUuid, vmUuid);
  // the source's DHCP entry and metadata record: best effort (a dead source keeps stale ones)
  if (await ctx.store.get(srcHostUuid)) {
    await removeServices(d, vmUuid, srcHostUuid).catch((e: unknown) => log.warn({ vm: vmUuid, host: srcHostUuid, err: (e as Error).message }, 'could not remove the VM services on the source host'));
  }
}

export const vmMigrateFlow: FlowDef<VmMigrateData> = {
  name: FLOW,
  onResume: 'complete',
  steps: [
    {
      name: 'state',
      async run(ctx) {
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        if (vm.state !== 'Migrating') await ctx.store.transition(vm.uuid, ctx.data.fromState, 'Migrating');
      },
      async rollback(ctx) {
        const vm = await ctx.store.get(ctx.data.vmUuid);
        if (vm?.state === 'Migrating') await ctx.store.update(vm.uuid, { state: ctx.data.fromState });
      },
    },
    {
      name: 'reserve',
      async run(ctx) {
        const d = stepDeps(ctx);
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        ctx.data.reserved = true;
        await ctx.save();
        ctx.progress(10, 'reserving capacity on the destination');
        await allocateHost(ctx.store, { cpuNum: Number(vm.cpuNum), memorySize: Number(vm.memorySize), l2NetworkUuids: await l2sOf(d, vm.l3NetworkUuids as string[]), hypervisorType: 'KVM', hostUuid: ctx.data.destHostUuid }, vm.uuid);
        injectFault(FLOW, 'reserve');
      },
      async rollback(ctx) {
        if (ctx.data.reserved && !ctx.data.arrived) await releaseHost(ctx.store, ctx.data.destHostUuid, ctx.data.vmUuid);
      },
    },
    {
      name: 'prepare',
      async run(ctx) {
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        ctx.data.prepared = true;
        await ctx.save();
        ctx.progress(20, 'bridges, DHCP and metadata on the destination');
        // addServices also creates the bridges of the VM's L2 networks on the host
        await addServices(stepDeps(ctx), vm, ctx.data.destHostUuid);
        injectFault(FLOW, 'prepare');
      },
      async rollback(ctx) {
        if (ctx.data.prepared && !ctx.data.arrived) await removeServices(stepDeps(ctx), ctx.data.vmUuid, ctx.data.destHostUuid);
      },
    },
    {
      name: 'disks',
      async run(ctx) {
        const vols = ctx.data.copyVolumeUuids ?? [];
        if (!vols.length) return;
        const d = stepDeps(ctx);
        // a resumed flow whose VM already moved: the destination's disks are the VM's now
        if (ctx.data.arrived || (await runsOn(d, ctx.data.destHostUuid, ctx.data.vmUuid))) return;
        ctx.data.disksCreated = true;
        await ctx.save();
        ctx.progress(25, 'empty volumes on the destination for the disk copy');
        for (const u of vols) {
          const ps = psSpec(await mustGet(ctx.store, String((await mustGet(ctx.store, u, 'volume')).primaryStorageUuid), 'primary-storage'));
          const info = await callHost(d, ctx.data.srcHostUuid, 'storageagent', S.VolumeInfoCmd, { ps, volumeUuid: u });
          // left over by an earlier attempt that failed: the source's disk is the VM's
          await callHost(d, ctx.data.destHostUuid, 'storageagent', S.DeleteVolume, { ps, volumeUuid: u });
          await callHost(d, ctx.data.destHostUuid, 'storageagent', S.CreateEmptyVolume, { ps, volumeUuid: u, size: info.size });
        }
        injectFault(FLOW, 'disks');
      },
      async rollback(ctx) {
        if (!ctx.data.disksCreated || ctx.data.arrived) return;
        for (const u of ctx.data.copyVolumeUuids ?? []) {
          const vol = await ctx.store.get(u);
          if (!vol) continue;
          const ps = psSpec(await mustGet(ctx.store, String(vol.primaryStorageUuid), 'primary-storage'));
          await callHost(stepDeps(ctx), ctx.data.destHostUuid, 'storageagent', S.DeleteVolume, { ps, volumeUuid: u });
        }
      },
    },
    {
      name: 'migrate',
      async run(ctx) {
        const d = stepDeps(ctx);
        const dest = await mustGet(ctx.store, ctx.data.destHostUuid, 'host');
        if (!ctx.data.arrived && (await runsOn(d, dest.uuid, ctx.data.vmUuid))) ctx.data.arrived = true;
        if (!ctx.data.arrived) {
          ctx.progress(30, `migrating to ${dest.name}`);
          const addr = String(dest.managementIp);
          try {
            const copyStorage = (ctx.data.copyVolumeUuids?.length ?? 0) > 0;
            // sent again after a crash (the VM not yet on the destination), it joins the first run
            const r = await callHost(d, ctx.data.srcHostUuid, 'kvmagent', K.VmMigrate, { uuid: ctx.data.vmUuid, destAddress: addr, destConsoleListen: addr, unsafe: ctx.data.unsafe, copyStorage }, { taskId: ctx.taskId('migrate') });
            log.info({ vm: ctx.data.vmUuid, to: dest.uuid, ms: r.durationMs }, 'live migration done');
          } catch (e) {
            // libvirt fails before the switch-over (the domain stays on the source) or after it
            // (the domain already runs on the destination): ask the destination
            if (!(await runsOn(d, dest.uuid, ctx.data.vmUuid))) throw e;
            log.warn({ vm: ctx.data.vmUuid, err: (e as Error).message }, 'migration reported an error, but the VM runs on the destination');
          }
          ctx.data.arrived = true;
          await ctx.save();
        }
        injectFault(FLOW, 'migrate');
      },
      async rollback(ctx) {
        // the VM left the source: whatever failed afterwards, the records must follow it
        if (ctx.data.arrived) await switchToDestination(ctx);
      },
    },
    {
      name: 'switch',
      async run(ctx) {
        ctx.progress(90, 'switching the VM to the destination');
        await switchToDestination(ctx);
      },
    },
    {
      // in the flow, so a controller that takes it over deletes them too
      name: 'source-disks',
      async run(ctx) {
        await deleteSourceCopies(stepDeps(ctx), ctx.data);
      },
    },
  ],
};

/** The source's copy of the disks that moved (best effort: a failure leaves orphan files, never a VM without a disk). */
async function deleteSourceCopies(d: CloudDeps, data: VmMigrateData): Promise<void> {
  if (!data.copyVolumeUuids?.length || (await d.store.get(data.vmUuid))?.hostUuid !== data.destHostUuid) return;
  for (const u of data.copyVolumeUuids) {
    const vol = await d.store.get(u);
    if (!vol) continue;
    const ps = psSpec(await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage'));
    await callHost(d, data.srcHostUuid, 'storageagent', S.DeleteVolume, { ps, volumeUuid: u }).catch((e: unknown) =>
      log.warn({ vm: data.vmUuid, volume: u, host: data.srcHostUuid, err: (e as Error).message }, 'the disk runs on the destination; its source copy could not be deleted (orphan)'),
    );
  }
}

async function migrateVm(vm: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const want = typeof params.hostUuid === 'string' ? params.hostUuid : undefined;
  if (vm.state === 'Stopped') return coldMigrateVm(oc, vm, want, oc.job);
  return liveMigrate(oc, vm.uuid, want, oc.job);
}

/** The best target of a migration (or `want`), or a 4xx naming why each host cannot take the VM. */
async function pickTarget(d: CloudDeps, vm: Resource, src: string, want: string | undefined, cold: boolean): Promise<string> {
  if (want === src) throw new TStackError('INVALID_ARGUMENT', `migrate.hostUuid: VM ${vm.name} is already on host ${src}`, { field: 'migrate.hostUuid' });
  if (want) await mustGet(d.store, want, 'host', 'migrate.hostUuid');
  const t = await migrationTargets(d, vm, want, { cold });
  const dest = t.hosts[0];
  if (!dest) {
    const why = t.rejected.filter((r) => r.hostUuid !== src).map((r) => `${r.name} (${r.hostUuid}): ${r.reason}`);
    throw new TStackError('CAPACITY_EXCEEDED', `no host can take VM ${vm.name}: ${why.join('; ') || 'there is no other host'}`, { rejected: t.rejected.slice(0, 100) });
  }
  return dest.uuid;
}

/** Cold migration of a Stopped VM on local storage (cold-migrate.ts); shared storage needs none. */
async function coldMigrateVm(d: CloudDeps, vm: Resource, want: string | undefined, job?: OpContext['job']): Promise<Resource> {
  const { local } = await storageOf(d, vm);
  const src = await pinnedHost(d, vm);
  if (!local.length || !src) {
    throw new TStackError('CONFLICT', `VM ${vm.name} is Stopped on shared primary storage: nothing to migrate, it starts on any host of its cluster (start {hostUuid})`, { state: vm.state });
  }
  const dest = await pickTarget(d, vm, src, want, true);
  return coldMigrate(d, vm, src, dest, job);
}

/** Live-migrate a VM (to `want`, else the best other host). Also used by host maintenance. */
export async function liveMigrate(d: CloudDeps, vmUuid: string, want?: string, job?: OpContext['job']): Promise<Resource> {
  // checked outside the VM's queue (the flow takes it); the state step's compare-and-set guards the race
  {
    const vm = await mustGet(d.store, vmUuid, 'vm-instance');
    if (!['Running', 'Paused'].includes(String(vm.state))) {
      throw new TStackError('CONFLICT', `VM ${vm.name} is ${String(vm.state)}; live migration needs it Running or Paused`, { state: vm.state });
    }
    const src = String(vm.hostUuid);
    const { local, unsafe } = await storageOf(d, vm);
    if (local.length) await mayCopyStorage(d, vm, local);
    const dest = await pickTarget(d, vm, src, want, false);
    const data: VmMigrateData = { vmUuid: vm.uuid, srcHostUuid: src, destHostUuid: dest, fromState: String(vm.state), unsafe };
    if (local.length) data.copyVolumeUuids = local.map((v) => v.uuid);
    const runOpts: Parameters<typeof d.engine.run>[2] = { lockKeys: [vm.uuid, ...local.map((v) => v.uuid)] };
    if (job) {
      // the job's resumer (api/resume.ts) tells a completed flow from one that never started by its outcome
      runOpts.id = job.jobUuid;
      runOpts.keepOutcome = true;
      runOpts.onProgress = (pc, m) => job.progress(pc, m);
    }
    try {
      await d.engine.run(vmMigrateFlow, data, runOpts);
    } catch (e) {
      // the flow failed after the move (its rollback switched the records over): the source's copy goes too
      await deleteSourceCopies(d, data);
      throw e;
    }
    return mustGet(d.store, vm.uuid, 'vm-instance');
  }
}

const LIVE_WITH_STORAGE = 'localStoragePrimaryStorage.liveMigrationWithStorage.allow';

/** May this VM with volumes on local storage migrate live (its root disk copied)? A 409 saying why not. */
async function mayCopyStorage(d: CloudDeps, vm: Resource, local: Resource[]): Promise<void> {
  const names = local.map((v) => v.name).join(', ');
  if (!(await globalConfigBool(d.store, LIVE_WITH_STORAGE))) {
    throw new TStackError('CONFLICT', `VM ${vm.name} has volume(s) on local storage (${names}): live migration copies them only when the global config ${LIVE_WITH_STORAGE} is true (it is false); or stop the VM and migrate it cold`, { volumes: local.map((v) => v.uuid), globalConfig: LIVE_WITH_STORAGE });
  }
  const data = local.filter((v) => v.uuid !== vm.rootVolumeUuid);
  if (data.length) {
    throw new TStackError('CONFLICT', `VM ${vm.name} has data volume(s) on local storage (${data.map((v) => v.name).join(', ')}): live migration with storage copies the root volume only; detach them first (they migrate cold) or stop the VM`, { volumes: data.map((v) => v.uuid) });
  }
  const snaps = (await Promise.all(local.map((v) => d.store.byParent('volume-snapshot', v.uuid)))).flat();
  if (snaps.length) {
    throw new TStackError('CONFLICT', `VM ${vm.name}: volume ${local[0]!.name} on local storage has ${snaps.length} snapshot(s), which a live disk copy would leave behind; stop the VM and migrate it cold (snapshots travel with it)`, { volumes: local.map((v) => v.uuid) });
  }
}

export function registerMigrationApi(reg: ApiRegistry): void {
  if (!reg.action('vm-instances', 'migrate')?.run) {
    // schema from the model: {hostUuid?}
    // resumable: a controller taking the job over from a dead one sees it through (live: the flow
    // completes; cold: it rolls back, the job fails with why)
    reg.registerAction('vm-instances', 'migrate', { long: true, adminOnly: true, resumable: true, run: migrateVm });
  }
}

/**
 * GET /v1/vm-instances/<uuid>/migration-targets (ZStack getVmMigrationCandidateHosts): the hosts
 * a running VM could live-migrate to (a stopped one on local storage: cold-migrate to), best first (`inventories`), and every other host with the
 * reason it cannot (`rejected`). Admin only, as migrate is.
 */
export function migrationTargetRoutes(d: CloudDeps, authenticate: (token: string | undefined) => Promise<{ isAdmin: boolean }>): Koa.Middleware {
  const router = new Router();
  router.get('/v1/vm-instances/:uuid/migration-targets', async (ctx) => {
    const p = await authenticate(/^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'))?.[1]);
    const uuid = String(ctx.params.uuid);
    if (!UUID.test(uuid)) throw new TStackError('INVALID_ARGUMENT', `uuid: not a uuid: ${JSON.stringify(uuid.slice(0, 64))}`, { field: 'uuid' });
    if (!p.isAdmin) throw new TStackError('FORBIDDEN', 'migration targets are for admins (migrate is an admin action)');
    const vm = await mustGet(d.store, uuid, 'vm-instance');
    const cold = vm.state === 'Stopped' && (await storageOf(d, vm)).local.length > 0 && (await pinnedHost(d, vm)) !== undefined;
    if (!cold && !['Running', 'Paused'].includes(String(vm.state))) {
      throw new TStackError('CONFLICT', `VM ${vm.name} is ${String(vm.state)}; migration targets are computed for a Running or Paused VM, or a Stopped one on local storage`, { state: vm.state });
    }
    const t = await migrationTargets(d, vm, undefined, { cold });
    // a running VM on local storage: no host can take it while its disk may not be copied live
    const local = cold ? [] : (await storageOf(d, vm)).local;
    const refused = local.length ? await mayCopyStorage(d, vm, local).then(() => undefined, (e: unknown) => (e as Error).message) : undefined;
    if (refused) ctx.body = { inventories: [], rejected: [...t.hosts.map((h) => ({ hostUuid: h.uuid, name: h.name, reason: refused })), ...t.rejected] };
    else ctx.body = { inventories: t.hosts, rejected: t.rejected };
  });
  return router.routes() as Koa.Middleware;
}
