// VM clone: N new VMs with the source's disk contents, each with its own NICs, addresses and
// hostname (from its name). The source's root volume becomes a RootVolumeTemplate image
// (from a snapshot when the VM runs: frozen layers are readable under a running QEMU); each
// clone's root volume is a linked clone of that image's cache on the primary storage; the
// image record is removed afterwards (the cache stays while clones use it). A flow, so that a
// controller killed mid-clone leaves no half-made clone: another controller finishes it.
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
import type { Principal } from '../auth/accounts.js';
import type { JobContext } from '../jobs/jobs.js';
import { OUTCOMES, type FlowContext, type FlowDef, type FlowOutcome } from '../workflow/flow.js';
import { journalGone } from '../workflow/engine.js';
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

interface CloneData extends Record<string, unknown> {
  vmUuid: string;
  names: string[];
  bsUuid: string;
  /** Who asked: the nested operations run as it (also after a controller took the flow over). */
  principal: Omit<Principal, 'sessionId'>;
  /** the template image (its uuid is saved before it is made, so a rollback finds it) */
  imageUuid?: string;
  cloneUuids: string[];
  /** withDataVolumes: the source's data volumes, and their template images (uuid saved before each is made) */
  dataVolumeUuids?: string[];
  dataImageUuids?: string[];
  /** The templates' validated records by source (root, then each data volume), journaled before each is made. */
  templates?: Resource[];
  /** The snapshot a template is made from, by source (a running source), its uuid journaled before it is taken. */
  snaps?: Record<number, string>;
  /** Image flows run again after a restart rolled theirs back, by source (part of their ids). */
  retries?: Record<number, number>;
  /** The clone being made: its uuid, journaled before its create. */
  pending?: string;
  /** full clones: each root volume is flattened (made while stopped, started after if the source ran) */
  full?: boolean;
  startAfter?: boolean;
  /** full: how many clones are flattened (and started). */
  finished?: number;
}

// Nested operations (a snapshot, a template image, each clone's create and start) are flows of
// their own, run under ids derived from the clone's (`<clone flow id>.<what><index>`) with their
// outcome kept, as a job's: a clone resumed on another controller waits for a nested flow that
// controller is finishing, takes a completed one's result, and runs one that never started —
// never one that completed (a clone deleted meanwhile is not made again).
const nestedId = (ctx: FlowContext<CloneData>, what: string): string => `${ctx.flowId}.${what}`;
/** A job handle for a nested operation: its flow runs under `id` and keeps its outcome. */
const nestedJob = (id: string): JobContext => ({ jobUuid: id, progress: () => undefined, setContext: async () => undefined });

/** How the nested flow `id` ended: true completed, false never ran; throws its error if it failed (after a controller finished it). */
async function nestedEnd(d: CloudDeps, id: string): Promise<boolean> {
  await journalGone(d, id, 300, (j) => new TStackError(j.error?.code ?? 'INTERRUPTED', `${j.error?.message ?? 'a nested operation failed'} (its rollback is incomplete and retried)`, { flowId: id }));
  const o = await d.store.getDoc<FlowOutcome>(OUTCOMES, id);
  if (!o) return false;
  if (o.action === 'completed') return true;
  throw o.error ? new TStackError(o.error.code, o.error.message, o.error.details) : new TStackError('CANCELLED', `nested flow ${id} ended ${o.action}`);
}

/** Run `op` under nested id `id` unless a run of it (before a crash) completed. */
async function nested(ctx: FlowContext<CloneData>, id: string, op: (job: JobContext) => Promise<unknown>): Promise<void> {
  if (ctx.resumed && (await nestedEnd(ctx.controller, id))) return;
  await op(nestedJob(id));
}

/** The nested flows' kept outcomes go with the clone's end (pruned after a day otherwise). */
async function dropOutcomes(ctx: FlowContext<CloneData>): Promise<void> {
  const prefix = `${ctx.flowId}.`;
  for (const { id } of await ctx.store.listDocs(OUTCOMES)) if (id.startsWith(prefix)) await ctx.store.deleteDoc(OUTCOMES, id);
}

