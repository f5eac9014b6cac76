// QoS: I/O limits of volumes (QEMU throttling through libvirt's blkdeviotune) and bandwidth of
// VM NICs (libvirt's interface bandwidth, tc on the tap). Kept on the resource (`qos`), put
// into the domain spec at every start, and applied live when the VM runs.
import { TStackError } from '../../shared/errors.js';
import * as K from '../../shared/protocol/kvm.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { callHost, mustGet } from '../cloud/common.js';
import { runningVmOf } from './volumes.js';

export interface VolumeQos {
  totalBandwidth?: number;
  readBandwidth?: number;
  writeBandwidth?: number;
  totalIops?: number;
}
export interface NicQos {
  inboundBandwidth?: number;
  outboundBandwidth?: number;
}

export function diskQosSpec(q: VolumeQos | undefined): K.DiskQosT | undefined {
  if (!q) return undefined;
  const out: K.DiskQosT = {};
  if (q.totalBandwidth !== undefined) out.totalBytesSec = q.totalBandwidth;
  if (q.readBandwidth !== undefined) out.readBytesSec = q.readBandwidth;
  if (q.writeBandwidth !== undefined) out.writeBytesSec = q.writeBandwidth;
  if (q.totalIops !== undefined) out.totalIopsSec = q.totalIops;
  return Object.keys(out).length ? out : undefined;
}

export function nicQosSpec(q: NicQos | undefined): K.NicQosT | undefined {
  if (!q) return undefined;
  const out: K.NicQosT = {};
  if (q.inboundBandwidth !== undefined) out.inboundBytesSec = q.inboundBandwidth;
  if (q.outboundBandwidth !== undefined) out.outboundBytesSec = q.outboundBandwidth;
  return Object.keys(out).length ? out : undefined;
}

/**
 * The QoS a VM's instance offering gives its root volume and NICs (when they have none of their
 * own). `known`: the offering's record as the caller read it (its QoS fields are not in its
 * update schema: a record read earlier gives the same answer).
 */
export async function qosOfOffering(store: InventoryStore, vm: Resource, known?: Resource): Promise<{ root?: VolumeQos; nic?: NicQos }> {
  const uuid = vm.instanceOfferingUuid;
  const off = typeof uuid !== 'string' ? undefined : known?.uuid === uuid ? known : await store.get(uuid);
  if (!off) return {};
  const out: { root?: VolumeQos; nic?: NicQos } = {};
  if (typeof off.volumeTotalBandwidth === 'number') out.root = { totalBandwidth: off.volumeTotalBandwidth };
  const nic: NicQos = {};
  if (typeof off.networkInboundBandwidth === 'number') nic.inboundBandwidth = off.networkInboundBandwidth;
  if (typeof off.networkOutboundBandwidth === 'number') nic.outboundBandwidth = off.networkOutboundBandwidth;
  if (Object.keys(nic).length) out.nic = nic;
  return out;
}

const pick = <T extends object>(p: Record<string, unknown>, keys: Array<keyof T>): T => Object.fromEntries(keys.filter((k) => p[k as string] !== undefined).map((k) => [k, p[k as string]])) as T;

async function applyVolumeQos(vol0: Resource, qos: VolumeQos | undefined, oc: OpContext): Promise<Resource> {
  const d = oc;
  if (qos?.totalBandwidth !== undefined && (qos.readBandwidth !== undefined || qos.writeBandwidth !== undefined)) {
    throw new TStackError('INVALID_ARGUMENT', 'setQos.totalBandwidth: give either totalBandwidth or readBandwidth/writeBandwidth', { field: 'setQos.totalBandwidth' });
  }
  return d.engine.queues.run([vol0.uuid, ...(typeof vol0.vmInstanceUuid === 'string' ? [vol0.vmInstanceUuid] : [])], async () => {
    const vol = await mustGet(d.store, vol0.uuid, 'volume');
    const vm = await runningVmOf(d, vol);
    if (vm) await callHost(d, String(vm.hostUuid), 'kvmagent', K.VmSetVolumeQos, { uuid: vm.uuid, volumeUuid: vol.uuid, qos: diskQosSpec(qos) ?? {} });
    return d.store.update(vol.uuid, { qos: qos && Object.keys(qos).length ? qos : undefined });
  });
}

async function applyNicQos(nic0: Resource, qos: NicQos | undefined, oc: OpContext): Promise<Resource> {
  const d = oc;
  const vmUuid = String(nic0.vmInstanceUuid);
  return d.engine.queues.run([vmUuid], async () => {
    const nic = await mustGet(d.store, nic0.uuid, 'vm-nic');
    const vm = await d.store.get(vmUuid);
    if (vm && typeof vm.hostUuid === 'string' && ['Running', 'Paused'].includes(String(vm.state))) {
      await callHost(d, vm.hostUuid, 'kvmagent', K.VmSetNicQos, { uuid: vm.uuid, nicUuid: nic.uuid, qos: nicQosSpec(qos) ?? {} });
    }
    return d.store.update(nic.uuid, { qos: qos && Object.keys(qos).length ? qos : undefined });
  });
}

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerQosApi(reg: ApiRegistry): void {
  once(reg, 'volumes', 'setQos', { long: true, run: (v, p, oc) => applyVolumeQos(v, pick<VolumeQos>(p, ['totalBandwidth', 'readBandwidth', 'writeBandwidth', 'totalIops']), oc) });
  once(reg, 'volumes', 'deleteQos', { long: true, run: (v, _p, oc) => applyVolumeQos(v, undefined, oc) });
  once(reg, 'vm-nics', 'setQos', { long: true, run: (n, p, oc) => applyNicQos(n, pick<NicQos>(p, ['inboundBandwidth', 'outboundBandwidth']), oc) });
  once(reg, 'vm-nics', 'deleteQos', { long: true, run: (n, _p, oc) => applyNicQos(n, undefined, oc) });
}
