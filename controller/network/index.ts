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
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as K from '../../shared/protocol/kvm.js';
import * as V from '../../shared/protocol/vrouter.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { attach, attachedFrom, attachedTo, detach } from '../model/attachments.js';
import { ipNamespace, releaseIp } from '../allocator/ip.js';
import { callHost, connectedHosts, mustGet, tagValue, type CloudDeps } from '../cloud/common.js';
import { FLAT_AREA, flatKey } from './flat-reconcile.js';

const log = logger('network');

export function bridgeRequest(l2: Resource): K.BridgeRequestT {
  const req: K.BridgeRequestT = { type: l2.type === 'L2VlanNetwork' ? 'Vlan' : 'NoVlan', physicalInterface: String(l2.physicalInterface), l2NetworkUuid: l2.uuid };
  if (l2.type === 'L2VlanNetwork') req.vlan = Number(l2.vlan);
  const br = tagValue(l2, 'bridgeName');
  if (br) req.bridgeName = br;
  return req;
}

/** Create (idempotently) the L2's bridge on a host; returns the bridge name. */
export async function ensureBridge(d: CloudDeps, hostUuid: string, l2: Resource): Promise<string> {
  const r = await callHost(d, hostUuid, 'kvmagent', K.BridgeCreate, bridgeRequest(l2));
  if (l2.bridgeName !== r.bridgeName) await d.store.update(l2.uuid, { bridgeName: r.bridgeName });
  return r.bridgeName;
}

async function attachL2(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const l2 = await mustGet(d.store, String(params.l2NetworkUuid), 'l2-network', 'l2NetworkUuid');
  await attach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid, oc.adminAccountUuid);
  try {
    for (const h of await connectedHosts(d.store, cluster.uuid)) await ensureBridge(d, h.uuid, l2);
  } catch (e) {
    await detach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid);
    throw e;
  }
  return mustGet(d.store, cluster.uuid, 'cluster');
}

async function detachL2(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const l2 = await mustGet(d.store, String(params.l2NetworkUuid), 'l2-network', 'l2NetworkUuid');
  const l3s = await d.store.byParent('l3-network', l2.uuid);
  for (const l3 of l3s) {
    const nics = await d.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3.uuid }, { field: 'clusterUuid', op: '=', value: cluster.uuid }], limit: 1 });
    if (nics.total > 0) throw new TStackError('CONFLICT', `VMs of cluster ${cluster.name} have NICs on L3 ${l3.name}; delete them first`);
  }
  for (const h of await connectedHosts(d.store, cluster.uuid)) {
    for (const l3 of l3s) {
      // the host no longer serves the L3: its DHCP server address goes, so the key has nothing left to apply
      const mine = (await d.store.claims(ipNamespace(l3.uuid))).find((c) => c.owner === `dhcp:${h.uuid}`);
      if (mine) await releaseIp(d.store, l3.uuid, mine.key);
      await callHost(d, h.uuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3.uuid }).catch((e: unknown) => {
        log.warn({ host: h.uuid, l3: l3.uuid, err: (e as Error).message }, 'namespace delete failed; the reconcile queue retries');
        d.reconcile.mark(FLAT_AREA, flatKey(h.uuid, l3.uuid));
      });
    }
    // an existing bridge named by tag belongs to the operator: leave it
    if (!tagValue(l2, 'bridgeName')) await callHost(d, h.uuid, 'kvmagent', K.BridgeDelete, bridgeRequest(l2)).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'bridge delete failed'));
  }
  await detach(d.store, 'cluster-l2-network', cluster.uuid, l2.uuid);
  return mustGet(d.store, cluster.uuid, 'cluster');
}

/** A host became Connected: bridges of every L2 attached to its cluster. */
export async function onHostConnectedNetwork(d: CloudDeps, host: Resource): Promise<void> {
  for (const l2Uuid of await attachedTo(d.store, 'cluster-l2-network', String(host.parentUuid))) {
    const l2 = await d.store.get(l2Uuid);
    if (l2) await ensureBridge(d, host.uuid, l2).catch((e: unknown) => log.warn({ host: host.uuid, l2: l2Uuid, err: (e as Error).message }, 'bridge on a connected host failed'));
  }
}

// ---------------------------------------------------------------------------------------------
// flat network services

export const isFlat = (l3: Resource): boolean => (l3.provider ?? 'Flat') === 'Flat' && ((l3.networkServices as string[] | undefined) ?? []).some((s) => s === 'DHCP' || s === 'UserData');

/** DELETE /v1/l3-networks/<uuid>: refused while NICs use it; removes the namespaces and addresses. */
async function deleteL3(l3: Resource, _q: Record<string, string>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const nics = await d.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3.uuid }], limit: 5 });
  if (nics.total > 0) throw new TStackError('CONFLICT', `L3 network ${l3.name} still has ${nics.total} VM NIC(s); delete the VMs first`);
  for (const c of await d.store.claims(ipNamespace(l3.uuid))) {
    if (c.owner.startsWith('dhcp:')) {
      const hostUuid = c.owner.slice(5);
      if (await d.store.get(hostUuid)) await callHost(d, hostUuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3.uuid });
    }
    await releaseIp(d.store, l3.uuid, c.key);
  }
  for (const r of await d.store.byParent('ip-range', l3.uuid)) await d.store.delete(r.uuid);
  await d.store.delete(l3.uuid);
  return l3;
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
  reg.setDelete('l3-networks', { long: true, run: deleteL3 });
}
