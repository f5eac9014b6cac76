// A VPC router's complete desired state (vrouter/apply), computed from the inventory:
//   public     the public L3's bridge on the router's host, the router's publicIp (system VIP)
//              with the range's prefix, the range's gateway as next hop
//   networks   every attached VPC L3: its bridge, its range's gateway (on the router) and CIDR
//   eips       attached EIPs whose NIC is on one of those networks: VIP → NIC address
//   ports      attached port-forwarding rules likewise (on the system VIP or a custom VIP)
//   vips       the custom VIPs those use (extra addresses on the public interface)
//   vipUuids   the uuids of the system VIP and those VIPs (per-VIP traffic metrics)
//   dns        the router's `dns` list as forwarders, and the names of every VM on its networks
//   routes     the entries of its route table (route-table.ts)
//   ipsec      its IPsec connections (controller/ipsec/desired.ts); their custom VIPs join vips
import type { RouterSpecT } from '../../shared/protocol/vpc.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { TStackError } from '../../shared/errors.js';
import { netmaskToPrefix } from '../model/ipv4.js';
import { vmHostname } from '../network/flat-reconcile.js';
import { routerListeners } from '../lb/desired.js';
import { routerIpsec } from '../ipsec/desired.js';
import { routerRoutes } from './route-table.js';

/** VM states whose NICs still hold their addresses and names. */
const GONE = new Set(['Destroying', 'Destroyed', 'Expunging', 'Expunged']);

export interface NetworkInfo {
  l3: Resource;
  cidr: string;
  gateway: string;
  netmask: string;
  l2Uuid: string;
}

/** An L3's addressing (its first range), or a 400 naming `field` when it has none. */
export async function networkInfo(store: InventoryStore, l3: Resource, field = 'l3NetworkUuid'): Promise<NetworkInfo> {
  const r = (await store.byParent('ip-range', l3.uuid))[0];
  if (!r) throw new TStackError('INVALID_ARGUMENT', `${field}: L3 network ${l3.name} has no IP range; add one first`, { field });
  return { l3, cidr: String(r.networkCidr), gateway: String(r.gateway), netmask: String(r.netmask), l2Uuid: String(l3.parentUuid) };
}

/** Services of the router: attached EIPs and port forwards whose NIC is on one of its networks. */
export async function routerServices(store: InventoryStore, router: Resource): Promise<{ eips: Resource[]; pfs: Resource[]; nics: Map<string, Resource> }> {
  const l3s = new Set((router.l3NetworkUuids as string[] | undefined) ?? []);
  const nics = new Map<string, Resource>();
  const mine = async (x: Resource): Promise<boolean> => {
    if (typeof x.vmNicUuid !== 'string' || x.state === 'Disabled') return false;
    const nic = nics.get(x.vmNicUuid) ?? (await store.get(x.vmNicUuid));
    if (!nic || nic.kind !== 'vm-nic' || !l3s.has(String(nic.l3NetworkUuid))) return false;
    nics.set(nic.uuid, nic);
    return true;
  };
  const eips: Resource[] = [];
  for (const e of (await store.list({ kind: 'eip' })).items) if (await mine(e)) eips.push(e);
  const pfs: Resource[] = [];
  for (const p of (await store.list({ kind: 'port-forwarding-rule' })).items) if (await mine(p)) pfs.push(p);
  return { eips, pfs, nics };
}

/**
 * The router's spec; `bridgeOf` gives (creating it if needed) an L2's bridge on the router's host.
 * Names: one per VM short name over all the router's networks, oldest VM first.
 */