/** The caller's context, from the journal (the same on whichever controller runs the flow). */
const callerOf = (ctx: FlowContext<CloneData>): OpContext => ({ ...ctx.controller, principal: { ...ctx.data.principal, sessionId: '' } });

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

/** The template of source `i` (0: the root volume, i: data volume i), from a snapshot when the VM runs. */
async function template(ctx: FlowContext<CloneData>, i: number, vm: Resource, volUuid: string, stamp: string): Promise<void> {
  const d = ctx.controller;
  const oc = callerOf(ctx);
  const had = ctx.data.templates?.[i];
  if (had && (await d.store.get(had.uuid))?.status === 'Ready') return;
  const vol = await mustGet(d.store, volUuid, 'volume');
  const suffix = i === 0 ? '' : `-data${i}`;
  const body: Record<string, unknown> = { name: `clone-of-${String(vm.name)}${suffix}-${stamp}`.slice(0, 255), backupStorageUuids: [ctx.data.bsUuid], mediaType: i === 0 ? 'RootVolumeTemplate' : 'DataVolumeTemplate', system: true };
  const snaps = (ctx.data.snaps ??= {});
  if (snaps[i] === undefined && (await runningVmOf(d, vol)) && (await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage')).type !== 'Ceph') {
    snaps[i] = randomUUID();
    await ctx.save();
  }
  const snapUuid = snaps[i];
  if (snapUuid) {
    await nested(ctx, nestedId(ctx, `s${i}`), (job) => snapshotVolume(d, vol, { name: `clone-source-${stamp}`, description: `taken to clone VM ${String(vm.name)} while it runs` }, { ...oc, job, newUuid: snapUuid }, { keepOutcome: true }));
    body.volumeSnapshotUuid = snapUuid;
  } else body[i === 0 ? 'rootVolumeUuid' : 'volumeUuid'] = vol.uuid;
  let img = had;
  if (!img) {
    img = (await prepareCreate(d.store, mustKindDef('image'), body, { ownerAccountUuid: vm.ownerAccountUuid })).resource;
    (ctx.data.templates ??= [])[i] = img;
    if (i === 0) ctx.data.imageUuid = img.uuid;
    else (ctx.data.dataImageUuids ??= [])[i - 1] = img.uuid;
    await ctx.save();
  }
  // an image flow a restart rolled back left nothing: it runs again, under a new id
  for (;;) {
    const tries = ctx.data.retries?.[i] ?? 0;
    try {
      await nested(ctx, nestedId(ctx, `t${i}.${tries}`), (job) => createImageFromVolume(img, { ...oc, job }, { keepOutcome: true }));
      return;
    } catch (e) {
      if (!(e instanceof TStackError && e.code === 'CANCELLED') || tries >= 2) throw e;
      (ctx.data.retries ??= {})[i] = tries + 1;
      await ctx.save();
    }
  }
}

// vm-clone flow (onResume 'complete': a controller taking it over from a dead one finishes it;
// its nested operations are seen through as above). Run as a job it keeps its outcome, so the
// job's resumer (api/resume.ts) answers from it (vmInstanceUuid, cloneUuids); a failure rolls
// back: the templates go, clones already made are whole VMs and stay:
//   template  a RootVolumeTemplate image of the root volume,     ⟲ delete them
//             a DataVolumeTemplate image of each data volume
//   clones    one VM create per name (full: then flattened, and started like the source)
//   cleanup   delete the templates: the clones' volumes sit on their caches
export const vmCloneFlow: FlowDef<CloneData> = {
  name: 'vm-clone',
  onResume: 'complete',
  // a resumed job's answer: the clones' uuids (the live answer also has their records)
  result: (d) => ({ vmInstanceUuid: d.vmUuid, cloneUuids: d.cloneUuids }),
  steps: [
    {
      name: 'template',
      async run(ctx) {
        const d = ctx.controller;
        const vm = await mustGet(d.store, ctx.data.vmUuid, 'vm-instance');
        const stamp = new Date().toISOString().replace(/[^0-9]/g, '').slice(0, 14);
        await template(ctx, 0, vm, String(vm.rootVolumeUuid), stamp);
        for (const [i, volUuid] of (ctx.data.dataVolumeUuids ?? []).entries()) {
          ctx.progress(5, `template of data volume ${i + 1}`);
          await template(ctx, i + 1, vm, volUuid, stamp);
        }
        injectFault('vm-clone', 'template');
      },
      async rollback(ctx) {
        await dropTemplates(ctx.controller, ctx.data);
        await dropOutcomes(ctx);
      },
    },
    {
      name: 'clones',
      async run(ctx) {
        const d = ctx.controller;
        const oc = callerOf(ctx);
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
          const uuid = (ctx.data.pending ??= randomUUID());
          await ctx.save();
          await nested(ctx, nestedId(ctx, `c${i}`), (job) => create.run(body, { ...oc, job, newUuid: uuid }));
          ctx.data.cloneUuids.push(uuid);
          delete ctx.data.pending;
          await ctx.save();
          injectFault('vm-clone', 'clones');
        }
        for (const [i, uuid] of ctx.data.cloneUuids.entries()) {
          if (!ctx.data.full || i < (ctx.data.finished ?? 0)) continue;
          await flattenAndStart(ctx, i, await mustGet(d.store, uuid, 'vm-instance'), ctx.data.startAfter === true, oc);
          ctx.data.finished = i + 1;
          await ctx.save();
        }
      },
    },
    {
      name: 'cleanup',
      async run(ctx) {
        await dropTemplates(ctx.controller, ctx.data);
        injectFault('vm-clone', 'cleanup');
        await dropOutcomes(ctx);
      },
    },
  ],
};

