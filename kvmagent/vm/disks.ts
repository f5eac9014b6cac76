// Disks of a running VM: volume hot-plug (idempotent attach, detach waiting for the guest to let
// go), live resize (never shrinks), I/O limits, and ISOs in the CD-ROM slots.
import { TStackError } from '../../shared/errors.js';
import type * as kvm from '../../shared/protocol/kvm.js';
import { canonicalUuid, diskXml, domainName, iotuneFields, targetDev, volumeAlias, type ParsedDomain } from '../domain-xml.js';
import { exists, type Req, type Res, type VmContext } from './context.js';

export async function attachVolume(vm: VmContext, req: Req<typeof kvm.VmAttachVolume>): Promise<Res<typeof kvm.VmAttachVolume>> {
  const uuid = canonicalUuid(req.uuid);
  const v = req.volume;
  const volUuid = canonicalUuid(v.uuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'attach-volume');
    const p = await vm.parsed(name);
    const mine = p.devices.volumes.find((d) => d.uuid === volUuid);
    if (mine) return { uuid, volumeUuid: volUuid, target: mine.target, alreadyAttached: true };
    const target = targetDev(v.bus, v.deviceIndex);
    const taken = p.devices.volumes.find((d) => d.target === target);
    if (taken) {
      throw new TStackError('CONFLICT', `device ${target} is already used by ${taken.uuid ? `volume ${taken.uuid}` : taken.source ?? 'another disk'}; choose another deviceIndex`, { field: 'volume.deviceIndex', target });
    }
    if (vm.check && v.source.type === 'file' && !(await exists(v.source.path))) {
      throw new TStackError('VOLUME_NOT_FOUND', `volume ${volUuid}: file ${v.source.path} does not exist on this host`, { field: 'volume.source.path', path: v.source.path });
    }
    if (v.bus === 'ide') throw new TStackError('INVALID_ARGUMENT', 'IDE disks cannot be hot-plugged; use bus virtio or scsi', { field: 'volume.bus' });
    await vm.driver.attachDevice(name, diskXml(v));
    return { uuid, volumeUuid: volUuid, target, alreadyAttached: false };
  });
}

export async function detachVolume(vm: VmContext, req: Req<typeof kvm.VmDetachVolume>, signal?: AbortSignal): Promise<Res<typeof kvm.VmDetachVolume>> {
  const uuid = canonicalUuid(req.uuid);
  const volUuid = canonicalUuid(req.volumeUuid);
  return vm.watcher.during(uuid, async () => {
    const name = domainName(uuid);
    if (!(await vm.driver.get(name))) return { uuid, volumeUuid: volUuid, wasAttached: false };
    const has = (p: ParsedDomain): boolean => p.devices.volumes.some((d) => d.uuid === volUuid);
    if (!has(await vm.parsed(name))) return { uuid, volumeUuid: volUuid, wasAttached: false };
    await vm.driver.detachDeviceAlias(name, volumeAlias(volUuid));
    const timeoutMs = req.timeoutMs ?? 30_000;
    if (!(await vm.waitDeviceGone(name, has, timeoutMs, signal))) {
      throw new TStackError('TIMEOUT', `the guest of VM ${uuid} did not release volume ${volUuid} within ${timeoutMs} ms (no ACPI hot-plug support, or the disk is in use); it stays attached until the guest lets go or the VM stops`, { volumeUuid: volUuid });
    }
    return { uuid, volumeUuid: volUuid, wasAttached: true };
  });
}

export async function resizeVolume(vm: VmContext, req: Req<typeof kvm.VmResizeVolume>): Promise<Res<typeof kvm.VmResizeVolume>> {
  const uuid = canonicalUuid(req.uuid);
  const volUuid = canonicalUuid(req.volumeUuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'resize-volume');
    const d = (await vm.parsed(name)).devices.volumes.find((v) => v.uuid === volUuid);
    if (!d) throw new TStackError('VOLUME_NOT_FOUND', `volume ${volUuid} is not attached to VM ${uuid}`, { volumeUuid: volUuid });
    const cur = await vm.driver.blockCapacity(name, d.target);
    if (req.size < cur) {
      throw new TStackError('INVALID_ARGUMENT', `volume ${volUuid} is ${cur} bytes; shrinking to ${req.size} would destroy data and is refused`, { field: 'size', current: cur });
    }
    if (req.size === cur) return { uuid, volumeUuid: volUuid, size: cur, changed: false };
    await vm.driver.blockResize(name, d.target, req.size);
    return { uuid, volumeUuid: volUuid, size: await vm.driver.blockCapacity(name, d.target), changed: true };
  });
}

