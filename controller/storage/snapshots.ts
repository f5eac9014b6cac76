// Volume snapshots: create (online or offline), revert, delete.
//
// On file storage (local, shared mount point, NFS) snapshots form a tree: a new snapshot is a
// child of the one the volume sits on (parentSnapshotUuid, from the agent's backing chain);
// revert puts the volume on a new leaf above the snapshot; deleting a snapshot deletes its
// descendants (leaves first; the agent merges data the volume still reads). On Ceph they are
// independent RBD snapshots (no parent).
//
// Online (the volume's VM runs): file storage → live-prepare, vm/snapshot (QEMU switches to the
// new top, consistent; quiesced when a guest agent answers), live-commit; Ceph → rbd snap
// (librbd keeps it consistent under a running QEMU). Offline → ps/snapshot/create.
//
// volume-snapshot flow (onResume 'complete': a controller killed mid-way finishes the snapshot
// rather than guess whether QEMU already switched files):
//   record    the snapshot resource (Creating)                      ⟲ delete it (unless kept)
//   take      the agent calls above                                  ⟲ not switched: drop the
//             prepared top / offline snapshot; switched: finish it and keep it (Ready)
//   finish    size, parent, latest
// Test-only fault injection: TSTACK_FAULT_INJECT=volume-snapshot:<step> (record, switch, take,
// finish; 'switch': QEMU switched to the new top, the agent has not renamed the files yet).
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { TStackError } from '../../shared/errors.js';
import { faultPause } from '../../shared/fault-pause.js';
import * as K from '../../shared/protocol/kvm.js';
import * as S from '../../shared/protocol/storage.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { mustKindDef, prepareCreate } from '../model/index.js';
import type { FlowContext, FlowDef } from '../workflow/flow.js';
import { callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { psSpec } from './index.js';
import { hostForVolume, runningVmOf, vmInUse } from './volumes.js';

const FLOW = 'volume-snapshot';

export interface SnapshotData extends Record<string, unknown> {
  snapshot: Resource;
  volumeUuid: string;
  /** how it is taken: set before any agent call */
  mode?: 'offline' | 'live-file' | 'online-ceph';
  hostUuid?: string;
  vmUuid?: string;
  newTopPath?: string;
  /** the prepared top's NFS source when QEMU opens the volume over NFS (libnfs) */
  newTop?: S.LiveTop['newTop'];
  /** the prepared top was handed to the kvmagent (QEMU may have switched to it) */
  switching?: boolean;
  info?: S.SnapshotInfo;
  /** the snapshot exists for good (a rollback keeps the record) */
  keep?: boolean;
}

const isFileType = (ps: Resource): boolean => ps.type !== 'Ceph';

/** Does QEMU write into the prepared top already? (The kvmagent's view of the domain's disks.) */
async function switched(d: CloudDeps, data: SnapshotData): Promise<boolean> {
  if (!data.vmUuid || !data.hostUuid || !data.newTopPath) return false;
  const st = await callHost(d, data.hostUuid, 'kvmagent', K.VmGetState, { uuid: data.vmUuid });
  // the kvmagent reports a disk on NFS as nfs:<path on the server>
  const want = data.newTop ? `nfs:${data.newTopPath}` : data.newTopPath;
  return (st.devices?.volumes ?? []).some((v) => v.uuid === data.volumeUuid && v.source === want);
}

async function take(ctx: FlowContext<SnapshotData>): Promise<void> {
  const d = ctx.controller;
  const data = ctx.data;
  const vol = await mustGet(ctx.store, data.volumeUuid, 'volume');
  const ps = await mustGet(ctx.store, String(vol.primaryStorageUuid), 'primary-storage');
  const spec = psSpec(ps);
  const req = { ps: spec, volumeUuid: vol.uuid, snapshotUuid: data.snapshot.uuid };
  if (!data.mode) {
    const vm = await runningVmOf(d, vol);
    data.mode = !vm ? 'offline' : isFileType(ps) ? 'live-file' : 'online-ceph';
    data.hostUuid = vm ? String(vm.hostUuid) : await hostForVolume(d, vol);
    if (vm) data.vmUuid = vm.uuid;
    await ctx.save();
  }
  const host = data.hostUuid!;
  if (data.mode !== 'live-file') {
    const have = (await callHost(d, host, 'storageagent', S.ListSnapshots, { ps: spec, volumeUuid: vol.uuid })).snapshots.find((s) => s.snapshotUuid === data.snapshot.uuid);
    data.info = have ?? (await callHost(d, host, 'storageagent', S.CreateSnapshot, req));
    await ctx.save();
    injectFault(FLOW, 'take');
    return;
  }
  if (!data.switching) {
    const top = await callHost(d, host, 'storageagent', S.PrepareLiveSnapshot, req);
    data.newTopPath = top.newTopPath;
    if (top.newTop) data.newTop = top.newTop;
    data.switching = true;
    await ctx.save();
  }
  if (!(await switched(d, data))) {
    ctx.progress(50, 'switching the running VM to a new top');
    await callHost(d, host, 'kvmagent', K.VmSnapshot, { uuid: data.vmUuid!, volumes: [{ volumeUuid: vol.uuid, newTopPath: data.newTopPath!, ...(data.newTop ? { newTop: data.newTop } : {}), reuseExisting: true }], quiesce: 'preferred' });
    injectFault(FLOW, 'switch'); // QEMU writes into the new top; the files are not renamed yet
  }
  data.keep = true;
  await ctx.save();
  data.info = await callHost(d, host, 'storageagent', S.CommitLiveSnapshot, req);
  await ctx.save();
  injectFault(FLOW, 'take');
}

async function untake(ctx: FlowContext<SnapshotData>): Promise<void> {
  const d = ctx.controller;
  const data = ctx.data;
  if (!data.mode || !data.hostUuid) return;
  const vol = await ctx.store.get(data.volumeUuid);
  const ps = vol ? await ctx.store.get(String(vol.primaryStorageUuid)) : undefined;
  if (!vol || !ps) return;
  const req = { ps: psSpec(ps), volumeUuid: vol.uuid, snapshotUuid: data.snapshot.uuid };
  if (data.mode === 'live-file') {
    if (data.keep || (data.switching && (await switched(d, data)))) {
      // QEMU writes into the new top: the snapshot exists; finish the renames and keep it
      data.keep = true;
      await ctx.save();
      data.info = await callHost(d, data.hostUuid, 'storageagent', S.CommitLiveSnapshot, req);
      await finish(ctx);
      return;
    }
    await callHost(d, data.hostUuid, 'storageagent', S.AbortLiveSnapshot, req);
    return;
  }
  // offline or Ceph: deleting merges the frozen layer back (file) or drops the RBD snapshot
  await callHost(d, data.hostUuid, 'storageagent', S.DeleteSnapshot, req);
}

async function finish(ctx: FlowContext<SnapshotData>): Promise<void> {
  const info = ctx.data.info!;
  const vol = await mustGet(ctx.store, ctx.data.volumeUuid, 'volume');
  for (const s of await ctx.store.byParent('volume-snapshot', vol.uuid)) if (s.latest === true && s.uuid !== info.snapshotUuid) await ctx.store.update(s.uuid, { latest: false });
  // the Ceph agent lists RBD snapshots in creation order with the previous one as "parent"; they
  // do not depend on each other, so no tree (deleting one must not take the later ones with it)
  const ps = await ctx.store.get(String(vol.primaryStorageUuid));
  const parent = ps && isFileType(ps) ? info.parentUuid : undefined;
  const patch: Partial<Resource> = { status: 'Ready', size: info.size, actualSize: info.actualSize, installPath: info.installPath, latest: true, parentSnapshotUuid: parent };
  await ctx.store.update(info.snapshotUuid, patch);
  await ctx.store.update(vol.uuid, { _currentSnapshotUuid: info.snapshotUuid });
}

export const volumeSnapshotFlow: FlowDef<SnapshotData> = {
  name: FLOW,
  onResume: 'complete',
  steps: [
    {
      name: 'record',
      async run(ctx) {
        if (!(await ctx.store.get(ctx.data.snapshot.uuid))) await ctx.store.create(ctx.data.snapshot);
        injectFault(FLOW, 'record');
      },
      async rollback(ctx) {
        if (!ctx.data.keep) await ctx.store.delete(ctx.data.snapshot.uuid);
      },
    },
    { name: 'take', run: take, rollback: untake },
    {
      name: 'finish',
      async run(ctx) {
        await finish(ctx);
        injectFault(FLOW, 'finish');
      },
    },
  ],
};

/** `keepOutcome`: the run is the job's own (volumes.createSnapshot: its resumer reads the outcome, api/resume.ts). */
export async function snapshotVolume(d: CloudDeps, vol: Resource, body: { name: string; description?: string }, oc: OpContext, o: { keepOutcome?: boolean } = {}): Promise<Resource> {
  if (vol.status !== 'Ready') throw new TStackError('CONFLICT', `volume ${vol.name} is ${String(vol.status)}; only a Ready volume has data to snapshot`);
  const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
  const snapshot: Resource = {
    uuid: oc.newUuid ?? randomUUID(), kind: 'volume-snapshot', name: body.name, createDate: '', lastOpDate: '', ownerAccountUuid: vol.ownerAccountUuid, tags: [],
    parentUuid: vol.uuid, volumeUuid: vol.uuid, volumeType: vol.type, primaryStorageUuid: ps.uuid, state: 'Enabled', status: 'Creating', latest: false,
    ...(body.description !== undefined ? { description: body.description } : {}),
  };
  const lockKeys = [vol.uuid, ...(typeof vol.vmInstanceUuid === 'string' ? [vol.vmInstanceUuid] : [])];
  const runOpts: Parameters<typeof d.engine.run>[2] = { id: oc.job?.jobUuid ?? randomUUID(), lockKeys };
  if (oc.job) {
    runOpts.onProgress = (pc, m) => oc.job!.progress(pc, m);
    if (o.keepOutcome) runOpts.keepOutcome = true;
  }
  await d.engine.run(volumeSnapshotFlow, { snapshot, volumeUuid: vol.uuid }, runOpts);
  return mustGet(d.store, snapshot.uuid, 'volume-snapshot');
}

async function createSnapshot(body: Record<string, unknown>, oc: OpContext, o: { keepOutcome?: boolean } = {}): Promise<Resource> {
  const d = oc;
  const p = await prepareCreate(d.store, mustKindDef('volume-snapshot'), body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => r.ownerAccountUuid === oc.principal.accountUuid });
  const vol = await mustGet(d.store, String(p.resource.volumeUuid), 'volume', 'volumeUuid');
  const b: { name: string; description?: string } = { name: String(p.resource.name) };
  if (typeof p.resource.description === 'string') b.description = p.resource.description;
  return snapshotVolume(d, vol, b, oc, o);
}

