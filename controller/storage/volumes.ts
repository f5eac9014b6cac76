// Volumes in the cloud: resize (grow only: QEMU block_resize when the VM runs, the storage agent
// otherwise), delete (with its snapshots); attach/detach to a VM (instantiated on attach):
// volume-attach.ts.
//
// Which host does the agent work: the VM's host when it runs (its QEMU holds the files), else
// the volume's host (local storage), else any connected host of a cluster the primary storage
// is attached to (shared kinds).
import { TStackError } from '../../shared/errors.js';
import * as K from '../../shared/protocol/kvm.js';
import * as S from '../../shared/protocol/storage.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { allocatePrimaryStorage, releasePrimaryStorage } from '../allocator/primary-storage.js';
import { attachedFrom } from '../model/attachments.js';
import { callHost, mustGet, type CloudDeps } from '../cloud/common.js';
import { psSpec } from './index.js';
import { diskQosSpec, type VolumeQos } from './qos.js';

const MiB = 1024 * 1024;
/** Resize granularity: sizes are rounded up to it (qcow2 and RBD both like aligned sizes). */
export const RESIZE_STEP = 4 * MiB;

export interface VolRec {
  uuid: string;
  psUuid?: string;
  hostUuid?: string;
  size: number;
}

/** A volume on primary storage as the kvmagent wants it. */
export function volumeSpec(vol: Resource, deviceIndex: number): K.VolumeSpecT {
  const spec: K.VolumeSpecT = { uuid: vol.uuid, source: vol.source as K.VolumeSourceT, bus: 'virtio', cache: 'writeback', serial: vol.uuid.replace(/-/g, '').slice(0, 20), deviceIndex };
  const qos = diskQosSpec(vol.qos as VolumeQos | undefined);
  if (qos) spec.qos = qos;
  return spec;
}

export async function dataVolumesOf(d: CloudDeps, vmUuid: string): Promise<Resource[]> {
  const r = await d.store.list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: vmUuid }] });
  return r.items.filter((v) => v.type === 'Data' && v.status === 'Ready').sort((a, b) => Number(a.deviceId) - Number(b.deviceId));
}

/** A local-storage volume whose files stay on a host that could not be reached. */
export interface LeftFiles {
  volumeUuid: string;
  hostUuid: string;
  primaryStorageUuid: string;
  installPath?: string;
}

/**
 * Delete a volume's files (with its snapshots), its PS reservation and its records.
 * `taskId`: the agent command's (a flow's: sent again after a crash, it joins its first run).
 * `localHostDown: 'leave'`: a local-storage volume whose host is down (not Connected) loses its
 * records anyway and its files are left there and returned (expunging a VM of a dead host);
 * otherwise the call to the down host fails and the delete can be retried.
 */
export async function deleteVolumeEverywhere(d: CloudDeps, vol: VolRec, fallbackHost?: string, o: { localHostDown?: 'fail' | 'leave'; taskId?: string } = {}): Promise<LeftFiles | undefined> {
  const rec = await d.store.get(vol.uuid);
  const psUuid = vol.psUuid ?? (rec?.primaryStorageUuid as string | undefined);
  let hostUuid = (rec?.hostUuid as string | undefined) ?? vol.hostUuid ?? fallbackHost;
  const ps = psUuid ? await d.store.get(psUuid) : undefined;
  const host = ps && hostUuid ? await d.store.get(hostUuid) : undefined;
  let left: LeftFiles | undefined;
  if (ps && hostUuid && (!host || (ps.type !== 'LocalStorage' && host.status !== 'Connected'))) {
    // the host the volume was made on is gone (removed after the VM migrated away) or down (dead,
    // disconnected): shared storage is reached from another host; a local disk went with its host
    hostUuid = ps.type === 'LocalStorage' ? undefined : await connectedHostOf(d, ps.uuid);
    if (!hostUuid && ps.type !== 'LocalStorage') throw new TStackError('HOST_NOT_CONNECTED', `no connected host can reach primary storage ${ps.name} to delete volume ${vol.uuid}`);
  } else if (ps && host && host.status !== 'Connected' && o.localHostDown === 'leave') {
    // a local disk on a host that is down: nothing else can reach it
    left = { volumeUuid: vol.uuid, hostUuid: host.uuid, primaryStorageUuid: ps.uuid, ...(typeof rec?.installPath === 'string' ? { installPath: rec.installPath } : {}) };
    hostUuid = undefined;
  }
  if (ps && hostUuid) await callHost(d, hostUuid, 'storageagent', S.DeleteVolume, { ps: psSpec(ps), volumeUuid: vol.uuid }, o.taskId ? { taskId: o.taskId } : undefined);
  if (psUuid) await releasePrimaryStorage(d.store, psUuid, vol.uuid);
  for (const s of await d.store.byParent('volume-snapshot', vol.uuid)) await d.store.delete(s.uuid);
  if (rec) await d.store.delete(vol.uuid);
  return left;
}

/** The VM a volume is attached to, when that VM runs (or is paused) on a host. */
export async function runningVmOf(d: CloudDeps, vol: Resource): Promise<Resource | undefined> {
  if (typeof vol.vmInstanceUuid !== 'string') return undefined;
  const vm = await d.store.get(vol.vmInstanceUuid);
  if (!vm || typeof vm.hostUuid !== 'string') return undefined;
  return ['Running', 'Paused'].includes(String(vm.state)) ? vm : undefined;
}

