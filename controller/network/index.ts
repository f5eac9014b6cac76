// Networks in the cloud: L2 networks attached to clusters become bridges on every host of the
// cluster (and on hosts that connect later); flat L3 networks get a service namespace
// (vrouteragent: dnsmasq DHCP/DNS + metadata on 169.254.169.254) on every host that runs one of
// their VMs, with one DHCP entry and one metadata record per VM NIC, applied as desired state
// by the reconcile queue (flat-reconcile.ts).
//
// Decisions (docs/cloud.md):
//  - bridge name: derived by the kvmagent from physicalInterface (br_<if>, br_<if>_<vlan>), or the
//    L2's tag `bridgeName::<name>` to use an existing bridge (the all-in-one's aio-br0).
//  - each host's DHCP server address on an L3 is an address of the L3's ranges, claimed with
//    owner `dhcp:<hostUuid>`; the namespace and that address stay while the L3 exists.
import { TStackError, invalid } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as K from '../../shared/protocol/kvm.js';
import * as V from '../../shared/protocol/vrouter.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { attach, attachedFrom, attachedTo, detach } from '../model/attachments.js';
import { ipNamespace, releaseIp } from '../allocator/ip.js';
import { callHost, connectedHosts, mustGet, refreshable, tagValue, type CloudDeps } from '../cloud/common.js';
import { canUse, planApiDelete } from '../api/crud.js';
import { executeDeletePlan } from '../model/cascade.js';
import { isVxlanNetwork, isVxlanPool, l2Network, l2TypeOf } from '../model/network.js';
import { prepareCreate } from '../model/registry.js';
import { FLAT_AREA, flatKey } from './flat-reconcile.js';
import { allocateVni, checkVtepCidr, poolClusters, poolNetworks, poolVteps, releaseVni, vtepIpOf, vxlanBridgeRequest } from './vxlan.js';

const log = logger('network');

export function bridgeRequest(l2: Resource): K.BridgeRequestT {
  const req: K.BridgeRequestT = { type: l2.type === 'L2VlanNetwork' ? 'Vlan' : 'NoVlan', physicalInterface: String(l2.physicalInterface), l2NetworkUuid: l2.uuid };
  if (l2.type === 'L2VlanNetwork') req.vlan = Number(l2.vlan);
  const br = tagValue(l2, 'bridgeName');
  if (br) req.bridgeName = br;
  return req;
}

/** The bridge request of an L2 on one host (a VXLAN network's depends on the host: its VTEP, its peers). */
export async function hostBridgeRequest(d: CloudDeps, hostUuid: string, l2: Resource): Promise<K.BridgeRequestT> {
  if (isVxlanPool(l2)) throw new TStackError('CONFLICT', `L2 network ${l2.name} is a VXLAN pool: it has no bridge; its VXLAN networks do`, { field: 'l2NetworkUuid' });
  return isVxlanNetwork(l2) ? vxlanBridgeRequest(d.store, hostUuid, l2) : bridgeRequest(l2);
}

/** The host knowledge key of an L2's bridge (controller/host/known.ts). */
export const bridgeFactPrefix = 'bridge:';
export const bridgeFact = (l2Uuid: string): string => `${bridgeFactPrefix}${l2Uuid}`;

interface KnownBridge {
  /** The request the agent answered (a VXLAN network's changes with its peers). */
  req: string;
  bridgeName: string;
}

/**
 * Create (idempotently) the L2's bridge on a host; returns the bridge name. `reuse`: not asked
 * again when this controller saw the host make it with the same request (VM creates; the caller
 * must ask again if the host turns out to lack it, see startOnHost). `host`: its record the
 * caller holds (a create flow's; see callOn), else read here.
 */
export async function ensureBridge(d: CloudDeps, hostUuid: string, l2: Resource, o: { reuse?: boolean; host?: Resource } = {}): Promise<string> {
  const host = o.host?.uuid === hostUuid ? o.host : await mustGet(d.store, hostUuid, 'host');
  const req = await hostBridgeRequest(d, hostUuid, l2);
  const text = JSON.stringify(req);
  const key = bridgeFact(l2.uuid);
  const known = d.hostRuntime.known;
  if (o.reuse) {
    const k = known.get<KnownBridge>(host, key);
    if (k && k.req === text && k.bridgeName === l2.bridgeName) return k.bridgeName;
  }
  const create = async (): Promise<string> => {
    const token = known.begin(hostUuid, key);
    const r = await d.agentClient.call(K.BridgeCreate, refreshable(d, host, 'kvmagent'), req);
    if (l2.bridgeName !== r.bridgeName) await d.store.update(l2.uuid, { bridgeName: r.bridgeName });
    known.set(host, key, { req: text, bridgeName: r.bridgeName } satisfies KnownBridge, token);
    return r.bridgeName;
  };
  // creates on this host at once wait for one request (the same one: its text is in the id)
  return o.reuse ? known.share(hostUuid, `${key}\u0000${text}`, create) : create();
}