// volume-revert flow (onResume 'complete': the agent's revert is atomic and may run again — a
// controller killed mid-way reverts again at start, and a revert an agent lost by restarting
// is sent again, so the record matches the disk):
//   check     refused while a VM uses the volume (409), the snapshot must be Ready
//   revert    ps/snapshot/revert, then the volume's size and current snapshot
/** Revert calls an agent that lost them (restarting) gets, ~40 s in all. */
const REVERT_ATTEMPTS = 12;

export interface RevertData extends Record<string, unknown> {
  snapshotUuid: string;
  volumeUuid: string;
}

export const volumeRevertFlow: FlowDef<RevertData> = {
  name: 'volume-revert',
  onResume: 'complete',
  steps: [
    {
      name: 'check',
      async run(ctx) {
        const d = ctx.controller;
        const vol = await mustGet(d.store, ctx.data.volumeUuid, 'volume');
        const vm = await vmInUse(d, vol);
        if (vm) throw new TStackError('CONFLICT', `volume ${vol.name} is in use by VM ${vm.name} (${String(vm.state)}); stop the VM or detach the volume to revert it`, { state: vm.state });
        const snap = await mustGet(d.store, ctx.data.snapshotUuid, 'volume-snapshot');
        if (snap.status !== 'Ready') throw new TStackError('CONFLICT', `snapshot ${snap.name} is ${String(snap.status)}`);
      },
    },
    {
      name: 'revert',
      async run(ctx) {
        const d = ctx.controller;
        const vol = await mustGet(d.store, ctx.data.volumeUuid, 'volume');
        const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
        const req = { ps: psSpec(ps), volumeUuid: vol.uuid, snapshotUuid: ctx.data.snapshotUuid };
        const host = await hostForVolume(d, vol);
        // an agent that restarted mid-revert may or may not have reverted: revert again (it is
        // atomic and repeatable), so that the record matches the disk. TASK_LOST: the restarted
        // agent does not know the task; AGENT_UNREACHABLE: the answer was lost with the
        // connection, and an agent still starting fails the same way — so for a while, not once
        let info: S.VolumeInfo | undefined;
        for (let attempt = 1; !info; attempt++) {
          try {
            info = await callHost(d, host, 'storageagent', S.RevertSnapshot, req);
          } catch (e) {
            if (!(e instanceof TStackError && (e.code === 'TASK_LOST' || e.code === 'AGENT_UNREACHABLE')) || attempt >= REVERT_ATTEMPTS) throw e;
            ctx.log.warn({ volumeUuid: vol.uuid, attempt, err: e.message }, 'the storage agent lost the revert; reverting again');
            await delay(Math.min(5_000, 500 * attempt));
          }
        }
        injectFault('volume-revert', 'revert');
        await d.store.update(vol.uuid, { size: info.size, actualSize: info.actualSize, _currentSnapshotUuid: ctx.data.snapshotUuid });
      },
    },
  ],
};

