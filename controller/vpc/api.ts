// REST handlers of VPC routers, VIPs, EIPs and port-forwarding rules. They change the inventory
// and then apply the affected router through the reconcile queue (sync for the router's own
// actions, so a 200 means "applied on the host"; the queue retries and the periodic pass repairs
// drift either way). Changes to one router (and the services that point at it) are serialised
// in-process.
import { TStackError, invalid } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as VPC from '../../shared/protocol/vpc.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { prepareCreate } from '../model/registry.js';
import { canUse, cascadeParam } from '../api/crud.js';
import { allocateIp, releaseIp } from '../allocator/ip.js';
import { callHost, mustGet } from '../cloud/common.js';
import { attachedTo } from '../model/attachments.js';
import { parseCidr } from '../model/ipv4.js';
import { eip as eipKind, portForwardingRule, vip as vipKind, vpcRouter } from './model.js';
import { networkInfo } from './desired.js';
import { checkVipPort } from '../lb/api.js';
import { locked } from '../cloud/keyed-lock.js';
import { FLAT_EIP_AREA, takesFlatEip } from '../network/flat-eip.js';
import { servedOn } from '../network/flat-reconcile.js';

const log = logger('vpc');
export const AREA = 'vrouter';

export interface VpcQueue {
  mark(area: string, key: string): void;
  sync(area: string, key: string): Promise<void>;
}



/** A resource the caller named in a body: missing or not usable → 400 naming the field. */
async function usable(oc: OpContext, uuid: string, kind: string, field: string): Promise<Resource> {
  const r = await oc.store.get(uuid);
  if (!r || r.kind !== kind || !canUse(oc, r)) throw invalid(field, `no ${kind} with uuid ${uuid}`);
  return r;
}

const isVpcL3 = (l3: Resource): boolean => l3.type === 'L3VpcNetwork';

/** Connected hosts of the zone whose cluster has the L2 attached, fewest routers first. */
async function pickHost(store: InventoryStore, zoneUuid: string, l2Uuid: string): Promise<Resource | undefined> {
  const hosts = (await store.list({ kind: 'host', filters: [{ field: 'zoneUuid', op: '=', value: zoneUuid }, { field: 'status', op: '=', value: 'Connected' }] })).items;
  const routers = (await store.list({ kind: 'vpc-router' })).items;
  const load = (h: Resource): number => routers.filter((r) => r.hostUuid === h.uuid).length;
  const ok: Resource[] = [];
  for (const h of hosts) {
    if (h.state === 'Disabled' || h.state === 'Maintenance') continue;
    if ((await attachedTo(store, 'cluster-l2-network', String(h.parentUuid))).includes(l2Uuid)) ok.push(h);
  }
  return ok.sort((a, b) => load(a) - load(b) || (a.uuid < b.uuid ? -1 : 1))[0];
}

