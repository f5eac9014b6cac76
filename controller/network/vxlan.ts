// VXLAN pools and VXLAN networks (manual 7.4.2.1 VXLAN Pool; white paper L2VxlanNetworkPool /
// L2VxlanNetwork).
//  - A pool (type L2VxlanNetworkPool) owns a VNI range and carries no L3 and no bridge. It is
//    attached to clusters with a VTEP CIDR (stored on the cluster ⇄ L2 attachment): a host's
//    tunnel endpoint is its address inside that CIDR (management IP first, then the addresses
//    its kvmagent reported).
//  - A VXLAN network (type L2VxlanNetwork) takes one VNI of its pool (claim `vni:<pool>` → VNI,
//    owner = the network, so two creates never share one) and is attached to every cluster its
//    pool is attached to, following the pool's attach/detach. On a host it is the kvmagent's
//    br_vx_<vni> bridge over a vxlan<vni> device with unicast head-end replication to the VTEPs
//    of every other Connected host of the pool's clusters (no multicast needed on the underlay).
import { TStackError, invalid } from '../../shared/errors.js';
import type * as K from '../../shared/protocol/kvm.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { connectedHosts, mustGet } from '../cloud/common.js';
import { ipToInt, parseCidr } from '../model/ipv4.js';

export const vniNamespace = (poolUuid: string): string => `vni:${poolUuid}`;

/** Claim a VNI of the pool for `owner`: the given one (409 if taken), else the lowest free one. */
export async function allocateVni(store: InventoryStore, pool: Resource, owner: string, vni?: number): Promise<number> {
  const ns = vniNamespace(pool.uuid);
  const start = Number(pool.vniStartInclusive);
  const end = Number(pool.vniEndInclusive);
  if (vni !== undefined) {
    if (await store.claim(ns, String(vni), owner)) return vni;
    const holder = (await store.claims(ns)).find((c) => c.key === String(vni))?.owner;
    throw new TStackError('CONFLICT', `VNI ${vni} of pool ${pool.name} is already used${holder ? ` by VXLAN network ${holder}` : ''}`, { field: 'vni', vni, owner: holder });
  }
  const claims = await store.claims(ns);
  const mine = claims.find((c) => c.owner === owner);
  if (mine) return Number(mine.key);
  const used = new Set(claims.map((c) => Number(c.key)));
  // the lowest free VNIs first; a lost race for one just moves on to the next
  for (let v = start; v <= end; v++) {
    if (used.has(v)) continue;
    if (await store.claim(ns, String(v), owner)) return v;
  }
  throw new TStackError('CAPACITY_EXCEEDED', `VXLAN pool ${pool.name} (${pool.uuid}) has no free VNI: all ${end - start + 1} of ${start}-${end} are in use`, { field: 'poolUuid', poolUuid: pool.uuid });
}

export async function releaseVni(store: InventoryStore, poolUuid: string, vni: number, owner?: string): Promise<void> {
  await store.release(vniNamespace(poolUuid), String(vni), owner);
}

/** A VTEP CIDR as given to attachL2Network (400 naming vtepCidr when it is not one). */
export function checkVtepCidr(cidr: unknown): string {
  if (typeof cidr !== 'string') throw invalid('vtepCidr', 'required to attach a VXLAN pool: the CIDR of the hosts’ tunnel endpoint addresses (e.g. 192.168.98.0/24)');
  parseCidr(cidr, 'vtepCidr');
  return cidr;
}

/** The host's tunnel endpoint: its management IP or a reported NIC address inside the CIDR. */
export function vtepIpOf(host: Resource, cidr: string): string | undefined {
  const s = parseCidr(cidr, 'vtepCidr');
  const candidates = [host.managementIp, ...((host.ipv4Addresses as unknown[] | undefined) ?? [])];
  for (const c of candidates) {
    if (typeof c !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(c)) continue;
    const n = ipToInt(c);
    if (n >= s.network && n <= s.broadcast) return c;
  }
  return undefined;
}

/** Cluster attachments of a pool: cluster uuid → VTEP CIDR. */
export async function poolClusters(store: InventoryStore, poolUuid: string): Promise<Map<string, string>> {
  const atts = (await store.list({ kind: 'cluster-l2-network', filters: [{ field: 'l2NetworkUuid', op: '=', value: poolUuid }] })).items;
  return new Map(atts.map((a) => [String(a.clusterUuid), String(a.vtepCidr ?? '')]));
}

/** The VXLAN networks of a pool. */
export async function poolNetworks(store: InventoryStore, poolUuid: string): Promise<Resource[]> {
  return (await store.list({ kind: 'l2-network', filters: [{ field: 'poolUuid', op: '=', value: poolUuid }] })).items;
}

/** Every Connected host of the pool's clusters with its VTEP address (hosts without one are left out). */
export async function poolVteps(store: InventoryStore, poolUuid: string): Promise<Array<{ host: Resource; vtep: string }>> {
  const out: Array<{ host: Resource; vtep: string }> = [];
  for (const [clusterUuid, cidr] of await poolClusters(store, poolUuid)) {
    if (!cidr) continue;
    for (const h of await connectedHosts(store, clusterUuid)) {
      const vtep = vtepIpOf(h, cidr);
      if (vtep) out.push({ host: h, vtep });
    }
  }
  return out;
}

/** The kvmagent bridge request of a VXLAN network on one host: VNI, this host's VTEP, the other VTEPs. */
export async function vxlanBridgeRequest(store: InventoryStore, hostUuid: string, l2: Resource): Promise<K.BridgeRequestT> {
  const pool = await mustGet(store, String(l2.poolUuid), 'l2-network');
  const host = await mustGet(store, hostUuid, 'host');
  const cidr = (await poolClusters(store, pool.uuid)).get(String(host.parentUuid));
  if (!cidr) throw new TStackError('CONFLICT', `the VXLAN pool ${pool.name} of L2 network ${l2.name} is not attached to the cluster of host ${host.name}`, { field: 'l2NetworkUuid' });
  const vtepIp = vtepIpOf(host, cidr);
  if (!vtepIp) throw new TStackError('CONFLICT', `host ${host.name} has no address in the VTEP CIDR ${cidr} of VXLAN pool ${pool.name}`, { field: 'vtepCidr', hostUuid });
  const peers = [...new Set((await poolVteps(store, pool.uuid)).filter((x) => x.host.uuid !== hostUuid && x.vtep !== vtepIp).map((x) => x.vtep))].sort();
  const req: K.BridgeRequestT = { type: 'Vxlan', vni: Number(l2.vni), vtepIp, peers, l2NetworkUuid: l2.uuid };
  if (typeof l2.physicalInterface === 'string') req.physicalInterface = l2.physicalInterface;
  return req;
}