async function revertSnapshot(snap: Resource, _p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const volUuid = String(snap.volumeUuid);
  await d.engine.run(volumeRevertFlow, { snapshotUuid: snap.uuid, volumeUuid: volUuid }, { id: oc.job?.jobUuid ?? randomUUID(), lockKeys: [volUuid], keepOutcome: oc.job !== undefined });
  return mustGet(d.store, snap.uuid, 'volume-snapshot');
}

/** The snapshot and its descendants, leaves first. */
async function subtree(d: CloudDeps, snap: Resource): Promise<Resource[]> {
  const all = await d.store.byParent('volume-snapshot', String(snap.volumeUuid));
  const out: Resource[] = [];
  const visit = (s: Resource): void => {
    for (const c of all.filter((x) => x.parentSnapshotUuid === s.uuid)) visit(c);
    out.push(s);
  };
  visit(snap);
  return out;
}

// volume-snapshot-delete flow (onResume 'complete', the job's uuid, its answer kept in the outcome:
// the snapshot is gone once it completes):
//   plan    the snapshot and its descendants (leaves first) and the host that deletes them;
//           refused while a running VM has the files open (file storage)
//   delete  ps/snapshot/delete of each (its task id: sent again after a crash it joins its first
//           run), the volume's current snapshot moved to the parent, the record; a snapshot
//           whose record is gone was deleted before a crash
interface SnapshotDeleteData extends Record<string, unknown> {
  /** The snapshot asked for (the answer). */
  snapshot: Resource;
  volumeUuid: string;
  victims?: Array<{ uuid: string; parentSnapshotUuid?: string }>;
  hostUuid?: string;
}