export function registerVpcApi(reg: ApiRegistry, q: VpcQueue): void {
  const apply = (routerUuid: string): Promise<void> => q.sync(AREA, routerUuid);
  const mark = (routerUuid: unknown): void => {
    if (typeof routerUuid === 'string' && routerUuid) q.mark(AREA, routerUuid);
  };

  // ---------------------------------------------------------------------------------------
  // VPC routers

  reg.setCreate('vpc-routers', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, vpcRouter, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const offering = p.refs.virtualRouterOfferingUuid!;
      const pubL3 = await usable(oc, String(offering.publicNetworkUuid), 'l3-network', 'virtualRouterOfferingUuid');
      const host = await pickHost(oc.store, String(offering.zoneUuid), String(pubL3.parentUuid));
      if (!host) throw new TStackError('CONFLICT', `no Connected host in zone ${String(offering.zoneUuid)} has the public network ${pubL3.name}'s L2 attached to its cluster`, { field: 'virtualRouterOfferingUuid' });
      const uuid = p.resource.uuid;
      const a = await allocateIp(oc.store, { l3NetworkUuid: pubL3.uuid, owner: `vrouter:${uuid}` });
      const sysVip = await oc.store.create({
        ...(await prepareCreate(oc.store, vipKind, { name: `vip-${p.resource.name}`.slice(0, 255), l3NetworkUuid: pubL3.uuid }, { ownerAccountUuid: oc.principal.accountUuid })).resource,
        ip: a.ip,
        netmask: a.netmask,
        gateway: a.gateway,
        system: true,
        useFor: ['SNAT'],
        vpcRouterUuid: uuid,
      });
      const router = await oc.store.create({
        ...p.resource,
        zoneUuid: offering.zoneUuid,
        publicNetworkUuid: pubL3.uuid,
        hostUuid: host.uuid,
        publicIp: a.ip,
        vipUuid: sysVip.uuid,
        l3NetworkUuids: [],
      });
      try {
        await apply(uuid);
      } catch (e) {
        // nothing half-made stays: the namespace, the inventory, the address
        await callHost(oc, host.uuid, 'vrouteragent', VPC.RouterDelete, { routerUuid: uuid }).catch(() => undefined);
        await oc.store.delete(router.uuid);
        await oc.store.delete(sysVip.uuid);
        await releaseIp(oc.store, pubL3.uuid, a.ip);
        throw e;
      }
      return mustGet(oc.store, uuid, 'vpc-router');
    },
  });

  reg.setDelete('vpc-routers', {
    run: async (r, query, oc) =>
      locked(r.uuid, async () => {
        const cascade = cascadeParam(query);
        const l3s = (r.l3NetworkUuids as string[] | undefined) ?? [];
        const busy: string[] = [];
        for (const l3 of l3s) {
          const nics = (await oc.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3 }] })).items;
          for (const n of nics) busy.push(String(n.parentUuid));
        }
        if (busy.length > 0 && !cascade) {
          throw new TStackError('CONFLICT', `VPC router ${r.name} has networks with VMs (${[...new Set(busy)].join(', ')}); delete them first, or delete with ?cascade=true`, { vmInstanceUuids: [...new Set(busy)] });
        }
        // ZStack: the router's system VIP goes, and every service on it; an IPsec connection joins
        // the router's own networks, so it goes on any VIP. Services on custom VIPs stay, without
        // their target; its networks lose their gateway
        const sysVips = new Set((await oc.store.list({ kind: 'vip', filters: [{ field: 'vpcRouterUuid', op: '=', value: r.uuid }] })).items.filter((v) => v.system === true).map((v) => v.uuid));
        for (const kind of ['eip', 'port-forwarding-rule', 'load-balancer', 'ipsec-connection']) {
          for (const x of (await oc.store.list({ kind, filters: [{ field: 'vpcRouterUuid', op: '=', value: r.uuid }] })).items) {
            if (kind === 'ipsec-connection' || sysVips.has(String(x.vipUuid))) {
              for (const l of kind === 'load-balancer' ? await oc.store.byParent('load-balancer-listener', x.uuid) : []) await oc.store.delete(l.uuid);
              await oc.store.delete(x.uuid);
              log.info({ router: r.uuid, kind, uuid: x.uuid }, 'deleted with its router');
            } else await oc.store.update(x.uuid, { vmNicUuid: undefined, guestIp: undefined, vmInstanceUuid: undefined, vpcRouterUuid: undefined });
          }
        }
        for (const l3 of l3s) if (await oc.store.get(l3)) await oc.store.update(l3, { vpcRouterUuid: undefined });
        for (const v of (await oc.store.list({ kind: 'vip', filters: [{ field: 'vpcRouterUuid', op: '=', value: r.uuid }] })).items) {
          if (v.system === true) {
            await oc.store.delete(v.uuid);
            await releaseIp(oc.store, String(v.l3NetworkUuid), String(v.ip));
          } else await oc.store.update(v.uuid, { vpcRouterUuid: undefined, useFor: [] });
        }
        await oc.store.delete(r.uuid);
        // an apply already running for it ends before this sync resolves (one apply per key at a
        // time; the next sees no router), so the namespace deleted below is not re-created
        await q.sync(AREA, r.uuid).catch(() => undefined);
        if (typeof r.hostUuid === 'string' && (await oc.store.get(r.hostUuid))) {
          await callHost(oc, r.hostUuid, 'vrouteragent', VPC.RouterDelete, { routerUuid: r.uuid }).catch((e: unknown) => {
            log.warn({ router: r.uuid, err: (e as Error).message }, 'router namespace not deleted (host unreachable); it is left on the host');
          });
        }
        return r;
      }),
  });

  const routerAction = (name: string, fn: (r: Resource, params: Record<string, unknown>, oc: OpContext) => Promise<Partial<Resource> | undefined>): void => {
    if (reg.action('vpc-routers', name)?.run) return;
    reg.registerAction('vpc-routers', name, {
      run: async (r0, params, oc) =>
        locked(r0.uuid, async () => {
          const r = await mustGet(oc.store, r0.uuid, 'vpc-router');
          const patch = await fn(r, params, oc);
          if (patch && Object.keys(patch).length) await oc.store.update(r.uuid, patch);
          await apply(r.uuid);
          return mustGet(oc.store, r.uuid, 'vpc-router');
        }),
    });
  };

  routerAction('attachL3Network', async (r, params, oc) => {
    const l3 = await usable(oc, String(params.l3NetworkUuid), 'l3-network', 'l3NetworkUuid');
    if (!isVpcL3(l3)) throw invalid('l3NetworkUuid', `L3 network ${l3.name} is not a VPC network (create it with type L3VpcNetwork)`);
    const attached = (r.l3NetworkUuids as string[]) ?? [];
    if (attached.includes(l3.uuid)) throw new TStackError('CONFLICT', `L3 network ${l3.name} is already attached to router ${r.name}`, { field: 'l3NetworkUuid' });
    if (typeof l3.vpcRouterUuid === 'string' && l3.vpcRouterUuid) throw new TStackError('CONFLICT', `L3 network ${l3.name} is attached to router ${l3.vpcRouterUuid}`, { field: 'l3NetworkUuid' });
    const n = await networkInfo(oc.store, l3);
    const mine = parseCidr(n.cidr);
    const pub = await networkInfo(oc.store, await mustGet(oc.store, String(r.publicNetworkUuid), 'l3-network'), 'publicNetworkUuid');
    for (const other of [pub, ...(await Promise.all(attached.map(async (u) => networkInfo(oc.store, await mustGet(oc.store, u, 'l3-network')))))]) {
      const o = parseCidr(other.cidr);
      if (mine.network <= o.broadcast && o.network <= mine.broadcast) throw invalid('l3NetworkUuid', `${n.cidr} of ${l3.name} overlaps ${other.cidr} of ${other.l3.name}: CIDRs under one router must not overlap`);
    }
    const host = await mustGet(oc.store, String(r.hostUuid), 'host');
    if (!(await attachedTo(oc.store, 'cluster-l2-network', String(host.parentUuid))).includes(n.l2Uuid)) {
      throw invalid('l3NetworkUuid', `the L2 network of ${l3.name} is not attached to the cluster of the router's host ${host.name}`);
    }
    await oc.store.update(l3.uuid, { vpcRouterUuid: r.uuid });
    return { l3NetworkUuids: [...attached, l3.uuid] };
  });

  routerAction('detachL3Network', async (r, params, oc) => {
    const u = String(params.l3NetworkUuid);
    const attached = (r.l3NetworkUuids as string[]) ?? [];
    if (!attached.includes(u)) throw invalid('l3NetworkUuid', `L3 network ${u} is not attached to router ${r.name}`);
    const nics = (await oc.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: u }] })).items;
    if (nics.length > 0) throw new TStackError('CONFLICT', `L3 network ${u} has VMs (${[...new Set(nics.map((n) => String(n.parentUuid)))].join(', ')}); delete them before detaching it`, { field: 'l3NetworkUuid' });
    if (await oc.store.get(u)) await oc.store.update(u, { vpcRouterUuid: undefined });
    return { l3NetworkUuids: attached.filter((x) => x !== u) };
  });

  routerAction('reconnect', async () => undefined);
  routerAction('start', async () => ({ state: 'Running' }));
  routerAction('stop', async () => ({ state: 'Stopped', status: 'Disconnected' }));
  routerAction('addDns', async (r, params) => {
    const dns = (r.dns as string[]) ?? [];
    const ip = String(params.dns);
    if (dns.includes(ip)) return undefined;
    if (dns.length >= 8) throw invalid('dns', 'a router has at most 8 DNS servers');
    return { dns: [...dns, ip] };
  });
  routerAction('removeDns', async (r, params) => {
    const dns = (r.dns as string[]) ?? [];
    if (!dns.includes(String(params.dns))) throw invalid('dns', `${String(params.dns)} is not a DNS server of router ${r.name}`);
    return { dns: dns.filter((x) => x !== params.dns) };
  });

  // ---------------------------------------------------------------------------------------
  // VIPs

  reg.setCreate('vips', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, vipKind, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const req: Parameters<typeof allocateIp>[1] = { l3NetworkUuid: String(p.resource.l3NetworkUuid), owner: `vip:${p.resource.uuid}` };
      if (typeof body.requiredIp === 'string') req.ip = body.requiredIp;
      let a;
      try {
        a = await allocateIp(oc.store, req);
      } catch (e) {
        if (e instanceof TStackError && e.details?.field === 'ip') throw new TStackError(e.code, e.message.replace(/^ip: /, 'requiredIp: '), { ...e.details, field: 'requiredIp' });
        throw e;
      }
      return oc.store.create({ ...p.resource, ip: a.ip, netmask: a.netmask, gateway: a.gateway, system: false, useFor: [] });
    },
  });

  reg.setDelete('vips', {
    run: async (v, _q, oc) => {
      if (v.system === true) throw new TStackError('CONFLICT', `VIP ${v.ip as string} is the system VIP of router ${String(v.vpcRouterUuid)}; it goes with the router`);
      // manual 虚拟IP: deleting a VIP deletes the services on it
      const routers = new Set<string>();
      for (const kind of ['eip', 'port-forwarding-rule', 'ipsec-connection']) {
        for (const x of (await oc.store.list({ kind, filters: [{ field: 'vipUuid', op: '=', value: v.uuid }] })).items) {
          if (typeof x.vpcRouterUuid === 'string') routers.add(x.vpcRouterUuid);
          await oc.store.delete(x.uuid);
        }
      }
      for (const lb of (await oc.store.list({ kind: 'load-balancer', filters: [{ field: 'vipUuid', op: '=', value: v.uuid }] })).items) {
        if (typeof lb.vpcRouterUuid === 'string') routers.add(lb.vpcRouterUuid);
        for (const l of await oc.store.byParent('load-balancer-listener', lb.uuid)) await oc.store.delete(l.uuid);
        await oc.store.delete(lb.uuid);
      }
      await oc.store.delete(v.uuid);
      await releaseIp(oc.store, String(v.l3NetworkUuid), String(v.ip));
      for (const r of routers) await apply(r).catch((e: unknown) => log.warn({ router: r, err: (e as Error).message }, 'router not applied after a VIP delete; the queue retries'));
      return v;
    },
  });

  /**
   * The NIC a service may target: usable, and on a VPC network with a router on the VIP's public
   * network, or (EIPs only) on a flat network whose VM's host has the VIP's public L2 (the EIP
   * is then 1:1 NAT on that host: controller/network/flat-eip.ts).
   */
  async function targetNic(oc: OpContext, svc: Resource, vipR: Resource, nicUuid: string, kind: 'eip' | 'port-forwarding-rule'): Promise<{ nic: Resource; router?: Resource }> {
    const nic = await usable(oc, nicUuid, 'vm-nic', 'vmNicUuid');
    if (!oc.principal.isAdmin && nic.ownerAccountUuid !== svc.ownerAccountUuid) throw invalid('vmNicUuid', `no vm-nic with uuid ${nicUuid}`);
    const l3 = await mustGet(oc.store, String(nic.l3NetworkUuid), 'l3-network');
    if (!isVpcL3(l3)) {
      if (kind !== 'eip' || !takesFlatEip(l3)) throw invalid('vmNicUuid', `NIC ${nicUuid} is on L3 network ${l3.name}, which is not a VPC network attached to a router${kind === 'eip' ? '' : ' (flat networks serve EIPs only)'}`);
      return { nic: await flatTarget(oc, vipR, nic, l3) };
    }
    if (typeof l3.vpcRouterUuid !== 'string' || !l3.vpcRouterUuid) throw invalid('vmNicUuid', `NIC ${nicUuid} is on VPC network ${l3.name}, which is not attached to a router`);
    const router = await mustGet(oc.store, l3.vpcRouterUuid, 'vpc-router');
    if (router.publicNetworkUuid !== vipR.l3NetworkUuid) throw invalid('vmNicUuid', `the router of NIC ${nicUuid} is on public network ${String(router.publicNetworkUuid)}, the VIP on ${String(vipR.l3NetworkUuid)}`);
    if (typeof vipR.vpcRouterUuid === 'string' && vipR.vpcRouterUuid && vipR.vpcRouterUuid !== router.uuid) {
      throw invalid('vmNicUuid', `VIP ${String(vipR.ip)} serves router ${vipR.vpcRouterUuid}; NIC ${nicUuid} is behind router ${router.uuid}`);
    }
    return { nic, router };
  }

  /** A flat network's NIC as an EIP target: a gateway to stand in for, the public L2 on the VM's host. */
  async function flatTarget(oc: OpContext, vipR: Resource, nic: Resource, l3: Resource): Promise<Resource> {
    if (typeof vipR.vpcRouterUuid === 'string' && vipR.vpcRouterUuid) throw invalid('vmNicUuid', `VIP ${String(vipR.ip)} serves router ${vipR.vpcRouterUuid}; NIC ${nic.uuid} is on the flat network ${l3.name}`);
    const r0 = (await oc.store.byParent('ip-range', l3.uuid))[0];
    if (!r0 || typeof r0.gateway !== 'string' || !r0.gateway) throw invalid('vmNicUuid', `the flat network ${l3.name} has no gateway: its VMs would have no route for the EIP's traffic`);
    const vm = await mustGet(oc.store, String(nic.parentUuid), 'vm-instance');
    const hostUuid = servedOn(vm);
    const host = hostUuid ? await oc.store.get(hostUuid) : undefined;
    const pubL3 = await mustGet(oc.store, String(vipR.l3NetworkUuid), 'l3-network');
    if (host && !(await attachedTo(oc.store, 'cluster-l2-network', String(host.parentUuid))).includes(String(pubL3.parentUuid))) {
      throw invalid('vmNicUuid', `the public network ${pubL3.name} of VIP ${String(vipR.ip)} is not attached to the cluster of host ${host.name}, where the VM of NIC ${nic.uuid} runs`);
    }
    return nic;
  }

  /** The hosts whose flat EIP sets a NIC's EIP changes (its VM's current and last host). */
  const flatHosts = async (store: InventoryStore, nicUuid: unknown): Promise<string[]> => {
    const nic = typeof nicUuid === 'string' ? await store.get(nicUuid) : undefined;
    const vm = nic ? await store.get(String(nic.parentUuid)) : undefined;
    return [...new Set([vm?.hostUuid, vm?.lastHostUuid].filter((h): h is string => typeof h === 'string' && h !== ''))];
  };

  /** Other services on a VIP (for the "one EIP, or any mix of the rest" rule). */
  const servicesOn = async (store: InventoryStore, vipUuid: string, except: string): Promise<{ eips: Resource[]; pfs: Resource[] }> => ({
    eips: (await store.list({ kind: 'eip', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items.filter((x) => x.uuid !== except),
    pfs: (await store.list({ kind: 'port-forwarding-rule', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items.filter((x) => x.uuid !== except),
  });

  const vipUse = async (store: InventoryStore, vipUuid: string): Promise<void> => {
    const v = await store.get(vipUuid);
    if (!v || v.system === true) return;
    const s = await servicesOn(store, vipUuid, '');
    const lbs = (await store.list({ kind: 'load-balancer', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items;
    const bound = [...s.eips, ...s.pfs, ...lbs].find((x) => typeof x.vpcRouterUuid === 'string' && x.vpcRouterUuid);
    await store.update(vipUuid, { useFor: [...(s.eips.length ? ['EIP'] : []), ...(s.pfs.length ? ['PortForwarding'] : []), ...(lbs.length ? ['LoadBalancer'] : [])], vpcRouterUuid: (bound?.vpcRouterUuid as string | undefined) ?? undefined });
  };

  // ---------------------------------------------------------------------------------------
  // EIPs

  const attachService = async (kind: 'eip' | 'port-forwarding-rule', x: Resource, nicUuid: string, oc: OpContext): Promise<Resource> => {
    if (typeof x.vmNicUuid === 'string' && x.vmNicUuid) throw new TStackError('CONFLICT', `${kind} ${x.name} is already attached to NIC ${x.vmNicUuid}; detach it first`, { field: 'vmNicUuid' });
    const vipR = await mustGet(oc.store, String(x.vipUuid), 'vip');
    const { nic, router } = await targetNic(oc, x, vipR, nicUuid, kind);
    if (kind === 'eip') {
      const other = (await oc.store.list({ kind: 'eip', filters: [{ field: 'vmNicUuid', op: '=', value: nic.uuid }] })).items[0];
      if (other) throw new TStackError('CONFLICT', `NIC ${nic.uuid} already has EIP ${other.name}`, { field: 'vmNicUuid' });
    }
    if (vipR.system === true && vipR.vpcRouterUuid !== router?.uuid) throw invalid('vmNicUuid', `the system VIP ${String(vipR.ip)} belongs to another router`);
    await oc.store.update(x.uuid, { vmNicUuid: nic.uuid, guestIp: nic.ip, vmInstanceUuid: nic.parentUuid, vpcRouterUuid: router?.uuid });
    await vipUse(oc.store, vipR.uuid);
    if (router) await apply(router.uuid);
    else for (const h of await flatHosts(oc.store, nic.uuid)) await q.sync(FLAT_EIP_AREA, h);
    return mustGet(oc.store, x.uuid, kind);
  };

  const detachService = async (kind: 'eip' | 'port-forwarding-rule', x: Resource, oc: OpContext): Promise<Resource> => {
    const router = x.vpcRouterUuid;
    const hosts = typeof router === 'string' && router ? [] : await flatHosts(oc.store, x.vmNicUuid);
    await oc.store.update(x.uuid, { vmNicUuid: undefined, guestIp: undefined, vmInstanceUuid: undefined, vpcRouterUuid: undefined });
    await vipUse(oc.store, String(x.vipUuid));
    if (typeof router === 'string' && (await oc.store.get(router))) await apply(router);
    for (const h of hosts) await q.sync(FLAT_EIP_AREA, h);
    return mustGet(oc.store, x.uuid, kind);
  };

  reg.setCreate('eips', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, eipKind, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const vipR = p.refs.vipUuid!;
      if (vipR.system === true) throw invalid('vipUuid', `VIP ${String(vipR.ip)} is a router's system VIP: it serves SNAT and port forwarding, not an EIP`);
      return locked(`vip:${vipR.uuid}`, async () => {
        const s = await servicesOn(oc.store, vipR.uuid, '');
        const lbOnVip = (await oc.store.list({ kind: 'load-balancer', filters: [{ field: 'vipUuid', op: '=', value: vipR.uuid }] })).items[0];
        if (lbOnVip) throw invalid('vipUuid', `VIP ${String(vipR.ip)} already serves load balancer ${lbOnVip.name}; an EIP needs a VIP of its own`);
        if (s.eips.length || s.pfs.length) throw invalid('vipUuid', `VIP ${String(vipR.ip)} already serves ${s.eips.length ? `EIP ${s.eips[0]!.name}` : `port forwarding ${s.pfs[0]!.name}`}; an EIP needs a VIP of its own`);
        const { vmNicUuid: _nic, ...fields } = p.resource;
        const e = await oc.store.create({ ...fields, vipIp: vipR.ip });
        await vipUse(oc.store, vipR.uuid);
        if (typeof body.vmNicUuid !== 'string') return e;
        try {
          return await attachService('eip', e, body.vmNicUuid, oc);
        } catch (err) {
          await oc.store.delete(e.uuid);
          await vipUse(oc.store, vipR.uuid);
          throw err;
        }
      });
    },
  });
  reg.setDelete('eips', {
    run: async (e, _q, oc) => {
      if (typeof e.vmNicUuid === 'string' && e.vmNicUuid) await detachService('eip', e, oc);
      await oc.store.delete(e.uuid);
      await vipUse(oc.store, String(e.vipUuid));
      return e;
    },
  });
  if (!reg.action('eips', 'attach')?.run) {
    reg.registerAction('eips', 'attach', { run: async (e, params, oc) => attachService('eip', await mustGet(oc.store, e.uuid, 'eip'), String(params.vmNicUuid), oc) });
    reg.registerAction('eips', 'detach', {
      run: async (e0, _p, oc) => {
        const e = await mustGet(oc.store, e0.uuid, 'eip');
        if (typeof e.vmNicUuid !== 'string' || !e.vmNicUuid) throw new TStackError('CONFLICT', `EIP ${e.name} is not attached`);
        return detachService('eip', e, oc);
      },
    });
  }

  // ---------------------------------------------------------------------------------------
  // port forwarding

  reg.setCreate('port-forwarding-rules', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, portForwardingRule, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const vipR = p.refs.vipUuid!;
      return locked(`vip:${vipR.uuid}`, async () => {
        const s = await servicesOn(oc.store, vipR.uuid, '');
        if (s.eips.length) throw invalid('vipUuid', `VIP ${String(vipR.ip)} serves EIP ${s.eips[0]!.name}; an EIP's VIP serves nothing else`);
        const r = p.resource;
        for (const o of s.pfs) {
          if (o.protocolType === r.protocolType && Number(r.vipPortStart) <= Number(o.vipPortEnd) && Number(o.vipPortStart) <= Number(r.vipPortEnd)) {
            throw new TStackError('CONFLICT', `${String(r.protocolType)} ports ${String(r.vipPortStart)}-${String(r.vipPortEnd)} on VIP ${String(vipR.ip)} overlap rule ${o.name} (${String(o.vipPortStart)}-${String(o.vipPortEnd)})`, { field: 'vipPortStart', ruleUuid: o.uuid });
          }
        }
        await checkVipPort(oc.store, vipR.uuid, String(r.protocolType).toLowerCase(), Number(r.vipPortStart), Number(r.vipPortEnd), 'vipPortStart');
        const { vmNicUuid: _nic, ...fields } = r;
        const pf = await oc.store.create({ ...fields, vipIp: vipR.ip });
        await vipUse(oc.store, vipR.uuid);
        if (typeof body.vmNicUuid !== 'string') return pf;
        try {
          return await attachService('port-forwarding-rule', pf, body.vmNicUuid, oc);
        } catch (err) {
          await oc.store.delete(pf.uuid);
          await vipUse(oc.store, vipR.uuid);
          throw err;
        }
      });
    },
  });
  reg.setDelete('port-forwarding-rules', {
    run: async (x, _q, oc) => {
      if (typeof x.vmNicUuid === 'string' && x.vmNicUuid) await detachService('port-forwarding-rule', x, oc);
      await oc.store.delete(x.uuid);
      await vipUse(oc.store, String(x.vipUuid));
      return x;
    },
  });
  if (!reg.action('port-forwarding-rules', 'attach')?.run) {
    reg.registerAction('port-forwarding-rules', 'attach', { run: async (x, params, oc) => attachService('port-forwarding-rule', await mustGet(oc.store, x.uuid, 'port-forwarding-rule'), String(params.vmNicUuid), oc) });
    reg.registerAction('port-forwarding-rules', 'detach', {
      run: async (x0, _p, oc) => {
        const x = await mustGet(oc.store, x0.uuid, 'port-forwarding-rule');
        if (typeof x.vmNicUuid !== 'string' || !x.vmNicUuid) throw new TStackError('CONFLICT', `port forwarding rule ${x.name} is not attached`);
        return detachService('port-forwarding-rule', x, oc);
      },
    });
  }
  void mark;
}
