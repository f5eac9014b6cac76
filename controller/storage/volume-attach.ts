// Attaching a data volume to a VM (instantiated on the VM's host first when it has no files yet:
// empty, or from a DataVolumeTemplate image; hot-plugged when the VM runs) and detaching it, as
// flows that a controller killed midway loses nothing of (issue 19): they run under the job's
// uuid with their outcome kept, resume forward on whichever controller takes the journal over,
// and the job's resumer (api/resume.ts actionJobResumer) answers with the VM.
//
//   vm-volume-attach: check · volume (instantiate) · plug (device number, vm/volume/attach) · record
//   vm-volume-detach: check · unplug (vm/volume/detach) · record
//
// The journal is written before every step, so a resumed run never checks again what its own
// earlier steps changed (an attached volume would fail the attach's check). Agent commands carry
// the flow's task ids: sent again after a crash they join or answer their first run (the VM gets
// its disk once). Test-only fault points: <flow>:accepted and <flow>:<step>.
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { faultPause } from '../../shared/fault-pause.js';
import * as K from '../../shared/protocol/kvm.js';
import * as S from '../../shared/protocol/storage.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import type { FlowContext, FlowDef } from '../workflow/flow.js';
import { allocatePrimaryStorage, releasePrimaryStorage } from '../allocator/primary-storage.js';
import { callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { imageStoreRef, psSpec } from './index.js';
import { dataVolumesOf, volumeSpec } from './volumes.js';

interface AttachData extends Record<string, unknown> {
  vmUuid: string;
  volumeUuid: string;
  /** The device number the volume gets (journaled before the hot-plug that uses it). */
  dev?: number;
  /** The VM as `record` left it (the answer; not needed after a crash: the resumer reads the VM). */
  vm?: Resource;
}
type Ctx = FlowContext<AttachData>;

const running = (vm: Resource): boolean => vm.state === 'Running' || vm.state === 'Paused';

/** Make the volume's files on the VM's host (its primary storage reserved first). */
async function instantiate(ctx: Ctx, vol: Resource, vm: Resource): Promise<void> {
  const d: CloudDeps = ctx.controller;
  const hostUuid = String(vm.hostUuid ?? vm.lastHostUuid);
  const host = await mustGet(d.store, hostUuid, 'host');
  const size = Number(vol.size ?? 0);
  const req: Parameters<typeof allocatePrimaryStorage>[1] = { size, clusterUuid: String(host.parentUuid) };
  if (typeof vol.primaryStorageUuid === 'string') req.primaryStorageUuid = vol.primaryStorageUuid;
  // idempotent per volume: a resumed run finds its reservation
  const { primaryStorage: ps } = await allocatePrimaryStorage(d.store, req, vol.uuid);
  try {
    let info: S.VolumeInfo;
    if (typeof vol.imageUuid === 'string') {
      // from a DataVolumeTemplate image: a linked clone of its cache on the primary storage
      const image = await mustGet(d.store, vol.imageUuid, 'image');
      const ref = (image.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined)?.[0];
      if (!ref) throw new TStackError('INVALID_ARGUMENT', `image ${image.name} is on no backup storage`, { field: 'imageUuid' });
      await callHost(d, hostUuid, 'storageagent', S.PsImageCache, { ps: psSpec(ps), imageUuid: image.uuid, imageStore: await imageStoreRef(d, ref.backupStorageUuid) }, { taskId: ctx.taskId('cache') });
      info = await callHost(d, hostUuid, 'storageagent', S.CreateRootVolume, { ps: psSpec(ps), volumeUuid: vol.uuid, imageUuid: image.uuid }, { taskId: ctx.taskId('vol') });
    } else {
      info = await callHost(d, hostUuid, 'storageagent', S.CreateEmptyVolume, { ps: psSpec(ps), volumeUuid: vol.uuid, size }, { taskId: ctx.taskId('vol') });
    }
    await d.store.update(vol.uuid, { status: 'Ready', primaryStorageUuid: ps.uuid, hostUuid, clusterUuid: host.parentUuid, source: info.source, installPath: info.installPath, format: info.format, size: info.size, actualSize: info.actualSize });
  } catch (e) {
    await releasePrimaryStorage(d.store, ps.uuid, vol.uuid);
    throw e;
  }
}

const ATTACH_FIELD = 'attachVolume.volumeUuid';

export const volumeAttachFlow: FlowDef<AttachData> = {
  name: 'vm-volume-attach',
  onResume: 'complete',
  steps: [
    {
      name: 'check',
      async run(ctx) {
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        const vol = await mustGet(ctx.store, ctx.data.volumeUuid, 'volume', ATTACH_FIELD);
        if (vol.ownerAccountUuid !== vm.ownerAccountUuid) throw new TStackError('INVALID_ARGUMENT', `${ATTACH_FIELD}: not your volume`, { field: ATTACH_FIELD });
        if (vol.type === 'Root') throw new TStackError('INVALID_ARGUMENT', `${ATTACH_FIELD}: a root volume cannot be attached`, { field: ATTACH_FIELD });
        if (vol.vmInstanceUuid) throw new TStackError('CONFLICT', `volume ${vol.name} is attached to VM ${String(vol.vmInstanceUuid)}`);
        if (!['Running', 'Stopped', 'Paused'].includes(String(vm.state))) throw new TStackError('CONFLICT', `VM ${vm.name} is ${String(vm.state)}`);
        if (vol.status === 'Ready' && vol.hostUuid && vol.hostUuid !== (vm.hostUuid ?? vm.lastHostUuid)) {
          const ps = await ctx.store.get(String(vol.primaryStorageUuid));
          if (ps?.type === 'LocalStorage') throw new TStackError('CONFLICT', `volume ${vol.name} is on the local storage of another host`);
        }
        injectFault('vm-volume-attach', 'check');
      },
    },
    {
      name: 'volume',
      async run(ctx) {
        const vol = await mustGet(ctx.store, ctx.data.volumeUuid, 'volume', ATTACH_FIELD);
        if (vol.status !== 'Ready') await instantiate(ctx, vol, await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance'));
        injectFault('vm-volume-attach', 'volume');
      },
    },
    {
      name: 'plug',
      async run(ctx) {
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        if (ctx.data.dev === undefined) {
          const used = new Set((await dataVolumesOf(ctx.controller, vm.uuid)).map((x) => Number(x.deviceId)));
          let dev = 1;
          while (used.has(dev)) dev++;
          ctx.data.dev = dev;
          await ctx.save();
        }
        if (running(vm)) {
          const vol = await mustGet(ctx.store, ctx.data.volumeUuid, 'volume');
          await callHost(ctx.controller, String(vm.hostUuid), 'kvmagent', K.VmAttachVolume, { uuid: vm.uuid, volume: volumeSpec(vol, ctx.data.dev) }, { taskId: ctx.taskId('attach') });
        }
        injectFault('vm-volume-attach', 'plug');
      },
    },
    {
      name: 'record',
      async run(ctx) {
        const { vmUuid, volumeUuid, dev } = ctx.data;
        await ctx.store.update(volumeUuid, { vmInstanceUuid: vmUuid, deviceId: dev, _createdWithVm: false });
        const vm = await mustGet(ctx.store, vmUuid, 'vm-instance');
        ctx.data.vm = await ctx.store.update(vmUuid, { allVolumes: [...new Set([...((vm.allVolumes as string[] | undefined) ?? []), volumeUuid])] });
        injectFault('vm-volume-attach', 'record');
      },
    },
  ],
};

const DETACH_FIELD = 'detachVolume.volumeUuid';

export const volumeDetachFlow: FlowDef<AttachData> = {
  name: 'vm-volume-detach',
  onResume: 'complete',
  steps: [
    {
      name: 'check',
      async run(ctx) {
        const vol = await mustGet(ctx.store, ctx.data.volumeUuid, 'volume', DETACH_FIELD);
        if (vol.vmInstanceUuid !== ctx.data.vmUuid || vol.type === 'Root') throw new TStackError('INVALID_ARGUMENT', `${DETACH_FIELD}: volume ${vol.name} is not a data volume of this VM`, { field: DETACH_FIELD });
        injectFault('vm-volume-detach', 'check');
      },
    },
    {
      name: 'unplug',
      async run(ctx) {
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        if (running(vm)) await callHost(ctx.controller, String(vm.hostUuid), 'kvmagent', K.VmDetachVolume, { uuid: vm.uuid, volumeUuid: ctx.data.volumeUuid }, { taskId: ctx.taskId('detach') });
        injectFault('vm-volume-detach', 'unplug');
      },
    },
    {
      name: 'record',
      async run(ctx) {
        const { vmUuid, volumeUuid } = ctx.data;
        await ctx.store.update(volumeUuid, { vmInstanceUuid: undefined, deviceId: undefined, _createdWithVm: false });
        const vm = await mustGet(ctx.store, vmUuid, 'vm-instance');
        ctx.data.vm = await ctx.store.update(vmUuid, { allVolumes: ((vm.allVolumes as string[] | undefined) ?? []).filter((u) => u !== volumeUuid) });
        injectFault('vm-volume-detach', 'record');
      },
    },
  ],
};

/** Runs `flow` for the action: under the job's uuid with its outcome kept (its resumer tells completed from never started). */
async function run(flow: FlowDef<AttachData>, vm: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const volumeUuid = String(params.volumeUuid);
  faultPause(`${flow.name}:accepted`); // tests: frozen after the job was acknowledged, before the flow's journal
  const o: Parameters<OpContext['engine']['run']>[2] = { id: oc.job?.jobUuid ?? randomUUID(), lockKeys: [vm.uuid, volumeUuid] };
  if (oc.job) {
    o.keepOutcome = true;
    o.onProgress = (p, m) => oc.job!.progress(p, m);
  }
  return (await oc.engine.run<AttachData>(flow, { vmUuid: vm.uuid, volumeUuid }, o)).vm!;
}

export const attachVolume = (vm: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> => run(volumeAttachFlow, vm, params, oc);
export const detachVolume = (vm: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> => run(volumeDetachFlow, vm, params, oc);

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerVolumeAttachApi(reg: ApiRegistry): void {
  once(reg, 'vm-instances', 'attachVolume', { long: true, resumable: true, run: attachVolume });
  once(reg, 'vm-instances', 'detachVolume', { long: true, resumable: true, run: detachVolume });
}