export const snapshotDeleteFlow: FlowDef<SnapshotDeleteData> = {
  name: 'volume-snapshot-delete',
  onResume: 'complete',
  result: (d) => ({ ...d.snapshot, deleted: (d.victims ?? []).map((v) => v.uuid) }),
  steps: [
    {
      name: 'plan',
      async run(ctx) {
        const d = ctx.controller;
        const vol = await ctx.store.get(ctx.data.volumeUuid);
        const victims = await subtree(d, ctx.data.snapshot);
        if (vol) {
          const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
          // merging layers rewrites files a running QEMU has open (qemu-img would hit its locks)
          const vm = isFileType(ps) ? await runningVmOf(d, vol) : undefined;
          if (vm) throw new TStackError('CONFLICT', `volume ${vol.name} is in use by running VM ${vm.name}; stop the VM or detach the volume to delete snapshots on ${String(ps.type)} storage`);
          ctx.data.hostUuid = await hostForVolume(d, vol);
        }
        ctx.data.victims = victims.map((v) => ({ uuid: v.uuid, ...(typeof v.parentSnapshotUuid === 'string' ? { parentSnapshotUuid: v.parentSnapshotUuid } : {}) }));
        injectFault('volume-snapshot-delete', 'plan');
      },
    },
    {
      name: 'delete',
      async run(ctx) {
        const d = ctx.controller;
        const { volumeUuid, hostUuid } = ctx.data;
        const vol = await ctx.store.get(volumeUuid);
        const ps = vol && hostUuid ? await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage') : undefined;
        for (const s of ctx.data.victims!) {
          if (!(await ctx.store.get(s.uuid))) continue;
          if (ps) {
            await callHost(d, hostUuid!, 'storageagent', S.DeleteSnapshot, { ps: psSpec(ps), volumeUuid, snapshotUuid: s.uuid }, { taskId: ctx.taskId(`snap-${s.uuid}`) });
            injectFault('volume-snapshot-delete', 'agent');
            // read again: deleting this one's child may just have moved the volume's current snapshot to this one
            const cur = await ctx.store.get(volumeUuid);
            if (cur?._currentSnapshotUuid === s.uuid) await ctx.store.update(volumeUuid, { _currentSnapshotUuid: s.parentSnapshotUuid });
          }
          await ctx.store.delete(s.uuid);
        }
        injectFault('volume-snapshot-delete', 'delete');
      },
    },
  ],
};

