// VM clone: N new VMs with the source's disk contents, each with its own NICs, addresses and
// hostname (from its name). The source's root volume becomes a RootVolumeTemplate image
// (from a snapshot when the VM runs: frozen layers are readable under a running QEMU); each
// clone's root volume is a linked clone of that image's cache on the primary storage; the
// image record is removed afterwards (the cache stays while clones use it).
//
// Not yet: full (flattened) clones and copies of data volumes (400 says so).
import { TStackError } from '../../shared/errors.js';
import { Obj, Type } from '../../shared/protocol/schema.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { mustGet } from '../cloud/common.js';
import { deleteFromBs } from '../storage/index.js';
import { snapshotVolume } from '../storage/snapshots.js';
import { createImageFromVolume } from '../storage/volume-images.js';
import { runningVmOf } from '../storage/volumes.js';
import { mustKindDef, prepareCreate } from '../model/index.js';

export const CloneSchema = Obj({
  names: Type.Array(Type.String({ minLength: 1, maxLength: 255 }), { minItems: 1, maxItems: 16 }),
  full: Type.Optional(Type.Boolean({ description: 'flattened copies instead of linked clones (not supported yet)' })),
  withDataVolumes: Type.Optional(Type.Boolean({ description: 'also copy the data volumes (not supported yet)' })),
});

/** One flow per operation: the nested operations get no job of their own (their flow ids stay unique). */
const noJob = (oc: OpContext): OpContext => {
  const { job: _job, ...rest } = oc;
  return rest;
};

async function cloneVm(vm0: Resource, params: Record<string, unknown>, oc: OpContext): Promise<unknown> {
  const d = oc;
  if (params.full === true) throw new TStackError('INVALID_ARGUMENT', 'clone.full: full clones are not supported yet; clones are linked to a template of the source', { field: 'clone.full' });
  if (params.withDataVolumes === true) throw new TStackError('INVALID_ARGUMENT', 'clone.withDataVolumes: copying data volumes is not supported yet', { field: 'clone.withDataVolumes' });
  const vm = await mustGet(d.store, vm0.uuid, 'vm-instance');
  if (!['Running', 'Stopped', 'Paused'].includes(String(vm.state))) throw new TStackError('CONFLICT', `VM ${vm.name} is ${String(vm.state)}`, { state: vm.state });
  const root = await mustGet(d.store, String(vm.rootVolumeUuid), 'volume');
  const srcImage = await d.store.get(String(vm.imageUuid));
  const bsUuid = (srcImage?.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined)?.[0]?.backupStorageUuid;
  if (!bsUuid) throw new TStackError('CONFLICT', `the image VM ${vm.name} was made from is on no backup storage; nowhere to put the template`);
  const inner = noJob(oc);
  const names = params.names as string[];
  oc.job?.progress(5, 'template of the root volume');
  const stamp = new Date().toISOString().replace(/[^0-9]/g, '').slice(0, 14);
  const imgBody: Record<string, unknown> = { name: `clone-of-${String(vm.name)}-${stamp}`.slice(0, 255), backupStorageUuids: [bsUuid], mediaType: 'RootVolumeTemplate', system: true };
  if ((await runningVmOf(d, root)) && (await mustGet(d.store, String(root.primaryStorageUuid), 'primary-storage')).type !== 'Ceph') {
    const snap = await snapshotVolume(d, root, { name: `clone-source-${stamp}`, description: `taken to clone VM ${String(vm.name)} while it runs` }, inner);
    imgBody.volumeSnapshotUuid = snap.uuid;
  } else {
    imgBody.rootVolumeUuid = root.uuid;
  }
  const prepared = await prepareCreate(d.store, mustKindDef('image'), imgBody, { ownerAccountUuid: vm.ownerAccountUuid });
  const image = await createImageFromVolume(prepared.resource, inner);
  const created: Resource[] = [];
  try {
    const create = oc.registry.collection('vm-instances')?.create;
    if (!create) throw new TStackError('INTERNAL', 'VM create is not installed');
    for (const [i, name] of names.entries()) {
      oc.job?.progress(10 + Math.floor((i * 85) / names.length), `creating clone ${name}`);
      const body: Record<string, unknown> = { name, imageUuid: image.uuid, l3NetworkUuids: vm.l3NetworkUuids, defaultL3NetworkUuid: vm.defaultL3NetworkUuid };
      if (typeof vm.instanceOfferingUuid === 'string' && (await d.store.get(vm.instanceOfferingUuid))) body.instanceOfferingUuid = vm.instanceOfferingUuid;
      else Object.assign(body, { cpuNum: vm.cpuNum, memorySize: vm.memorySize });
      for (const f of ['sshKey', 'userData', 'primaryStorageUuidForRootVolume', 'haLevel'] as const) if (vm[f] !== undefined) body[f] = vm[f];
      if (vm.state === 'Stopped') body.strategy = 'CreateStopped';
      created.push(await create.run(body, inner));
    }
  } finally {
    // the template's job is done: the clones' root volumes sit on its cache
    for (const r of (image.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined) ?? []) {
      const bs = await d.store.get(r.backupStorageUuid);
      if (bs) await deleteFromBs(d, bs, image.uuid).catch(() => undefined);
    }
    await d.store.delete(image.uuid);
  }
  oc.job?.progress(100, 'cloned');
  return { vmInstanceUuid: vm.uuid, clones: created };
}

export function registerCloneApi(reg: ApiRegistry): void {
  if (!reg.action('vm-instances', 'clone')?.run) reg.registerAction('vm-instances', 'clone', { long: true, schema: CloneSchema, description: 'Clone the VM: N new VMs (linked clones of its root volume), each with its own NICs and addresses', run: cloneVm });
}