/** Bring every VXLAN network of a pool up to date on every host of its clusters (a peer came or went). */
async function refreshPool(d: CloudDeps, poolUuid: string): Promise<void> {
  const nets = await poolNetworks(d.store, poolUuid);
  if (nets.length === 0) return;
  for (const { host } of await poolVteps(d.store, poolUuid)) {
    for (const n of nets) await ensureBridge(d, host.uuid, n).catch((e: unknown) => log.warn({ host: host.uuid, l2: n.uuid, err: (e as Error).message }, 'VXLAN peers not updated; the next change of the pool retries'));
  }
}

async function attachL2(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const l2 = await mustGet(d.store, String(params.l2NetworkUuid), 'l2-network', 'l2NetworkUuid');
  if (isVxlanPool(l2)) return attachPool(d, cluster, l2, checkVtepCidr(params.vtepCidr), oc.adminAccountUuid);
  if (params.vtepCidr !== undefined) throw invalid('vtepCidr', 'only a VXLAN pool is attached with a VTEP CIDR');
  if (isVxlanNetwork(l2) && !(await poolClusters(d.store, String(l2.poolUuid))).has(cluster.uuid)) {
    throw invalid('l2NetworkUuid', `VXLAN network ${l2.name} follows its pool: attach the pool ${String(l2.poolUuid)} to cluster ${cluster.name} (with its VTEP CIDR)`);
  }
  await attach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid, oc.adminAccountUuid);
  try {
    for (const h of await connectedHosts(d.store, cluster.uuid)) await ensureBridge(d, h.uuid, l2);
  } catch (e) {
    await detach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid);
    throw e;
  }
  return mustGet(d.store, cluster.uuid, 'cluster');
}

/** A pool attached to a cluster: every host must have a VTEP address; the pool's networks follow. */
async function attachPool(d: CloudDeps, cluster: Resource, pool: Resource, vtepCidr: string, adminAccountUuid: string): Promise<Resource> {
  for (const h of await connectedHosts(d.store, cluster.uuid)) {
    if (!vtepIpOf(h, vtepCidr)) throw invalid('vtepCidr', `host ${h.name} (${String(h.managementIp)}) of cluster ${cluster.name} has no address in ${vtepCidr}`);
  }
  const att = await attach(d.store, 'cluster-l2-network', cluster.uuid, pool.uuid, adminAccountUuid);
  await d.store.update(att.uuid, { vtepCidr });
  const done: string[] = [];
  try {
    for (const n of await poolNetworks(d.store, pool.uuid)) {
      // owned like the network: a tenant's network (in a shared pool) is deleted with its attachments
      await attach(d.store, 'cluster-l2-network', cluster.uuid, n.uuid, n.ownerAccountUuid);
      done.push(n.uuid);
    }
    // new VTEPs: the cluster's hosts build the bridges, the other clusters' hosts learn the peers
    for (const n of await poolNetworks(d.store, pool.uuid)) for (const h of await connectedHosts(d.store, cluster.uuid)) await ensureBridge(d, h.uuid, n);
  } catch (e) {
    for (const u of done) await detach(d.store, 'cluster-l2-network', cluster.uuid, u);
    await detach(d.store, 'cluster-l2-network', cluster.uuid, pool.uuid);
    throw e;
  }
  await refreshPool(d, pool.uuid);
  return mustGet(d.store, cluster.uuid, 'cluster');
}

async function detachL2(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const l2 = await mustGet(d.store, String(params.l2NetworkUuid), 'l2-network', 'l2NetworkUuid');
  if (isVxlanPool(l2)) {
    const nets = await poolNetworks(d.store, l2.uuid);
    const attached = await attachedTo(d.store, 'cluster-l2-network', cluster.uuid);
    const mine = nets.filter((n) => attached.includes(n.uuid));
    for (const n of mine) await refuseIfUsed(d, cluster, n);
    for (const n of mine) await detachOne(d, cluster, n);
    await detach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid);
    await refreshPool(d, l2.uuid);
    return mustGet(d.store, cluster.uuid, 'cluster');
  }
  if (isVxlanNetwork(l2) && (await poolClusters(d.store, String(l2.poolUuid))).has(cluster.uuid)) {
    throw invalid('l2NetworkUuid', `VXLAN network ${l2.name} follows its pool: detach the pool ${String(l2.poolUuid)} from cluster ${cluster.name}`);
  }
  await refuseIfUsed(d, cluster, l2);
  await detachOne(d, cluster, l2);
  return mustGet(d.store, cluster.uuid, 'cluster');
}

