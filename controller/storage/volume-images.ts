// Images made from volumes: a root volume (RootVolumeTemplate), a data volume
// (DataVolumeTemplate) or a snapshot of either. The storage agent that reaches the volume
// flattens it (qemu-img convert, no backing chain) and uploads it to each image store.
//
// A volume a running VM writes to is refused on file storage (QEMU holds the write lock, and a
// copy would not be consistent): stop the VM or make the image from a snapshot (frozen layers
// are readable while it runs).
//
// image-from-volume flow (onResume 'rollback': a controller killed mid-upload cannot know how
// far the agent got, so the image goes rather than stay `Creating` for ever):
//   record    the image resource (Creating)                  ⟲ its copy on every image store it was
//                                                              meant for, then the record
//   upload    ps/volume/to-image per image store, the refs
//   finish    Ready, sizes, checksum
// Test-only fault injection: TSTACK_FAULT_INJECT=image-from-volume:<step>.
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import * as S from '../../shared/protocol/storage.js';
import type { OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import type { FlowDef } from '../workflow/flow.js';
import { callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { deleteFromBs, imageStoreRef, psSpec } from './index.js';
import { hostForVolume, runningVmOf } from './volumes.js';

const FLOW = 'image-from-volume';

export const fromVolume = (body: Record<string, unknown>): boolean => body.rootVolumeUuid !== undefined || body.volumeUuid !== undefined || body.volumeSnapshotUuid !== undefined;

async function source(d: CloudDeps, img: Resource): Promise<{ vol: Resource; snapshotUuid?: string }> {
  if (typeof img.volumeSnapshotUuid === 'string') {
    const snap = await mustGet(d.store, img.volumeSnapshotUuid, 'volume-snapshot', 'volumeSnapshotUuid');
    if (snap.status !== 'Ready') throw new TStackError('CONFLICT', `snapshot ${snap.name} is ${String(snap.status)}`);
    return { vol: await mustGet(d.store, String(snap.volumeUuid), 'volume'), snapshotUuid: snap.uuid };
  }
  const field = typeof img.rootVolumeUuid === 'string' ? 'rootVolumeUuid' : 'volumeUuid';
  const vol = await mustGet(d.store, String(img[field]), 'volume', field);
  if (field === 'rootVolumeUuid' && vol.type !== 'Root') throw new TStackError('INVALID_ARGUMENT', `rootVolumeUuid: volume ${vol.name} is a ${String(vol.type)} volume`, { field });
  return { vol };
}

export interface ImageFromVolumeData extends Record<string, unknown> {
  /** the validated record, stored by the first step */
  image: Resource;
  volumeUuid: string;
  snapshotUuid?: string;
  /** the image stores it goes to (the rollback deletes a copy there even before its ref is recorded) */
  bsUuids: string[];
  refs: Array<{ backupStorageUuid: string; installPath: string; status: 'Ready' }>;
  info?: S.ImageInfo;
}

/** Drop the copies on every image store the image was meant for, then its record (idempotent). */
export async function dropImage(d: CloudDeps, imageUuid: string, bsUuids: string[]): Promise<void> {
  for (const u of bsUuids) {
    const bs = await d.store.get(u);
    if (bs) await deleteFromBs(d, bs, imageUuid);
  }
  await d.store.delete(imageUuid);
}

export const imageFromVolumeFlow: FlowDef<ImageFromVolumeData> = {
  name: FLOW,
  onResume: 'rollback',
  steps: [
    {
      name: 'record',
      async run(ctx) {
        const d = ctx.controller;
        const vol = await mustGet(d.store, ctx.data.volumeUuid, 'volume');
        if (vol.status !== 'Ready') throw new TStackError('CONFLICT', `volume ${vol.name} is ${String(vol.status)}; it has no data yet`);
        const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
        const vm = ctx.data.snapshotUuid ? undefined : await runningVmOf(d, vol);
        if (vm && ps.type !== 'Ceph') throw new TStackError('CONFLICT', `volume ${vol.name} is in use by running VM ${vm.name}; stop the VM or make the image from a snapshot of the volume`, { state: vm.state });
        if (!(await d.store.get(ctx.data.image.uuid))) await d.store.create<Resource>({ ...ctx.data.image, status: 'Creating', progress: 0, backupStorageRefs: [], size: vol.size });
        injectFault(FLOW, 'record');
      },
      async rollback(ctx) {
        // no record yet (refused before it was made): nothing went to any image store either
        if (ctx.data.refs.length || (await ctx.controller.store.get(ctx.data.image.uuid))) await dropImage(ctx.controller, ctx.data.image.uuid, ctx.data.bsUuids);
      },
    },
    {
      name: 'upload',
      async run(ctx) {
        const d = ctx.controller;
        const vol = await mustGet(d.store, ctx.data.volumeUuid, 'volume');
        const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
        const host = await hostForVolume(d, vol);
        const imageUuid = ctx.data.image.uuid;
        for (const [i, bsUuid] of ctx.data.bsUuids.entries()) {
          if (ctx.data.refs.some((r) => r.backupStorageUuid === bsUuid)) continue;
          ctx.progress(Math.floor((i * 90) / ctx.data.bsUuids.length), `copying the volume to backup storage ${bsUuid}`);
          const req: Parameters<typeof d.agentClient.call<typeof S.VolumeToImage>>[2] = { ps: psSpec(ps), volumeUuid: vol.uuid, imageUuid, imageStore: await imageStoreRef(d, bsUuid), format: 'qcow2' };
          if (ctx.data.snapshotUuid) req.snapshotUuid = ctx.data.snapshotUuid;
          const info = await callHost(d, host, 'storageagent', S.VolumeToImage, req);
          ctx.data.info = info;
          ctx.data.refs.push({ backupStorageUuid: bsUuid, installPath: info.installPath, status: 'Ready' });
          await ctx.save();
          await d.store.update(imageUuid, { backupStorageRefs: ctx.data.refs, progress: Math.floor(((i + 1) * 90) / ctx.data.bsUuids.length) });
          injectFault(FLOW, 'upload');
        }
      },
    },
    {
      name: 'finish',
      async run(ctx) {
        const info = ctx.data.info!;
        await ctx.controller.store.update(ctx.data.image.uuid, { status: 'Ready', progress: 100, size: info.virtualSize, actualSize: info.actualSize, md5sum: info.md5, backupStorageRefs: ctx.data.refs });
        injectFault(FLOW, 'finish');
      },
    },
  ],
};

/** Create the image (the record was validated by prepareCreate; not stored yet). `keepOutcome`: a clone's nested run (compute/clone.ts). */
export async function createImageFromVolume(img: Resource, oc: OpContext, o: { keepOutcome?: boolean } = {}): Promise<Resource> {
  const d = oc;
  const { vol, snapshotUuid } = await source(d, img);
  const data: ImageFromVolumeData = { image: img, volumeUuid: vol.uuid, bsUuids: img.backupStorageUuids as string[], refs: [] };
  if (snapshotUuid) data.snapshotUuid = snapshotUuid;
  const runOpts: Parameters<typeof d.engine.run>[2] = { id: oc.job?.jobUuid ?? randomUUID(), lockKeys: [vol.uuid] };
  if (oc.job) runOpts.onProgress = (pc, m) => oc.job!.progress(pc, m);
  if (o.keepOutcome) runOpts.keepOutcome = true;
  await d.engine.run(imageFromVolumeFlow, data, runOpts);
  return mustGet(d.store, img.uuid, 'image');
}
