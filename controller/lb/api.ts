// REST handlers of load balancers, their listeners and certificates. They change the inventory and
// then apply the serving router through the reconcile queue (sync: a 200 means haproxy on the
// router's host runs the new configuration). Rules (manual 负载均衡):
//   - a load balancer's VIP serves no EIP; deleting a load balancer deletes its listeners and
//     keeps the VIP; deleting the VIP deletes its load balancers (controller/vpc/api.ts);
//   - one port (per transport) is used once on a VIP: by one listener or one port forward → 409
//     naming loadBalancerPort;
//   - all backends of a load balancer are NICs of one VPC network, behind the VIP's router.
import { TStackError, invalid } from '../../shared/errors.js';
import * as LB from '../../shared/protocol/lb.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { prepareCreate } from '../model/registry.js';
import { canUse } from '../api/crud.js';
import { callHost, mustGet } from '../cloud/common.js';
import { certificate as certificateKind, checkCertificate } from './certificate.js';
import { loadBalancer as lbKind, loadBalancerListener as listenerKind } from './model.js';
import { locked } from '../cloud/keyed-lock.js';

export const AREA = 'vrouter';

export interface LbQueue {
  mark(area: string, key: string): void;
  sync(area: string, key: string): Promise<void>;
}



const transport = (protocol: unknown): string => (protocol === 'udp' ? 'udp' : 'tcp');

