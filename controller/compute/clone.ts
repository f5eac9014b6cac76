// VM clone: N new VMs with the source's disk contents, each with its own NICs, addresses and
// hostname (from its name). The source's root volume becomes a RootVolumeTemplate image
// (from a snapshot when the VM runs: frozen layers are readable under a running QEMU); each
// clone's root volume is a linked clone of that image's cache on the primary storage; the
// image record is removed afterwards (the cache stays while clones use it). A flow, so that a
// controller killed mid-clone leaves no template and no half-made clone.
//
// withDataVolumes: true → each data volume of the source becomes a DataVolumeTemplate image too
// (from a snapshot when the VM runs, as the root), and each clone gets a linked clone of each
// (vm-create's dataVolumeTemplateUuids: made, attached and rolled back with the clone).
//
// full: true → each clone is made stopped, its volumes flattened (ps/volume/flatten), then
// started if the source runs.
import { TStackError } from '../../shared/errors.js';
import { faultPause } from '../../shared/fault-pause.js';
import { shape } from '../api/crud.js';
import { Obj, Type } from '../../shared/protocol/schema.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { randomUUID } from 'node:crypto';
import type { FlowDef } from '../workflow/flow.js';
import * as S from '../../shared/protocol/storage.js';
import { callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { deleteFromBs, psSpec } from '../storage/index.js';
import { snapshotVolume } from '../storage/snapshots.js';
import { createImageFromVolume } from '../storage/volume-images.js';
import { dataVolumesOf, hostForVolume, runningVmOf } from '../storage/volumes.js';
import { mustKindDef, prepareCreate } from '../model/index.js';

export const CloneSchema = Obj({
  names: Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { minItems: 1, maxItems: 16 }),
  full: Type.Optional(Type.Boolean({ description: 'standalone copies: each volume is flattened (no link to the template images caches)' })),
  withDataVolumes: Type.Optional(Type.Boolean({ description: 'also copy the data volumes (each clone gets its own copy of each, same device order)' })),
});

/** One flow per operation: the nested operations get no job of their own (their flow ids stay unique). */
const noJob = (oc: OpContext): OpContext => {
  const { job: _job, ...rest } = oc;
  return rest;
};

interface CloneData extends Record<string, unknown> {
  vmUuid: string;
  names: string[];
  bsUuid: string;
  /** the template image (its uuid is saved before it is made, so a rollback finds it) */
  imageUuid?: string;
  cloneUuids: string[];
  /** withDataVolumes: the source's data volumes, and their template images (uuid saved before each is made) */
  dataVolumeUuids?: string[];
  dataImageUuids?: string[];
  /** full clones: each root volume is flattened (made while stopped, started after if the source ran) */
  full?: boolean;
  startAfter?: boolean;
}

/** The caller's context of a running clone flow (not persisted: a resumed clone only rolls back). */
const callers = new Map<string, OpContext>();

async function dropTemplate(d: CloudDeps, imageUuid: string | undefined): Promise<void> {
  const image = imageUuid ? await d.store.get(imageUuid) : undefined;
  if (!image) return;
  // every store it was meant for: a copy may exist before its ref is recorded
  const bsUuids = new Set([...((image.backupStorageUuids as string[] | undefined) ?? []), ...((image.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined) ?? []).map((r) => r.backupStorageUuid)]);
  for (const u of bsUuids) {
    const bs = await d.store.get(u);
    if (bs) await deleteFromBs(d, bs, image.uuid).catch(() => undefined);
  }
  await d.store.delete(image.uuid);
}

async function dropTemplates(d: CloudDeps, data: CloneData): Promise<void> {
  for (const u of [data.imageUuid, ...(data.dataImageUuids ?? [])]) await dropTemplate(d, u);
}

