// Images made from volumes: a root volume (RootVolumeTemplate), a data volume
// (DataVolumeTemplate) or a snapshot of either. The storage agent that reaches the volume
// flattens it (qemu-img convert, no backing chain) and uploads it to each image store.
//
// A volume a running VM writes to is refused on file storage (QEMU holds the write lock, and a
// copy would not be consistent): stop the VM or make the image from a snapshot (frozen layers
// are readable while it runs).
import { TStackError } from '../../shared/errors.js';
import * as S from '../../shared/protocol/storage.js';
import type { OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { callHost, mustGet, type CloudDeps } from '../cloud/common.js';
import { deleteFromBs, imageStoreRef, psSpec } from './index.js';
import { hostForVolume, runningVmOf } from './volumes.js';

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

/** Create the image (the record was validated by prepareCreate; not stored yet). */
export async function createImageFromVolume(img0: Resource, oc: OpContext): Promise<Resource> {
  const d = oc;
  const { vol, snapshotUuid } = await source(d, img0);
  if (vol.status !== 'Ready') throw new TStackError('CONFLICT', `volume ${vol.name} is ${String(vol.status)}; it has no data yet`);
  const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
  return d.engine.queues.run([vol.uuid], async () => {
    const vm = snapshotUuid ? undefined : await runningVmOf(d, vol);
    if (vm && ps.type !== 'Ceph') throw new TStackError('CONFLICT', `volume ${vol.name} is in use by running VM ${vm.name}; stop the VM or make the image from a snapshot of the volume`, { state: vm.state });
    const img = await d.store.create<Resource>({ ...img0, status: 'Creating', progress: 0, backupStorageRefs: [], size: vol.size });
    const host = await hostForVolume(d, vol);
    const refs: Array<Record<string, unknown>> = [];
    try {
      let info: S.ImageInfo | undefined;
      const bss = img.backupStorageUuids as string[];
      for (const [i, bsUuid] of bss.entries()) {
        oc.job?.progress(Math.floor((i * 100) / bss.length), `copying the volume to backup storage ${bsUuid}`);
        const req: Parameters<typeof d.agentClient.call<typeof S.VolumeToImage>>[2] = { ps: psSpec(ps), volumeUuid: vol.uuid, imageUuid: img.uuid, imageStore: await imageStoreRef(d, bsUuid), format: 'qcow2' };
        if (snapshotUuid) req.snapshotUuid = snapshotUuid;
        info = await callHost(d, host, 'storageagent', S.VolumeToImage, req);
        refs.push({ backupStorageUuid: bsUuid, installPath: info.installPath, status: 'Ready' });
        await d.store.update(img.uuid, { backupStorageRefs: refs });
      }
      oc.job?.progress(100, 'image ready');
      return await d.store.update(img.uuid, { status: 'Ready', progress: 100, size: info!.virtualSize, actualSize: info!.actualSize, md5sum: info!.md5, backupStorageRefs: refs });
    } catch (e) {
      for (const bsUuid of img.backupStorageUuids as string[]) {
        const bs = await d.store.get(bsUuid);
        if (bs) await deleteFromBs(d, bs, img.uuid).catch(() => undefined);
      }
      await d.store.delete(img.uuid);
      throw e;
    }
  });
}
