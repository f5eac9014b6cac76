// A VM's domain spec and host-side services, built from the inventory: what vm-create,
// vm-start and migration send to a host (split from vm.ts).
import * as K from '../../shared/protocol/kvm.js';
import { logger } from '../../shared/log.js';
import type { Resource } from '../store/types.js';
import { mustGet, refreshable, type CloudDeps } from '../cloud/common.js';
import type { CallOptions } from '../agent-client/client.js';
import { psSpec } from '../storage/index.js';
import { dataVolumesOf, volumeSpec } from '../storage/volumes.js';
import { nicQosSpec, qosOfOffering, type NicQos } from '../storage/qos.js';
import { bridgeFactPrefix, ensureBridge } from '../network/index.js';
import { markVm, syncVmFlat } from '../network/flat-reconcile.js';
import { vncPassword } from '../console/tokens.js';

const log = logger('vm');

const safeName = (s: string): string => (s.replace(/[^A-Za-z0-9_.:-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 100) || 'vm');

/** Where a volume lives for agent calls: its host (local storage) or the given host. */
async function psOfVolume(d: CloudDeps, vol: Resource): Promise<Resource> {
  return mustGet(d.store, String(vol.primaryStorageUuid), 'primary-storage');
}

/**
 * L3 records a flow has read (uuid → record): what it takes of them (the L2, the provider and
 * network services) cannot change after the L3's create (its update schema), so a later step
 * reuses them (issue 19: a VM create read its L3 5 times).
 */
export type L3sRead = Map<string, Resource>;

async function l3Of(d: CloudDeps, uuid: string, read?: L3sRead): Promise<Resource> {
  const had = read?.get(uuid);
  if (had) return had;
  const l3 = await mustGet(d.store, uuid, 'l3-network');
  read?.set(uuid, l3);
  return l3;
}

/** The L2 of an L3 and its bridge on a host (`reuse`, `host`: ensureBridge's; `l3s`: records read already). */
export async function bridgeFor(d: CloudDeps, hostUuid: string, l3NetworkUuid: string, o: { reuse?: boolean; host?: Resource; l3s?: L3sRead } = {}): Promise<string> {
  const l3 = await l3Of(d, l3NetworkUuid, o.l3s);
  const l2 = await mustGet(d.store, String(l3.parentUuid), 'l2-network');
  return ensureBridge(d, hostUuid, l2, o);
}

const byDevice = (nics: Resource[]): Resource[] => nics.sort((a, b) => Number(a.deviceId) - Number(b.deviceId));

export async function nicsOf(d: CloudDeps, vmUuid: string): Promise<Resource[]> {
  return byDevice(await d.store.byParent('vm-nic', vmUuid));
}

/**
 * DHCP entries + metadata of the VM's NICs on a host (flat-reconcile.ts), applied before it
 * boots; also creates the bridges of the VM's L2 networks on the host (migration relies on it).
 */
export async function addServices(d: CloudDeps, vm: Resource, hostUuid: string): Promise<void> {
  for (const nic of await nicsOf(d, vm.uuid)) await bridgeFor(d, hostUuid, String(nic.l3NetworkUuid));
  await syncVmFlat(d, vm, hostUuid);
}

/** The VM's NICs leave a host: its flat keys are marked and re-applied from the inventory. */
export async function removeServices(d: CloudDeps, vmUuid: string, hostUuid: string): Promise<void> {
  const vm = await d.store.get(vmUuid);
  markVm(d.reconcile, { ...(vm ?? { uuid: vmUuid }), hostUuid, lastHostUuid: undefined } as Resource);
}

/**
 * VNC listens on the host's management address (where the controller's console proxy reaches
 * it; loopback when that is not an IPv4), behind the VM's console password.
 */
function consoleSpec(vm: Resource, host: Resource): NonNullable<K.VmSpecT['console']> {
  const c: NonNullable<K.VmSpecT['console']> = { type: 'vnc' };
  if (/^\d+\.\d+\.\d+\.\d+$/.test(String(host.managementIp))) c.listen = String(host.managementIp);
  const pw = vncPassword(vm._consolePassword);
  if (pw) c.password = pw;
  return c;
}

/** What a caller has just read or made, so the spec needs no second look (issue 19). */
export interface KnownForSpec {
  /** L3 → the bridge already made on the host (or known to be there: see startOnHost). */
  bridges?: Readonly<Record<string, string>>;
  /** The root volume's record and its primary storage (a local PS record holds every host's capacity: a costly read). */
  root?: Resource;
  rootPs?: Resource;
  /** The VM's Ready data volumes (vm-create: none when it asked for none; it holds the VM's queue, so none attached meanwhile). */
  dataVolumes?: readonly Resource[];
  /** The host's record (vm-create: the allocator's; see callOn). */
  host?: Resource;
  /** The VM's instance offering (vm-create: as the API's check of the body read it; its QoS cannot change: qosOfOffering). */
  offering?: Resource;
  /** The VM's NIC records (vm-create: as its ips step wrote them; it holds the VM's queue, so none changed meanwhile). */
  nics?: readonly Resource[];
}

/** The full domain spec of a VM from the inventory, for a host. */
async function buildSpec(d: CloudDeps, vm: Resource, host: Resource, known: KnownForSpec = {}): Promise<K.VmSpecT> {
  const bridges = known.bridges ?? {};
  const root = known.root && known.root.uuid === vm.rootVolumeUuid ? known.root : await mustGet(d.store, String(vm.rootVolumeUuid), 'volume');
  const offeringQos = await qosOfOffering(d.store, vm, known.offering);
  const nics: K.NicSpecT[] = [];
  for (const n of known.nics ? byDevice([...known.nics]) : await nicsOf(d, vm.uuid)) {
    const l3 = String(n.l3NetworkUuid);
    // a bridge the host was just seen making (addServices on a start) is not asked for again: if it
    // is gone after all, the host's pre-check says so and startOnHost forgets and asks again
    const nic: K.NicSpecT = { uuid: n.uuid, mac: String(n.mac), bridge: bridges[l3] ?? (await bridgeFor(d, host.uuid, l3, { reuse: true })), model: 'virtio' };
    const qos = nicQosSpec((n.qos as NicQos | undefined) ?? offeringQos.nic);
    if (qos) nic.qos = qos;
    nics.push(nic);
  }
  const data = (known.dataVolumes ?? (await dataVolumesOf(d, vm.uuid))).map((v, i) => volumeSpec(v, Number(v.deviceId ?? i + 1)));
  const spec: K.VmSpecT = {
    uuid: vm.uuid,
    name: safeName(String(vm.name)),
    cpuNum: Number(vm.cpuNum),
    memorySize: Number(vm.memorySize),
    cpuMode: 'default',
    virtType: host.virtType === 'kvm' ? 'kvm' : 'qemu',
    rootVolume: volumeSpec(root.qos === undefined && offeringQos.root ? { ...root, qos: offeringQos.root } : root, 0),
    dataVolumes: data,
    cdroms: typeof vm._isoPath === 'string' ? [vm._isoPath] : [],
    nics,
    bootOrder: typeof vm._isoPath === 'string' && vm._bootFromIso === true ? ['cdrom', 'hd'] : ['hd'],
    console: consoleSpec(vm, host),
  };
  const ps = known.rootPs && known.rootPs.uuid === root.primaryStorageUuid ? known.rootPs : await psOfVolume(d, root);
  if (ps.type === 'LocalStorage' || ps.type === 'SharedMountPoint') spec.serialLogPath = `${psSpec(ps).type === 'ceph' ? '' : (psSpec(ps) as { path: string }).path}/serial-${vm.uuid}.log`;
  return spec;
}

/** The host lacks a bridge the spec names (kvmagent's pre-check, vm/precheck.ts). */
const missingBridge = (e: unknown): boolean => {
  const err = e as { code?: string; details?: { bridge?: unknown; field?: unknown } };
  return err.code === 'NETWORK_ERROR' && typeof err.details?.bridge === 'string' && /^spec\.nics\.\d+\.bridge$/.test(String(err.details.field));
};

/**
 * `known`: what the caller has just made or read (vm-create: the bridges, asked of the host
 * twice before; the root volume). Bridges the controller only knew of (host knowledge, not asked
 * this time) may be gone (a reboot or a hand-deleted bridge not noticed yet): when the host
 * says one is missing, every bridge of the VM is asked for and the start sent once more.
 */
export async function startOnHost(d: CloudDeps, vm: Resource, hostUuid: string, known: KnownForSpec = {}, o?: CallOptions): Promise<K.VmSpecT> {
  const host = known.host?.uuid === hostUuid ? known.host : await mustGet(d.store, hostUuid, 'host');
  const spec = await buildSpec(d, vm, host, known);
  try {
    const sentAt = d.hostRuntime.known.time();
    const r = await d.agentClient.call(K.VmStart, refreshable(d, host, 'kvmagent'), { spec }, o);
    // defined and started: the host had every bridge the spec names (its pre-check fails naming
    // one), so the next create need not ask either (issue 19: a host kept busy for longer than a
    // minute was asked again each minute)
    if (!r.alreadyRunning) {
      const named = new Set(spec.nics.map((n) => n.bridge));
      d.hostRuntime.known.confirm(host, bridgeFactPrefix, sentAt, (v) => named.has((v as Partial<{ bridgeName: string }>).bridgeName ?? ''));
    }
    return spec;
  } catch (e) {
    if (!missingBridge(e)) throw e;
    log.info({ host: hostUuid, vm: vm.uuid, err: (e as Error).message }, 'the host lacks a bridge of the VM: making its bridges again');
    d.hostRuntime.known.forgetPrefix(hostUuid, bridgeFactPrefix);
    const { bridges: _stale, ...rest } = known;
    const again = await buildSpec(d, vm, host, rest);
    // the first task's failure is kept by the agent under its id: the retry is a task of its own
    await d.agentClient.call(K.VmStart, refreshable(d, host, 'kvmagent'), { spec: again }, o?.taskId ? { ...o, taskId: `${o.taskId}-bridges` } : o);
    return again;
  }
}

/** The host a stopped VM must start on (local storage pins it), if any. */
export async function pinnedHost(d: CloudDeps, vm: Resource): Promise<string | undefined> {
  const root = await d.store.get(String(vm.rootVolumeUuid));
  if (!root) return undefined;
  const ps = await d.store.get(String(root.primaryStorageUuid));
  return ps?.type === 'LocalStorage' ? (root.hostUuid as string | undefined) : undefined;
}

/** The L2s of L3s (`read`: records read already, and where the ones read here are kept). */
export async function l2sOf(d: CloudDeps, l3Uuids: string[], read?: L3sRead): Promise<string[]> {
  const out: string[] = [];
  for (const u of l3Uuids) out.push(String((await l3Of(d, u, read)).parentUuid));
  return [...new Set(out)];
}