/** Every listener on a VIP (through all its load balancers). */
export async function listenersOnVip(store: InventoryStore, vipUuid: string): Promise<Resource[]> {
  const out: Resource[] = [];
  for (const lb of (await store.list({ kind: 'load-balancer', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items) out.push(...(await store.byParent('load-balancer-listener', lb.uuid)));
  return out;
}

/** A port already used on the VIP → 409 naming `field`. Port forwards are TCP/UDP ranges. */
export async function checkVipPort(store: InventoryStore, vipUuid: string, protocol: string, start: number, end: number, field: string, except = ''): Promise<void> {
  for (const l of await listenersOnVip(store, vipUuid)) {
    if (l.uuid === except || transport(l.protocol) !== protocol) continue;
    const p = Number(l.loadBalancerPort);
    if (start <= p && p <= end) throw new TStackError('CONFLICT', `${field}: ${protocol} port ${p} of the VIP is used by listener ${l.name}`, { field, listenerUuid: l.uuid });
  }
  for (const pf of (await store.list({ kind: 'port-forwarding-rule', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items) {
    if (pf.uuid === except || String(pf.protocolType).toLowerCase() !== protocol) continue;
    if (start <= Number(pf.vipPortEnd) && Number(pf.vipPortStart) <= end) {
      throw new TStackError('CONFLICT', `${field}: ${protocol} ports ${start}-${end} of the VIP overlap port forwarding rule ${pf.name} (${String(pf.vipPortStart)}-${String(pf.vipPortEnd)})`, { field, ruleUuid: pf.uuid });
    }
  }
}

/** The VIP's useFor and router follow its load balancers (EIP/port-forwarding entries are kept). */
export async function lbVipUse(store: InventoryStore, vipUuid: string, routerUuid?: string): Promise<void> {
  const v = await store.get(vipUuid);
  if (!v || v.kind !== 'vip') return;
  const has = (await store.list({ kind: 'load-balancer', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items.length > 0;
  const use = ((v.useFor as string[] | undefined) ?? []).filter((x) => x !== 'LoadBalancer');
  const patch: Partial<Resource> = { useFor: has ? [...use, 'LoadBalancer'] : use };
  if (routerUuid && v.system !== true && !v.vpcRouterUuid) patch.vpcRouterUuid = routerUuid;
  await store.update(vipUuid, patch);
}

export function registerLbApi(reg: ApiRegistry, q: LbQueue): void {
  const apply = async (routerUuid: unknown): Promise<void> => {
    if (typeof routerUuid === 'string' && routerUuid) await q.sync(AREA, routerUuid);
  };

  // ---------------------------------------------------------------------------------------
  // certificates

  reg.setCreate('certificates', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, certificateKind, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const info = checkCertificate({ ...p.resource, privateKey: p.secrets.privateKey });
      return oc.store.create({ ...p.resource, ...info, _privateKey: p.secrets.privateKey });
    },
  });
  reg.setDelete('certificates', {
    run: async (c, _q, oc) => {
      const users = (await oc.store.list({ kind: 'load-balancer-listener', filters: [{ field: 'certificateUuid', op: '=', value: c.uuid }] })).items;
      if (users.length) throw new TStackError('CONFLICT', `certificate ${c.name} is used by listener ${users.map((l) => l.name).join(', ')}; delete those first`, { listenerUuids: users.map((l) => l.uuid) });
      await oc.store.delete(c.uuid);
      return c;
    },
  });

  // ---------------------------------------------------------------------------------------
  // load balancers

  reg.setCreate('load-balancers', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, lbKind, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const vip = p.refs.vipUuid!;
      return locked(`vip:${vip.uuid}`, async () => {
        const eips = (await oc.store.list({ kind: 'eip', filters: [{ field: 'vipUuid', op: '=', value: vip.uuid }] })).items;
        if (eips.length) throw invalid('vipUuid', `VIP ${String(vip.ip)} serves EIP ${eips[0]!.name}; an EIP's VIP serves nothing else`);
        const router = typeof vip.vpcRouterUuid === 'string' && vip.vpcRouterUuid ? vip.vpcRouterUuid : undefined;
        const lb = await oc.store.create({ ...p.resource, vipIp: vip.ip, ...(router ? { vpcRouterUuid: router } : {}) });
        await lbVipUse(oc.store, vip.uuid);
        return lb;
      });
    },
  });

  reg.setDelete('load-balancers', {
    run: async (lb, _q, oc) =>
      locked(`vip:${String(lb.vipUuid)}`, async () => {
        for (const l of await oc.store.byParent('load-balancer-listener', lb.uuid)) await oc.store.delete(l.uuid);
        await oc.store.delete(lb.uuid);
        await lbVipUse(oc.store, String(lb.vipUuid));
        if (typeof lb.vpcRouterUuid === 'string' && (await oc.store.get(lb.vpcRouterUuid))) await apply(lb.vpcRouterUuid);
        return lb;
      }),
  });

  // ---------------------------------------------------------------------------------------
  // listeners

  /**
   * The NICs as backends of `lb`: usable, on a VPC network attached to a router, the same router
   * as the VIP's and the same network as the load balancer's other backends. Returns the router
   * and network they pin the load balancer to.
   */
  async function backendsOk(oc: OpContext, lb: Resource, nicUuids: string[], except?: Resource): Promise<{ routerUuid: string; l3NetworkUuid: string }> {
    const vip = await mustGet(oc.store, String(lb.vipUuid), 'vip');
    let router = typeof lb.vpcRouterUuid === 'string' && lb.vpcRouterUuid ? lb.vpcRouterUuid : undefined;
    let l3 = typeof lb.l3NetworkUuid === 'string' && lb.l3NetworkUuid ? lb.l3NetworkUuid : undefined;
    // the network pinned by other listeners' backends (a listener being changed does not count)
    if (l3 && except) {
      const others = (await oc.store.byParent('load-balancer-listener', lb.uuid)).filter((l) => l.uuid !== except.uuid && ((l.vmNicUuids as string[] | undefined) ?? []).length > 0);
      if (others.length === 0 && ((except.vmNicUuids as string[] | undefined) ?? []).length === 0) l3 = undefined;
    }
    for (const [i, u] of nicUuids.entries()) {
      const field = `vmNicUuids.${i}`;
      const nic = await oc.store.get(u);
      if (!nic || nic.kind !== 'vm-nic' || !canUse(oc, nic) || (!oc.principal.isAdmin && nic.ownerAccountUuid !== lb.ownerAccountUuid)) throw invalid(field, `no vm-nic with uuid ${u}`);
      const net = await mustGet(oc.store, String(nic.l3NetworkUuid), 'l3-network');
      if (net.type !== 'L3VpcNetwork' || typeof net.vpcRouterUuid !== 'string' || !net.vpcRouterUuid) throw invalid(field, `NIC ${u} is on L3 network ${net.name}, which is not a VPC network attached to a router`);
      const r = await mustGet(oc.store, net.vpcRouterUuid, 'vpc-router');
      if (r.publicNetworkUuid !== vip.l3NetworkUuid) throw invalid(field, `the router of NIC ${u} is on public network ${String(r.publicNetworkUuid)}, the VIP on ${String(vip.l3NetworkUuid)}`);
      if (router && router !== r.uuid) throw invalid(field, `NIC ${u} is behind router ${r.uuid}; the load balancer is served by router ${router}`);
      if (l3 && l3 !== net.uuid) throw invalid(field, `NIC ${u} is on L3 network ${net.name}; all backends of a load balancer are on one network (${l3})`);
      router = r.uuid;
      l3 = net.uuid;
    }
    return { routerUuid: router!, l3NetworkUuid: l3! };
  }

  /** Pin the load balancer (and its VIP) to the router and network of its backends. */
  const pin = async (store: InventoryStore, lb: Resource, at: { routerUuid: string; l3NetworkUuid: string }): Promise<void> => {
    await store.update(lb.uuid, { vpcRouterUuid: at.routerUuid, l3NetworkUuid: at.l3NetworkUuid });
    await lbVipUse(store, String(lb.vipUuid), at.routerUuid);
  };

  /** No listener has backends any more: the network is free again (the router stays with the VIP). */
  const unpinIfEmpty = async (store: InventoryStore, lb: Resource): Promise<void> => {
    const any = (await store.byParent('load-balancer-listener', lb.uuid)).some((l) => ((l.vmNicUuids as string[] | undefined) ?? []).length > 0);
    if (!any) await store.update(lb.uuid, { l3NetworkUuid: undefined });
  };

  reg.setCreate('load-balancer-listeners', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, listenerKind, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const lb = p.refs.loadBalancerUuid!;
      return locked(`vip:${String(lb.vipUuid)}`, async () => {
        const r = p.resource;
        await checkVipPort(oc.store, String(lb.vipUuid), transport(r.protocol), Number(r.loadBalancerPort), Number(r.loadBalancerPort), 'loadBalancerPort');
        const nics = (r.vmNicUuids as string[] | undefined) ?? [];
        const at = nics.length ? await backendsOk(oc, lb, nics) : undefined;
        const l = await oc.store.create({ ...r, vipIp: lb.vipIp, vmNicUuids: nics });
        if (at) await pin(oc.store, lb, at);
        try {
          await apply(at?.routerUuid ?? lb.vpcRouterUuid);
        } catch (e) {
          await oc.store.delete(l.uuid);
          await unpinIfEmpty(oc.store, lb);
          await apply(at?.routerUuid ?? lb.vpcRouterUuid).catch(() => undefined);
          throw e;
        }
        return mustGet(oc.store, l.uuid, 'load-balancer-listener');
      });
    },
  });

  reg.setDelete('load-balancer-listeners', {
    run: async (l, _q, oc) => {
      const lb = await oc.store.get(String(l.parentUuid));
      return locked(`vip:${String(lb?.vipUuid)}`, async () => {
        await oc.store.delete(l.uuid);
        if (lb) {
          await unpinIfEmpty(oc.store, lb);
          await apply(lb.vpcRouterUuid);
        }
        return l;
      });
    },
  });

  const listenerAction = (name: string, fn: (l: Resource, lb: Resource, nics: string[], oc: OpContext) => Promise<string[]>): void => {
    if (reg.action('load-balancer-listeners', name)?.run) return;
    reg.registerAction('load-balancer-listeners', name, {
      run: async (l0, params, oc) => {
        const lb0 = await mustGet(oc.store, String(l0.parentUuid), 'load-balancer');
        return locked(`vip:${String(lb0.vipUuid)}`, async () => {
          const l = await mustGet(oc.store, l0.uuid, 'load-balancer-listener');
          const lb = await mustGet(oc.store, lb0.uuid, 'load-balancer');
          const before = (l.vmNicUuids as string[] | undefined) ?? [];
          const after = await fn(l, lb, params.vmNicUuids as string[], oc);
          await oc.store.update(l.uuid, { vmNicUuids: after });
          await unpinIfEmpty(oc.store, lb);
          try {
            await apply((await mustGet(oc.store, lb.uuid, 'load-balancer')).vpcRouterUuid);
          } catch (e) {
            await oc.store.update(l.uuid, { vmNicUuids: before });
            throw e;
          }
          return mustGet(oc.store, l.uuid, 'load-balancer-listener');
        });
      },
    });
  };

  listenerAction('addVmNics', async (l, lb, nics, oc) => {
    const have = (l.vmNicUuids as string[] | undefined) ?? [];
    const dup = nics.find((u) => have.includes(u));
    if (dup) throw new TStackError('CONFLICT', `vmNicUuids: NIC ${dup} is already a backend of listener ${l.name}`, { field: 'vmNicUuids' });
    await pin(oc.store, lb, await backendsOk(oc, lb, nics, l));
    return [...have, ...nics];
  });

  listenerAction('removeVmNics', async (l, _lb, nics) => {
    const have = (l.vmNicUuids as string[] | undefined) ?? [];
    const missing = nics.findIndex((u) => !have.includes(u));
    if (missing >= 0) throw invalid(`vmNicUuids.${missing}`, `NIC ${nics[missing]!} is not a backend of listener ${l.name}`);
    return have.filter((u) => !nics.includes(u));
  });

  if (!reg.action('load-balancer-listeners', 'getStatus')?.run) {
    reg.registerAction('load-balancer-listeners', 'getStatus', {
      run: async (l0, _p, oc) => {
        const l = await mustGet(oc.store, l0.uuid, 'load-balancer-listener');
        const lb = await mustGet(oc.store, String(l.parentUuid), 'load-balancer');
        const nics = (l.vmNicUuids as string[] | undefined) ?? [];
        const router = typeof lb.vpcRouterUuid === 'string' ? await oc.store.get(lb.vpcRouterUuid) : undefined;
        let servers: Array<{ vmNicUuid: string; ip?: string; status: string; checkStatus?: string; lastChangeSec?: number }> = nics.map((u) => ({ vmNicUuid: u, status: 'Unknown' }));
        if (router && router.state === 'Running' && typeof router.hostUuid === 'string') {
          const st = await callHost(oc, router.hostUuid, 'vrouteragent', LB.LbStatus, { routerUuid: router.uuid });
          const mine = st.listeners.find((x) => x.listenerUuid === l.uuid)?.servers ?? [];
          servers = nics.map((u) => mine.find((s) => s.vmNicUuid === u) ?? { vmNicUuid: u, status: 'Unknown' });
        }
        return { ...l, backends: servers };
      },
    });
  }
}