export async function setVolumeQos(vm: VmContext, req: Req<typeof kvm.VmSetVolumeQos>): Promise<Res<typeof kvm.VmSetVolumeQos>> {
  const uuid = canonicalUuid(req.uuid);
  const volUuid = canonicalUuid(req.volumeUuid);
  const q = req.qos;
  if (q.totalBytesSec !== undefined && (q.readBytesSec !== undefined || q.writeBytesSec !== undefined)) {
    throw new TStackError('INVALID_ARGUMENT', 'qos: a total bandwidth excludes read/write bandwidths (QEMU refuses the mix)', { field: 'qos' });
  }
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'set-volume-qos');
    const d = (await vm.parsed(name)).devices.volumes.find((v) => v.uuid === volUuid);
    if (!d) throw new TStackError('VOLUME_NOT_FOUND', `volume ${volUuid} is not attached to VM ${uuid}`, { volumeUuid: volUuid });
    // every field is set each time: absent ones go back to 0 (unlimited)
    const tune: Record<string, number> = { total_bytes_sec: 0, read_bytes_sec: 0, write_bytes_sec: 0, total_iops_sec: 0 };
    if (q.totalBytesSec === undefined) delete tune.total_bytes_sec;
    else {
      delete tune.read_bytes_sec;
      delete tune.write_bytes_sec;
    }
    for (const [k, n] of iotuneFields(q)) tune[k] = n;
    await vm.driver.blockIoTune(name, d.target, tune);
    return { uuid, volumeUuid: volUuid, qos: q };
  });
}

async function isoSlots(vm: VmContext, name: string): Promise<Array<{ slot: number; target: string; source?: string }>> {
  const p = await vm.parsed(name);
  return p.devices.volumes
    .filter((v) => v.isoSlot !== undefined)
    .map((v) => {
      const s: { slot: number; target: string; source?: string } = { slot: v.isoSlot!, target: v.target };
      if (v.source !== undefined) s.source = v.source;
      return s;
    })
    .sort((a, b) => a.slot - b.slot);
}

export async function attachIso(vm: VmContext, req: Req<typeof kvm.VmAttachIso>): Promise<Res<typeof kvm.VmAttachIso>> {
  const uuid = canonicalUuid(req.uuid);
  const name = domainName(uuid);
  return vm.watcher.during(uuid, async () => {
    if (!(await vm.driver.get(name))) throw new TStackError('VM_NOT_FOUND', `attach-iso: VM ${uuid} has no domain on this host`, { uuid });
    const slots = await isoSlots(vm, name);
    const same = slots.find((s) => s.source === req.isoPath && (req.slot === undefined || s.slot === req.slot));
    if (same) return { uuid, slot: same.slot, target: same.target, alreadyAttached: true };
    if (slots.length === 0) {
      throw new TStackError('CONFLICT', `VM ${uuid} has no CD-ROM drive for ISOs; start it with spec.isoSlots (1-3) to attach ISOs later`, { field: 'isoSlots' });
    }
    const slot = req.slot !== undefined ? slots.find((s) => s.slot === req.slot) : slots.find((s) => s.source === undefined);
    if (!slot) {
      throw new TStackError('CONFLICT', req.slot !== undefined ? `VM ${uuid} has no ISO slot ${req.slot} (it has ${slots.length})` : `all ${slots.length} ISO slots of VM ${uuid} are in use; detach one first`, { field: 'slot' });
    }
    if (slot.source !== undefined) throw new TStackError('CONFLICT', `ISO slot ${slot.slot} holds ${slot.source}; detach it first`, { field: 'slot' });
    if (vm.check && !(await exists(req.isoPath))) throw new TStackError('IMAGE_NOT_FOUND', `ISO ${req.isoPath} does not exist on this host`, { field: 'isoPath' });
    await vm.driver.changeMedia(name, slot.target, req.isoPath);
    return { uuid, slot: slot.slot, target: slot.target, alreadyAttached: false };
  });
}

export async function detachIso(vm: VmContext, req: Req<typeof kvm.VmDetachIso>): Promise<Res<typeof kvm.VmDetachIso>> {
  const uuid = canonicalUuid(req.uuid);
  const name = domainName(uuid);
  return vm.watcher.during(uuid, async () => {
    if (!(await vm.driver.get(name))) return { uuid, ejected: [] };
    const ejected: number[] = [];
    for (const s of await isoSlots(vm, name)) {
      if (s.source === undefined) continue;
      if (req.slot !== undefined && s.slot !== req.slot) continue;
      if (req.isoPath !== undefined && s.source !== req.isoPath) continue;
      await vm.driver.changeMedia(name, s.target, undefined);
      ejected.push(s.slot);
    }
    return { uuid, ejected };
  });
}