async function refuseIfUsed(d: CloudDeps, cluster: Resource, l2: Resource): Promise<void> {
  for (const l3 of await d.store.byParent('l3-network', l2.uuid)) {
    const nics = await d.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3.uuid }, { field: 'clusterUuid', op: '=', value: cluster.uuid }], limit: 1 });
    if (nics.total > 0) throw new TStackError('CONFLICT', `VMs of cluster ${cluster.name} have NICs on L3 ${l3.name}; delete them first`);
  }
}

async function detachOne(d: CloudDeps, cluster: Resource, l2: Resource): Promise<void> {
  const l3s = await d.store.byParent('l3-network', l2.uuid);
  for (const h of await connectedHosts(d.store, cluster.uuid)) {
    for (const l3 of l3s) {
      // the host no longer serves the L3: its DHCP server address goes, so the key has nothing left to apply
      const mine = (await d.store.claims(ipNamespace(l3.uuid))).find((c) => c.owner === `dhcp:${h.uuid}`);
      if (mine) await releaseIp(d.store, l3.uuid, mine.key);
      await callHost(d, h.uuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3.uuid }).catch((e: unknown) => {
        log.warn({ host: h.uuid, l3: l3.uuid, err: (e as Error).message }, 'namespace delete failed; the reconcile queue retries');
      });
      // the key has nothing left to apply: its next apply deletes the namespace again (a retry,
      // or after an apply that was already on its way and made it again)
      d.reconcile.mark(FLAT_AREA, flatKey(h.uuid, l3.uuid));
    }
    await deleteBridge(d, h.uuid, l2);
  }
  await detach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid);
}

/** Remove the L2's bridge from a host (best effort); an existing bridge named by tag belongs to the operator. */
async function deleteBridge(d: CloudDeps, hostUuid: string, l2: Resource): Promise<void> {
  // an overtaken create's answer must not make it known again (begin)
  d.hostRuntime.known.begin(hostUuid, bridgeFact(l2.uuid));
  if (tagValue(l2, 'bridgeName')) return;
  try {
    await callHost(d, hostUuid, 'kvmagent', K.BridgeDelete, await hostBridgeRequest(d, hostUuid, l2));
  } catch (e) {
    log.warn({ host: hostUuid, l2: l2.uuid, err: (e as Error).message }, 'bridge delete failed');
  }
}

/** A host became Connected: bridges of every L2 attached to its cluster; its VXLAN peers learn its VTEP. */
export async function onHostConnectedNetwork(d: CloudDeps, host: Resource): Promise<void> {
  const pools = new Set<string>();
  for (const l2Uuid of await attachedTo(d.store, 'cluster-l2-network', String(host.parentUuid))) {
    const l2 = await d.store.get(l2Uuid);
    if (!l2) continue;
    if (isVxlanPool(l2)) {
      pools.add(l2.uuid);
      continue;
    }
    await ensureBridge(d, host.uuid, l2).catch((e: unknown) => log.warn({ host: host.uuid, l2: l2Uuid, err: (e as Error).message }, 'bridge on a connected host failed'));
  }
  for (const p of pools) await refreshPool(d, p);
}

// ---------------------------------------------------------------------------------------------
// L2 create/delete: a VXLAN network takes a VNI of its pool and follows the pool's clusters