export async function desiredRouter(store: InventoryStore, router: Resource, bridgeOf: (l2Uuid: string) => Promise<string>): Promise<RouterSpecT> {
  const pubL3 = await store.get(String(router.publicNetworkUuid));
  if (!pubL3) throw new TStackError('NOT_FOUND', `the public network ${String(router.publicNetworkUuid)} of router ${router.name} is gone`);
  const pub = await networkInfo(store, pubL3, 'publicNetworkUuid');
  const spec: RouterSpecT = {
    routerUuid: router.uuid,
    public: { bridge: await bridgeOf(pub.l2Uuid), ip: String(router.publicIp), prefix: netmaskToPrefix(pub.netmask), gateway: pub.gateway },
    networks: [],
    vips: [],
    eips: [],
    portForwards: [],
  };
  const names = new Map<string, string>();
  const vms: Array<{ vm: Resource; ip: string }> = [];
  for (const l3Uuid of (router.l3NetworkUuids as string[] | undefined) ?? []) {
    const l3 = await store.get(l3Uuid);
    if (!l3) continue;
    const n = await networkInfo(store, l3);
    spec.networks.push({ l3NetworkUuid: l3.uuid, bridge: await bridgeOf(n.l2Uuid), ip: n.gateway, cidr: n.cidr });
    for (const nic of (await store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3.uuid }] })).items) {
      const vm = await store.get(String(nic.parentUuid));
      if (vm && !GONE.has(String(vm.state))) vms.push({ vm, ip: String(nic.ip) });
    }
  }
  vms.sort((a, b) => (String(a.vm.createDate) < String(b.vm.createDate) ? -1 : String(a.vm.createDate) > String(b.vm.createDate) ? 1 : 0));
  for (const { vm, ip } of vms) {
    const h = vmHostname(vm).toLowerCase();
    if (!names.has(h)) names.set(h, ip);
  }
  spec.dns = { forwarders: (router.dns as string[] | undefined) ?? [], records: [...names].map(([name, ip]) => ({ name, ip })) };
  const { eips, pfs, nics } = await routerServices(store, router);
  const vips = new Set<string>();
  // VIP address → uuid, for the per-VIP traffic counters (the system VIP counts the SNAT traffic)
  const uuidOf = new Map<string, string>();
  if (typeof router.vipUuid === 'string') uuidOf.set(spec.public.ip, router.vipUuid);
  const vipIp = async (uuid: unknown): Promise<string | undefined> => {
    const v = await store.get(String(uuid));
    if (!v || v.kind !== 'vip') return undefined;
    uuidOf.set(String(v.ip), v.uuid);
    return String(v.ip);
  };
  for (const e of eips) {
    const ip = await vipIp(e.vipUuid);
    if (!ip) continue;
    vips.add(ip);
    spec.eips.push({ eip: ip, privateIp: String(nics.get(String(e.vmNicUuid))!.ip) });
  }
  for (const p of pfs) {
    const ip = await vipIp(p.vipUuid);
    if (!ip) continue;
    if (ip !== spec.public.ip) vips.add(ip);
    const pf: RouterSpecT['portForwards'][number] = {
      vip: ip,
      protocol: p.protocolType === 'UDP' ? 'UDP' : 'TCP',
      vipPortStart: Number(p.vipPortStart),
      vipPortEnd: Number(p.vipPortEnd),
      privateIp: String(nics.get(String(p.vmNicUuid))!.ip),
      privatePortStart: Number(p.privatePortStart),
      privatePortEnd: Number(p.privatePortEnd),
    };
    if (typeof p.allowedCidr === 'string') pf.allowedCidr = p.allowedCidr;
    spec.portForwards.push(pf);
  }
  const listeners = await routerListeners(store, router);
  for (const l of listeners) if (l.vip !== spec.public.ip) vips.add(l.vip);
  if (listeners.length) spec.loadBalancers = listeners;
  const ipsec = await routerIpsec(store, router);
  for (const c of ipsec) if (c.vip !== spec.public.ip) vips.add(c.vip);
  if (ipsec.length) spec.ipsec = ipsec;
  spec.vips = [...vips].sort();
  spec.vipUuids = [...uuidOf].filter(([ip]) => ip === spec.public.ip || vips.has(ip)).map(([ip, vipUuid]) => ({ ip, vipUuid })).sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
  const routes = await routerRoutes(store, router);
  if (routes.length) spec.routes = routes;
  return spec;
}