async function deleteSnapshot(snap: Resource, _q: Record<string, string>, oc: OpContext): Promise<unknown> {
  const volumeUuid = String(snap.volumeUuid);
  faultPause('volume-snapshot-delete:accepted'); // tests: frozen after the job was acknowledged, before the flow's journal
  const o: Parameters<typeof oc.engine.run>[2] = { id: oc.job?.jobUuid ?? randomUUID(), lockKeys: [volumeUuid] };
  if (oc.job) {
    o.keepOutcome = true;
    o.onProgress = (p, m) => oc.job!.progress(p, m);
  }
  return snapshotDeleteFlow.result!(await oc.engine.run<SnapshotDeleteData>(snapshotDeleteFlow, { snapshot: snap, volumeUuid }, o));
}

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerSnapshotApi(reg: ApiRegistry): void {
  // snapshots and reverts are flows under the job's uuid: a controller taking the job over from a
  // dead one sees it through (api/resume.ts)
  reg.setCreate('volume-snapshots', { long: true, resumable: true, run: (body, oc) => createSnapshot(body, oc) });
  reg.setDelete('volume-snapshots', { long: true, resumable: true, run: deleteSnapshot });
  once(reg, 'volume-snapshots', 'revert', { long: true, resumable: true, run: revertSnapshot });
  // the action is the create with volumeUuid filled in: one path for validation, ownership and
  // quota (snapshot.volume.num counts volume-snapshot records made through prepareCreate)
  once(reg, 'volumes', 'createSnapshot', { long: true, resumable: true, newUuid: true, run: (vol, p, oc) => createSnapshot({ ...p, volumeUuid: vol.uuid }, oc, { keepOutcome: true }) });
}