async function createL2(body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  if (!oc.principal.isAdmin && l2TypeOf(body) !== 'L2VxlanNetwork') {
    throw new TStackError('FORBIDDEN', `only the admin account may create an ${l2TypeOf(body)}; an account creates VXLAN networks (poolUuid) in a VXLAN pool shared with it`, { field: 'type' });
  }
  const p = await prepareCreate(d.store, l2Network, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
  if (!isVxlanNetwork(p.resource)) return d.store.create(p.resource);
  const pool = p.refs.poolUuid!;
  const uuid = p.resource.uuid;
  const vni = await allocateVni(d.store, pool, uuid, p.resource.vni as number | undefined);
  const clusters: string[] = [];
  try {
    const l2 = await d.store.create({ ...p.resource, vni });
    for (const c of (await poolClusters(d.store, pool.uuid)).keys()) {
      await attach(d.store, 'cluster-l2-network', c, uuid, l2.ownerAccountUuid);
      clusters.push(c);
    }
    for (const { host } of await poolVteps(d.store, pool.uuid)) await ensureBridge(d, host.uuid, l2);
  } catch (e) {
    for (const c of clusters) await detach(d.store, 'cluster-l2-network', c, uuid);
    if (await d.store.get(uuid)) await d.store.delete(uuid);
    await releaseVni(d.store, pool.uuid, vni, uuid);
    throw e;
  }
  return mustGet(d.store, uuid, 'l2-network');
}

async function deleteL2(l2: Resource, query: Record<string, string>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const plan = await planApiDelete(l2, query, oc);
  const nets = plan.deletes.filter((r) => r.kind === 'l2-network' && isVxlanNetwork(r));
  // bridges of the VXLAN networks that go: gone from every host of their clusters
  for (const n of nets) {
    for (const c of await attachedFrom(d.store, 'cluster-l2-network', n.uuid)) for (const h of await connectedHosts(d.store, c)) await deleteBridge(d, h.uuid, n);
  }
  // its L3s go as DELETE /v1/l3-networks would take them: namespaces and addresses too
  const l3s = plan.blockers.length === 0 ? plan.deletes.filter((r) => r.kind === 'l3-network') : [];
  const served = new Map<Resource, string[]>();
  for (const l3 of l3s) served.set(l3, await dropL3Addresses(d, l3));
  await executeDeletePlan(d.store, plan);
  for (const [l3, hosts] of served) await afterL3Deleted(d, l3, hosts);
  for (const n of nets) await releaseVni(d.store, String(n.poolUuid), Number(n.vni), n.uuid);
  return l2;
}

// ---------------------------------------------------------------------------------------------
// flat network services

export const isFlat = (l3: Resource): boolean => (l3.provider ?? 'Flat') === 'Flat' && ((l3.networkServices as string[] | undefined) ?? []).some((s) => s === 'DHCP' || s === 'UserData');

/** DELETE /v1/l3-networks/<uuid>: refused while NICs use it; removes the namespaces and addresses. */
async function deleteL3(l3: Resource, _q: Record<string, string>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const nics = await d.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3.uuid }], limit: 5 });
  if (nics.total > 0) throw new TStackError('CONFLICT', `L3 network ${l3.name} still has ${nics.total} VM NIC(s); delete the VMs first`);
  const served = await dropL3Addresses(d, l3);
  for (const r of await d.store.byParent('ip-range', l3.uuid)) await d.store.delete(r.uuid);
  await d.store.delete(l3.uuid);
  await afterL3Deleted(d, l3, served);
  return l3;
}

/**
 * An L3 about to be deleted: each host's service namespace goes and every address claim is
 * released. Returns the hosts that served it (for afterL3Deleted).
 */
async function dropL3Addresses(d: CloudDeps, l3: Resource): Promise<string[]> {
  const served: string[] = [];
  for (const c of await d.store.claims(ipNamespace(l3.uuid))) {
    if (c.owner.startsWith('dhcp:')) {
      const hostUuid = c.owner.slice(5);
      served.push(hostUuid);
      if (await d.store.get(hostUuid)) await callHost(d, hostUuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3.uuid });
    }
    await releaseIp(d.store, l3.uuid, c.key);
  }
  return served;
}

/**
 * The L3 is gone from the inventory. An apply of one of its keys that was already on its way (a
 * periodic pass) may reach the agent after the namespace delete and make the namespace again:
 * one more apply per key, now that the L3 is gone, deletes it (the queue runs it after the one
 * in flight).
 */
async function afterL3Deleted(d: CloudDeps, l3: Resource, served: string[]): Promise<void> {
  for (const h of served) {
    await d.reconcile.sync(FLAT_AREA, flatKey(h, l3.uuid)).catch((e: unknown) => log.warn({ host: h, l3: l3.uuid, err: (e as Error).message }, 'namespace delete failed; the reconcile queue retries'));
  }
}

export async function clustersOfL2(d: CloudDeps, l2Uuid: string): Promise<string[]> {
  return attachedFrom(d.store, 'cluster-l2-network', l2Uuid);
}

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerNetworkApi(reg: ApiRegistry): void {
  once(reg, 'clusters', 'attachL2Network', { long: true, adminOnly: true, run: attachL2 });
  once(reg, 'clusters', 'detachL2Network', { long: true, adminOnly: true, run: detachL2 });
  reg.setCreate('l2-networks', { run: createL2 });
  reg.setDelete('l2-networks', { run: deleteL2 });
  reg.setDelete('l3-networks', { long: true, run: deleteL3 });
}
