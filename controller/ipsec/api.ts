// REST handlers of IPsec connections. They change the inventory and then apply the router through
// the reconcile queue (sync: a 200 means the router's charon has the new connections loaded; the
// tunnel itself comes up as fast as the peer answers: getStatus shows it). Rules (manual IPsec隧道):
//   - the local networks are VPC networks of one router; the VIP is on that router's public
//     network (its system VIP, or a custom VIP that serves no EIP and no other router);
//   - local and peer CIDRs may not overlap, nor may peer CIDRs overlap any network of the router
//     (the router could not tell tunnel traffic from its own) → 400 naming the field;
//   - one connection per (VIP, peer address) → 409 naming peerAddress;
//   - deleting a connection keeps the VIP; deleting the VIP deletes its connections (vpc/api.ts).
import { TStackError, invalid } from '../../shared/errors.js';
import * as IPSEC from '../../shared/protocol/ipsec.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { prepareCreate } from '../model/registry.js';
import { canUse } from '../api/crud.js';
import { callHost, mustGet } from '../cloud/common.js';
import { locked } from '../cloud/keyed-lock.js';
import { networkInfo } from '../vpc/desired.js';
import { checkNoOverlap, cidrsOf, ipsecConnection as kind } from './model.js';

export const AREA = 'vrouter';

export interface IpsecQueue {
  sync(area: string, key: string): Promise<void>;
}

const list = (x: unknown): string[] => (Array.isArray(x) ? (x as string[]) : []);

/** The VIP's useFor and router follow its IPsec connections (other uses are kept). */
async function ipsecVipUse(store: InventoryStore, vipUuid: string, routerUuid?: string): Promise<void> {
  const v = await store.get(vipUuid);
  if (!v || v.kind !== 'vip') return;
  const has = (await store.list({ kind: 'ipsec-connection', filters: [{ field: 'vipUuid', op: '=', value: vipUuid }] })).items.length > 0;
  const use = list(v.useFor).filter((x) => x !== 'IPsec');
  const patch: Partial<Resource> = { useFor: has ? [...use, 'IPsec'] : use };
  if (routerUuid && v.system !== true && !v.vpcRouterUuid) patch.vpcRouterUuid = routerUuid;
  await store.update(vipUuid, patch);
}

/** The CIDRs of every network attached to the router (peer CIDRs may not overlap them). */
async function routerCidrs(store: InventoryStore, router: Resource): Promise<string[]> {
  const out: string[] = [];
  for (const u of list(router.l3NetworkUuids)) {
    const l3 = await store.get(u);
    if (l3) out.push((await networkInfo(store, l3)).cidr);
  }
  return out;
}

/** Peer CIDRs against the local ones and the router's networks; `blame` names the side being changed. */
async function checkCidrs(store: InventoryStore, router: Resource, local: string[], peer: string[], blame: 'localCidrs' | 'peerCidrs'): Promise<void> {
  cidrsOf(local, 'localCidrs');
  cidrsOf(peer, 'peerCidrs');
  checkNoOverlap(local, peer, blame);
  // the router's other networks count as local for the peer side
  if (blame === 'peerCidrs') checkNoOverlap([...new Set([...local, ...(await routerCidrs(store, router))])], peer, 'peerCidrs');
}