/** A full clone: its volumes stop depending on the templates' caches; then it starts. */
async function flattenAndStart(ctx: FlowContext<CloneData>, i: number, clone: Resource, start: boolean, oc: OpContext): Promise<void> {
  const d = ctx.controller;
  for (const vol of [await mustGet(d.store, String(clone.rootVolumeUuid), 'volume'), ...(await dataVolumesOf(d, clone.uuid))]) {
    const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
    const info = await callHost(d, await hostForVolume(d, vol), 'storageagent', S.FlattenVolume, { ps: psSpec(ps), volumeUuid: vol.uuid }, { taskId: ctx.taskId(`flat-${vol.uuid}`) });
    await d.store.update(vol.uuid, { actualSize: info.actualSize, size: info.size });
  }
  if (!start) return;
  const act = oc.registry.action('vm-instances', 'start');
  if (!act?.run) throw new TStackError('INTERNAL', 'VM start is not installed');
  const run = act.run;
  await nested(ctx, nestedId(ctx, `r${i}`), async (job) => run(await mustGet(d.store, clone.uuid, 'vm-instance'), {}, { ...oc, job }));
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
  const { sessionId: _s, ...principal } = oc.principal;
  const data: CloneData = { vmUuid: vm.uuid, names: params.names as string[], bsUuid, principal, cloneUuids: [] };
  if (params.full === true) Object.assign(data, { full: true, startAfter: vm.state === 'Running' });
  if (params.withDataVolumes === true) data.dataVolumeUuids = (await dataVolumesOf(d, vm.uuid)).map((v) => v.uuid);
  faultPause('vm-clone:accepted'); // tests: frozen after the job was acknowledged, before the flow's journal
  const out = await d.engine.run(vmCloneFlow, data, runOpts);
  oc.job?.progress(100, 'cloned');
  // shaped here: the job shapes only a resource it is answered with, not one inside (the console password)
  const spec = oc.registry.byKind('vm-instance');
  return { ...(vmCloneFlow.result!(out) as object), clones: await Promise.all(out.cloneUuids.map(async (u) => shape(spec, await mustGet(d.store, u, 'vm-instance')))) };
}

export function registerCloneApi(reg: ApiRegistry): void {
  if (!reg.action('vm-instances', 'clone')?.run) reg.registerAction('vm-instances', 'clone', { long: true, resumable: true, schema: CloneSchema, description: 'Clone the VM: N new VMs (linked clones of its root volume), each with its own NICs and addresses', run: cloneVm });
}