// vm-clone flow (onResume 'rollback': a controller killed mid-clone drops the templates; clones
// already made are whole VMs and stay; the one being made is finished or rolled back by its own
// vm-create flow). Run as a job it keeps its outcome: the job's resumer (api/resume.ts) fails the
// job CANCELLED once the flow rolled back, answers with the outcome's result once it completed,
// and runs the clone from the job's parameters when its flow never started:
//   template  a RootVolumeTemplate image of the root volume,     ⟲ delete them
//             a DataVolumeTemplate image of each data volume
//   clones    one VM create per name
//   cleanup   delete the templates: the clones' volumes sit on their caches
export const vmCloneFlow: FlowDef<CloneData> = {
  name: 'vm-clone',
  onResume: 'rollback',
  // a resumed job's answer: the clones' uuids (the live answer also has their records)
  result: (d) => ({ vmInstanceUuid: d.vmUuid, cloneUuids: d.cloneUuids }),
  steps: [
    {
      name: 'template',
      async run(ctx) {
        const d = ctx.controller;
        const oc = callers.get(ctx.flowId);
        if (!oc) throw new TStackError('CANCELLED', 'the clone lost its caller (controller restarted)');
        const vm = await mustGet(d.store, ctx.data.vmUuid, 'vm-instance');
        const root = await mustGet(d.store, String(vm.rootVolumeUuid), 'volume');
        const stamp = new Date().toISOString().replace(/[^0-9]/g, '').slice(0, 14);
        const imgBody: Record<string, unknown> = { name: `clone-of-${String(vm.name)}-${stamp}`.slice(0, 255), backupStorageUuids: [ctx.data.bsUuid], mediaType: 'RootVolumeTemplate', system: true };
        if ((await runningVmOf(d, root)) && (await mustGet(d.store, String(root.primaryStorageUuid), 'primary-storage')).type !== 'Ceph') {
          const snap = await snapshotVolume(d, root, { name: `clone-source-${stamp}`, description: `taken to clone VM ${String(vm.name)} while it runs` }, oc);
          imgBody.volumeSnapshotUuid = snap.uuid;
        } else {
          imgBody.rootVolumeUuid = root.uuid;
        }
        const prepared = await prepareCreate(d.store, mustKindDef('image'), imgBody, { ownerAccountUuid: vm.ownerAccountUuid });
        ctx.data.imageUuid = prepared.resource.uuid;
        await ctx.save();
        await createImageFromVolume(prepared.resource, oc);
        for (const [i, volUuid] of (ctx.data.dataVolumeUuids ?? []).entries()) {
          ctx.progress(5, `template of data volume ${i + 1}`);
          const vol = await mustGet(d.store, volUuid, 'volume');
          const body: Record<string, unknown> = { name: `clone-of-${String(vm.name)}-data${i + 1}-${stamp}`.slice(0, 255), backupStorageUuids: [ctx.data.bsUuid], mediaType: 'DataVolumeTemplate', system: true };
          if ((await runningVmOf(d, vol)) && (await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage')).type !== 'Ceph') {
            body.volumeSnapshotUuid = (await snapshotVolume(d, vol, { name: `clone-source-${stamp}`, description: `taken to clone VM ${String(vm.name)} while it runs` }, oc)).uuid;
          } else {
            body.volumeUuid = vol.uuid;
          }
          const prepared = await prepareCreate(d.store, mustKindDef('image'), body, { ownerAccountUuid: vm.ownerAccountUuid });
          (ctx.data.dataImageUuids ??= []).push(prepared.resource.uuid);
          await ctx.save();
          await createImageFromVolume(prepared.resource, oc);
        }
        injectFault('vm-clone', 'template');
      },
      rollback: (ctx) => dropTemplates(ctx.controller, ctx.data),
    },
    {
      name: 'clones',
      async run(ctx) {
        const d = ctx.controller;
        const oc = callers.get(ctx.flowId)!;
        const create = oc.registry.collection('vm-instances')?.create;
        if (!create) throw new TStackError('INTERNAL', 'VM create is not installed');
        const vm = await mustGet(d.store, ctx.data.vmUuid, 'vm-instance');
        const names = ctx.data.names;
        for (const [i, name] of names.entries()) {
          if (i < ctx.data.cloneUuids.length) continue;
          ctx.progress(10 + Math.floor((i * 85) / names.length), `creating clone ${name}`);
          const body: Record<string, unknown> = { name, imageUuid: ctx.data.imageUuid, l3NetworkUuids: vm.l3NetworkUuids, defaultL3NetworkUuid: vm.defaultL3NetworkUuid };
          if (typeof vm.instanceOfferingUuid === 'string' && (await d.store.get(vm.instanceOfferingUuid))) body.instanceOfferingUuid = vm.instanceOfferingUuid;
          else Object.assign(body, { cpuNum: vm.cpuNum, memorySize: vm.memorySize });
          for (const f of ['sshKey', 'userData', 'primaryStorageUuidForRootVolume', 'haLevel'] as const) if (vm[f] !== undefined) body[f] = vm[f];
          if (ctx.data.dataImageUuids?.length) body.dataVolumeTemplateUuids = ctx.data.dataImageUuids;
          if (vm.state === 'Stopped' || ctx.data.full) body.strategy = 'CreateStopped';
          const clone = await create.run(body, oc);
          ctx.data.cloneUuids.push(clone.uuid);
          await ctx.save();
          injectFault('vm-clone', 'clones');
          if (ctx.data.full) await flattenAndStart(d, clone, ctx.data.startAfter === true, oc);
        }
      },
    },
    { name: 'cleanup', run: (ctx) => dropTemplates(ctx.controller, ctx.data) },
  ],
};

/** A full clone: its volumes stop depending on the templates' caches; then it starts. */
async function flattenAndStart(d: CloudDeps, clone: Resource, start: boolean, oc: OpContext): Promise<void> {
  for (const vol of [await mustGet(d.store, String(clone.rootVolumeUuid), 'volume'), ...(await dataVolumesOf(d, clone.uuid))]) {
    const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
    const info = await callHost(d, await hostForVolume(d, vol), 'storageagent', S.FlattenVolume, { ps: psSpec(ps), volumeUuid: vol.uuid });
    await d.store.update(vol.uuid, { actualSize: info.actualSize, size: info.size });
  }
  if (!start) return;
  const act = oc.registry.action('vm-instances', 'start');
  if (!act?.run) throw new TStackError('INTERNAL', 'VM start is not installed');
  await act.run(await mustGet(d.store, clone.uuid, 'vm-instance'), {}, oc);
}

async function cloneVm(vm0: Resource, params: Record<string, unknown>, oc: OpContext): Promise<unknown> {
  const d = oc;
  const vm = await mustGet(d.store, vm0.uuid, 'vm-instance');
  if (!['Running', 'Stopped', 'Paused'].includes(String(vm.state))) throw new TStackError('CONFLICT', `VM ${vm.name} is ${String(vm.state)}`, { state: vm.state });
  const srcImage = await d.store.get(String(vm.imageUuid));
  const bsUuid = (srcImage?.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined)?.[0]?.backupStorageUuid;
  if (!bsUuid) throw new TStackError('CONFLICT', `the image VM ${vm.name} was made from is on no backup storage; nowhere to put the template`);
  oc.job?.progress(5, 'template of the root volume');
  const id = oc.job?.jobUuid ?? randomUUID();
  const runOpts: Parameters<typeof d.engine.run>[2] = { id };
  if (oc.job) {
    runOpts.onProgress = (pc, m) => oc.job!.progress(pc, m);
    runOpts.keepOutcome = true;
  }
  callers.set(id, noJob(oc));
  try {
    const data: CloneData = { vmUuid: vm.uuid, names: params.names as string[], bsUuid, cloneUuids: [] };
    if (params.full === true) Object.assign(data, { full: true, startAfter: vm.state === 'Running' });
    if (params.withDataVolumes === true) data.dataVolumeUuids = (await dataVolumesOf(d, vm.uuid)).map((v) => v.uuid);
    faultPause('vm-clone:accepted'); // tests: frozen after the job was acknowledged, before the flow's journal
    const out = await d.engine.run(vmCloneFlow, data, runOpts);
    oc.job?.progress(100, 'cloned');
    // shaped here: the job shapes only a resource it is answered with, not one inside (the console password)
    const spec = oc.registry.byKind('vm-instance');
    return { ...(vmCloneFlow.result!(out) as object), clones: await Promise.all(out.cloneUuids.map(async (u) => shape(spec, await mustGet(d.store, u, 'vm-instance')))) };
  } finally {
    callers.delete(id);
  }
}

export function registerCloneApi(reg: ApiRegistry): void {
  if (!reg.action('vm-instances', 'clone')?.run) reg.registerAction('vm-instances', 'clone', { long: true, resumable: true, schema: CloneSchema, description: 'Clone the VM: N new VMs (linked clones of its root volume), each with its own NICs and addresses', run: cloneVm });
}