export function registerIpsecApi(reg: ApiRegistry, q: IpsecQueue): void {
  const apply = async (routerUuid: unknown): Promise<void> => {
    if (typeof routerUuid === 'string' && routerUuid) await q.sync(AREA, routerUuid);
  };

  /** The router of the local networks (all VPC networks of one router on the VIP's public network). */
  async function routerOf(oc: OpContext, vip: Resource, l3Uuids: string[]): Promise<{ router: Resource; localCidrs: string[] }> {
    let router: Resource | undefined;
    const localCidrs: string[] = [];
    for (const [i, u] of l3Uuids.entries()) {
      const field = `l3NetworkUuids.${i}`;
      const l3 = await mustGet(oc.store, u, 'l3-network', field);
      if (l3.type !== 'L3VpcNetwork' || typeof l3.vpcRouterUuid !== 'string' || !l3.vpcRouterUuid) throw invalid(field, `L3 network ${l3.name} is not a VPC network attached to a router`);
      if (router && router.uuid !== l3.vpcRouterUuid) throw invalid(field, `L3 network ${l3.name} is behind router ${l3.vpcRouterUuid}; the other local networks are behind router ${router.uuid}`);
      router ??= await mustGet(oc.store, l3.vpcRouterUuid, 'vpc-router', field);
      localCidrs.push((await networkInfo(oc.store, l3, field)).cidr);
    }
    if (!router) throw invalid('l3NetworkUuids', 'at least one local network is needed');
    if (router.publicNetworkUuid !== vip.l3NetworkUuid) throw invalid('vipUuid', `VIP ${String(vip.ip)} is on network ${String(vip.l3NetworkUuid)}; router ${router.name} is on public network ${String(router.publicNetworkUuid)}`);
    if (typeof vip.vpcRouterUuid === 'string' && vip.vpcRouterUuid && vip.vpcRouterUuid !== router.uuid) throw invalid('vipUuid', `VIP ${String(vip.ip)} serves router ${vip.vpcRouterUuid}; the local networks are behind router ${router.uuid}`);
    return { router, localCidrs };
  }

  reg.setCreate('ipsec-connections', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, kind, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const vip = p.refs.vipUuid!;
      return locked(`vip:${vip.uuid}`, async () => {
        const r = p.resource;
        const eips = (await oc.store.list({ kind: 'eip', filters: [{ field: 'vipUuid', op: '=', value: vip.uuid }] })).items;
        if (eips.length) throw invalid('vipUuid', `VIP ${String(vip.ip)} serves EIP ${eips[0]!.name}; an EIP's VIP serves nothing else`);
        if (r.peerAddress === vip.ip) throw invalid('peerAddress', `${String(r.peerAddress)} is the VIP itself`);
        const { router, localCidrs } = await routerOf(oc, vip, list(r.l3NetworkUuids));
        await checkCidrs(oc.store, router, localCidrs, list(r.peerCidrs), 'peerCidrs');
        const same = (await oc.store.list({ kind: 'ipsec-connection', filters: [{ field: 'vipUuid', op: '=', value: vip.uuid }] })).items.find((c) => c.peerAddress === r.peerAddress);
        if (same) throw new TStackError('CONFLICT', `peerAddress: VIP ${String(vip.ip)} already has connection ${same.name} to ${String(r.peerAddress)}`, { field: 'peerAddress', connectionUuid: same.uuid });
        const c = await oc.store.create({ ...r, _authKey: p.secrets.authKey, vipIp: vip.ip, vpcRouterUuid: router.uuid, localCidrs });
        await ipsecVipUse(oc.store, vip.uuid, router.uuid);
        try {
          await apply(router.uuid);
        } catch (e) {
          await oc.store.delete(c.uuid);
          await ipsecVipUse(oc.store, vip.uuid);
          await apply(router.uuid).catch(() => undefined);
          throw e;
        }
        return mustGet(oc.store, c.uuid, 'ipsec-connection');
      });
    },
  });

  reg.setDelete('ipsec-connections', {
    run: async (c, _q, oc) =>
      locked(`vip:${String(c.vipUuid)}`, async () => {
        await oc.store.delete(c.uuid);
        await ipsecVipUse(oc.store, String(c.vipUuid));
        if (typeof c.vpcRouterUuid === 'string' && (await oc.store.get(c.vpcRouterUuid))) await apply(c.vpcRouterUuid);
        return c;
      }),
  });

  /** A CIDR action: the new lists checked, stored, applied (and put back when the apply fails). */
  const cidrAction = (name: string, side: 'localCidrs' | 'peerCidrs', add: boolean): void => {
    if (reg.action('ipsec-connections', name)?.run) return;
    reg.registerAction('ipsec-connections', name, {
      run: async (c0, params, oc) =>
        locked(`vip:${String(c0.vipUuid)}`, async () => {
          const c = await mustGet(oc.store, c0.uuid, 'ipsec-connection');
          const given = list(params[side]);
          const have = list(c[side]);
          cidrsOf(given, side);
          let next: string[];
          if (add) {
            const dup = given.findIndex((x) => have.includes(x));
            if (dup >= 0) throw new TStackError('CONFLICT', `${side}.${dup}: ${given[dup]!} is already one of the connection's ${side}`, { field: `${side}.${dup}` });
            next = [...have, ...given];
          } else {
            const missing = given.findIndex((x) => !have.includes(x));
            if (missing >= 0) throw invalid(`${side}.${missing}`, `${given[missing]!} is not one of the connection's ${side}`);
            next = have.filter((x) => !given.includes(x));
            if (next.length === 0) throw invalid(side, `a connection keeps at least one of its ${side}; delete the connection instead`);
          }
          const router = typeof c.vpcRouterUuid === 'string' ? await oc.store.get(c.vpcRouterUuid) : undefined;
          if (!router) throw new TStackError('CONFLICT', `connection ${c.name} has no router any more (it was deleted); delete the connection`);
          // what is added against the other side (the rest passed before): fields index `given`
          if (add) await checkCidrs(oc.store, router, side === 'localCidrs' ? given : list(c.localCidrs), side === 'peerCidrs' ? given : list(c.peerCidrs), side);
          await oc.store.update(c.uuid, { [side]: next });
          try {
            await apply(router.uuid);
          } catch (e) {
            await oc.store.update(c.uuid, { [side]: have });
            throw e;
          }
          return mustGet(oc.store, c.uuid, 'ipsec-connection');
        }),
    });
  };
  cidrAction('addLocalCidrs', 'localCidrs', true);
  cidrAction('removeLocalCidrs', 'localCidrs', false);
  cidrAction('addPeerCidrs', 'peerCidrs', true);
  cidrAction('removePeerCidrs', 'peerCidrs', false);

  if (!reg.action('ipsec-connections', 'getStatus')?.run) {
    reg.registerAction('ipsec-connections', 'getStatus', {
      run: async (c0, _p, oc) => {
        const c = await mustGet(oc.store, c0.uuid, 'ipsec-connection');
        const router = typeof c.vpcRouterUuid === 'string' ? await oc.store.get(c.vpcRouterUuid) : undefined;
        let status: Record<string, unknown> = { status: 'Unknown' };
        if (router && router.state === 'Running' && typeof router.hostUuid === 'string') {
          const st = await callHost(oc, router.hostUuid, 'vrouteragent', IPSEC.IpsecStatus, { routerUuid: router.uuid });
          const mine = st.connections.find((x) => x.connectionUuid === c.uuid);
          status = mine ? { ...mine, dataPlane: st.dataPlane } : { status: 'down', lastError: st.running ? 'not loaded on the router yet' : 'the router runs no IPsec daemon' };
          delete status.connectionUuid;
        }
        return { ...c, ...status };
      },
    });
  }
}