/** The VM a volume is attached to is neither Stopped nor gone: revert and the like must wait. */
export async function vmInUse(d: CloudDeps, vol: Resource): Promise<Resource | undefined> {
  if (typeof vol.vmInstanceUuid !== 'string') return undefined;
  const vm = await d.store.get(vol.vmInstanceUuid);
  if (!vm || ['Stopped', 'Destroyed', 'Created'].includes(String(vm.state))) return undefined;
  return vm;
}

/** The host whose storage agent works on a volume (see the header). */
export async function hostForVolume(d: CloudDeps, vol: Resource): Promise<string> {
  const vm = await runningVmOf(d, vol);
  if (vm) return String(vm.hostUuid);
  if (typeof vol.hostUuid === 'string') {
    const ps = await d.store.get(String(vol.primaryStorageUuid));
    const h = await d.store.get(vol.hostUuid);
    if (ps?.type === 'LocalStorage' || h?.status === 'Connected') return vol.hostUuid;
  }
  const h = await connectedHostOf(d, String(vol.primaryStorageUuid));
  if (h) return h;
  throw new TStackError('HOST_NOT_CONNECTED', `no connected host can reach the primary storage of volume ${vol.name}`);
}

/** A connected host of a cluster the primary storage is attached to. */
async function connectedHostOf(d: CloudDeps, psUuid: string): Promise<string | undefined> {
  for (const c of await attachedFrom(d.store, 'cluster-primary-storage', psUuid)) {
    const h = (await d.store.byParent('host', c)).find((x) => x.status === 'Connected');
    if (h) return h.uuid;
  }
  return undefined;
}

async function deleteVolume(vol: Resource, _q: Record<string, string>, oc: OpContext): Promise<Resource> {
  const d = oc;
  return d.engine.queues.run([vol.uuid], async () => {
    const v = await mustGet(d.store, vol.uuid, 'volume');
    if (v.vmInstanceUuid) throw new TStackError('CONFLICT', `volume ${v.name} is attached to VM ${String(v.vmInstanceUuid)}; detach it first`);
    let hostUuid: string | undefined;
    if (v.status === 'Ready') hostUuid = await hostForVolume(d, v);
    await deleteVolumeEverywhere(d, { uuid: v.uuid, size: Number(v.size ?? 0) }, hostUuid);
    return v;
  });
}

/** Keep the primary storage reservation in step with a grown volume (same storage, new size). */
async function reserveGrowth(d: CloudDeps, vol: Resource, size: number): Promise<void> {
  const psUuid = String(vol.primaryStorageUuid);
  await releasePrimaryStorage(d.store, psUuid, vol.uuid);
  try {
    await allocatePrimaryStorage(d.store, { size, primaryStorageUuid: psUuid }, vol.uuid);
  } catch (e) {
    await allocatePrimaryStorage(d.store, { size: Number(vol.size ?? 0), primaryStorageUuid: psUuid }, vol.uuid).catch(() => undefined);
    throw e;
  }
}

/**
 * Grow a volume. Running VM: QEMU's block_resize (the guest sees the new size at once; QEMU
 * grows the file or RBD image itself); otherwise the storage agent. Never shrinks (400).
 */
async function resizeVolume(vol0: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const asked = Number(params.size);
  const size = Math.ceil(asked / RESIZE_STEP) * RESIZE_STEP;
  return d.engine.queues.run([vol0.uuid, ...(typeof vol0.vmInstanceUuid === 'string' ? [vol0.vmInstanceUuid] : [])], async () => {
    const vol = await mustGet(d.store, vol0.uuid, 'volume');
    const cur = Number(vol.size ?? 0);
    if (asked < cur) throw new TStackError('INVALID_ARGUMENT', `resize.size: ${asked} is smaller than the volume's ${cur} bytes; volumes only grow`, { field: 'resize.size', current: cur });
    if (size === cur) return vol;
    if (vol.status !== 'Ready') return d.store.update(vol.uuid, { size });
    await reserveGrowth(d, vol, size);
    try {
      const vm = await runningVmOf(d, vol);
      if (vm) {
        const r = await callHost(d, String(vm.hostUuid), 'kvmagent', K.VmResizeVolume, { uuid: vm.uuid, volumeUuid: vol.uuid, size });
        return await d.store.update(vol.uuid, { size: r.size });
      }
      const ps = await mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
      const info = await callHost(d, await hostForVolume(d, vol), 'storageagent', S.ResizeVolume, { ps: psSpec(ps), volumeUuid: vol.uuid, size });
      return await d.store.update(vol.uuid, { size: info.size, actualSize: info.actualSize });
    } catch (e) {
      await reserveGrowth(d, { ...vol, size }, cur).catch(() => undefined);
      throw e;
    }
  });
}

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerVolumeApi(reg: ApiRegistry): void {
  once(reg, 'volumes', 'resize', { long: true, run: resizeVolume });
  reg.setDelete('volumes', { long: true, run: deleteVolume });
}
