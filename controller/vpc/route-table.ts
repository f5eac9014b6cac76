// Route tables of VPC routers (manual 路由表 ~11058; ZStack VRouterRouteTable): a table holds
// route entries (destination CIDR, UserStatic via a next hop or UserBlackHole, distance 1-254)
// and is attached to VPC routers, at most one table per router. The entries become the `routes`
// of the router's desired state (desired.ts), applied in its namespace as `proto static` routes.
//   route-table  {name, vpcRouterUuids?} → routes[{destination, type, target?, distance}], vpcRouterUuids[]
//   actions      addRouteEntry {destination, type?, target?, distance?}, removeRouteEntry {destination},
//                attachVpcRouter / detachVpcRouter {vpcRouterUuid}
import { TStackError, invalid } from '../../shared/errors.js';
import type { RouterSpecT } from '../../shared/protocol/vpc.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { canUse } from '../api/crud.js';
import { prepareCreate } from '../model/registry.js';
import { intToIp, ipToInt, parseCidr } from '../model/ipv4.js';
import { networkInfo } from './desired.js';
import { routeTable, type RouteEntry } from './route-table-model.js';

const DEFAULT_DISTANCE = 128;

interface Subnet {
  cidr: string;
  network: number;
  broadcast: number;
}

/** The router's own subnets (public first) and its own addresses. */
async function routerOwn(store: InventoryStore, router: Resource): Promise<{ subnets: Subnet[]; addrs: Set<string> }> {
  const subnets: Subnet[] = [];
  const addrs = new Set<string>([String(router.publicIp)]);
  const l3s = [String(router.publicNetworkUuid), ...((router.l3NetworkUuids as string[] | undefined) ?? [])];
  for (const u of l3s) {
    const l3 = await store.get(u);
    if (!l3) continue;
    const n = await networkInfo(store, l3);
    const c = parseCidr(n.cidr);
    subnets.push({ cidr: n.cidr, network: c.network, broadcast: c.broadcast });
    if (u !== router.publicNetworkUuid) addrs.add(n.gateway);
  }
  return { subnets, addrs };
}

/** Why an entry cannot go on this router (field, reason), or undefined. */
function entryProblem(e: RouteEntry, own: { subnets: Subnet[]; addrs: Set<string> }, routerName: string): [string, string] | undefined {
  const d = parseCidr(e.destination, 'destination');
  const clash = own.subnets.find((s) => d.network <= s.broadcast && s.network <= d.broadcast);
  if (clash) return ['destination', `${e.destination} overlaps ${clash.cidr}, a network of router ${routerName}`];
  if (e.type === 'UserStatic' && e.target !== undefined) {
    const t = ipToInt(e.target, 'target');
    const on = own.subnets.find((s) => t > s.network && t < s.broadcast);
    if (!on) return ['target', `${e.target} is on none of router ${routerName}'s networks: the next hop must be a neighbour`];
    if (own.addrs.has(e.target)) return ['target', `${e.target} is router ${routerName}'s own address`];
  }
  return undefined;
}

/** The routes of the table attached to a router, as its desired state has them (entries the router can't take are left out). */
export async function routerRoutes(store: InventoryStore, router: Resource): Promise<NonNullable<RouterSpecT['routes']>> {
  const table = (await store.list({ kind: 'route-table', filters: [{ field: 'vpcRouterUuids', op: '=', value: router.uuid }] })).items[0];
  if (!table) return [];
  const own = await routerOwn(store, router);
  const out: NonNullable<RouterSpecT['routes']> = [];
  for (const e of (table.routes as RouteEntry[] | undefined) ?? []) {
    // a network attached after the entry may clash with it: the rest of the router still applies
    if (entryProblem(e, own, router.name)) continue;
    out.push({ destination: e.destination, type: e.type === 'UserBlackHole' ? 'Blackhole' : 'Static', ...(e.target !== undefined ? { nextHop: e.target } : {}), metric: e.distance });
  }
  return out;
}

export interface RouteQueue {
  sync(area: string, key: string): Promise<void>;
}

export function registerRouteTableApi(reg: ApiRegistry, q: RouteQueue, area: string): void {
  const apply = async (routers: string[]): Promise<void> => {
    for (const r of routers) await q.sync(area, r);
  };
  const routerOf = async (oc: OpContext, uuid: string, field: string): Promise<Resource> => {
    const r = await oc.store.get(uuid);
    if (!r || r.kind !== 'vpc-router' || !canUse(oc, r)) throw invalid(field, `no vpc-router with uuid ${uuid}`);
    return r;
  };
  /** A router takes one table; every entry must fit it. */
  const checkAttach = async (oc: OpContext, table: Resource | undefined, router: Resource, field: string, entries: RouteEntry[]): Promise<void> => {
    const other = (await oc.store.list({ kind: 'route-table', filters: [{ field: 'vpcRouterUuids', op: '=', value: router.uuid }] })).items.find((t) => t.uuid !== table?.uuid);
    if (other) throw new TStackError('CONFLICT', `router ${router.name} already has route table ${other.name}; detach it first`, { field });
    const own = await routerOwn(oc.store, router);
    for (const e of entries) {
      const p = entryProblem(e, own, router.name);
      if (p) throw invalid(field, `route ${e.destination}: ${p[1]}`);
    }
  };

  reg.setCreate('route-tables', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, routeTable, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
      const routers = (p.resource.vpcRouterUuids as string[]) ?? [];
      for (const [i, u] of routers.entries()) await checkAttach(oc, undefined, await routerOf(oc, u, `vpcRouterUuids.${i}`), `vpcRouterUuids.${i}`, []);
      const t = await oc.store.create({ ...p.resource, routes: [] });
      await apply(routers);
      return t;
    },
  });
  reg.setDelete('route-tables', {
    run: async (t, _q, oc) => {
      await oc.store.delete(t.uuid);
      await apply((t.vpcRouterUuids as string[] | undefined) ?? []);
      return t;
    },
  });

  const tableAction = (name: string, fn: (t: Resource, params: Record<string, unknown>, oc: OpContext) => Promise<{ patch: Partial<Resource>; routers: string[] }>): void => {
    if (reg.action('route-tables', name)?.run) return;
    reg.registerAction('route-tables', name, {
      run: async (t0, params, oc) => {
        const t = await oc.store.get(t0.uuid);
        if (!t) throw new TStackError('NOT_FOUND', `route table ${t0.uuid} not found`);
        const { patch, routers } = await fn(t, params, oc);
        await oc.store.update(t.uuid, patch);
        await apply(routers);
        return (await oc.store.get(t.uuid))!;
      },
    });
  };
  const routersOf = (t: Resource): string[] => (t.vpcRouterUuids as string[] | undefined) ?? [];
  const entriesOf = (t: Resource): RouteEntry[] => (t.routes as RouteEntry[] | undefined) ?? [];
  const normCidr = (s: string): string => {
    const c = parseCidr(s, 'destination');
    if (c.prefix === 0) throw invalid('destination', 'the default route is the public gateway\'s');
    return `${intToIp(c.network)}/${c.prefix}`;
  };

  tableAction('addRouteEntry', async (t, params, oc) => {
    const destination = normCidr(String(params.destination));
    const type = (params.type as RouteEntry['type'] | undefined) ?? 'UserStatic';
    if (type === 'UserStatic' && params.target === undefined) throw invalid('target', 'a UserStatic route needs a target (the next hop)');
    if (type === 'UserBlackHole' && params.target !== undefined) throw invalid('target', 'a UserBlackHole route has no target');
    if (entriesOf(t).some((e) => e.destination === destination)) throw new TStackError('CONFLICT', `route table ${t.name} already has a route to ${destination}; remove it first`, { field: 'destination' });
    const e: RouteEntry = { destination, type, distance: (params.distance as number | undefined) ?? DEFAULT_DISTANCE, ...(params.target !== undefined ? { target: String(params.target) } : {}) };
    for (const u of routersOf(t)) {
      const r = await oc.store.get(u);
      if (!r) continue;
      const p = entryProblem(e, await routerOwn(oc.store, r), r.name);
      if (p) throw invalid(p[0], p[1]);
    }
    return { patch: { routes: [...entriesOf(t), e] }, routers: routersOf(t) };
  });
  tableAction('removeRouteEntry', async (t, params) => {
    const destination = normCidr(String(params.destination));
    if (!entriesOf(t).some((e) => e.destination === destination)) throw invalid('destination', `route table ${t.name} has no route to ${destination}`);
    return { patch: { routes: entriesOf(t).filter((e) => e.destination !== destination) }, routers: routersOf(t) };
  });
  tableAction('attachVpcRouter', async (t, params, oc) => {
    const r = await routerOf(oc, String(params.vpcRouterUuid), 'vpcRouterUuid');
    if (routersOf(t).includes(r.uuid)) throw new TStackError('CONFLICT', `route table ${t.name} is already attached to router ${r.name}`, { field: 'vpcRouterUuid' });
    await checkAttach(oc, t, r, 'vpcRouterUuid', entriesOf(t));
    return { patch: { vpcRouterUuids: [...routersOf(t), r.uuid] }, routers: [r.uuid] };
  });
  tableAction('detachVpcRouter', async (t, params) => {
    const u = String(params.vpcRouterUuid);
    if (!routersOf(t).includes(u)) throw invalid('vpcRouterUuid', `route table ${t.name} is not attached to router ${u}`);
    return { patch: { vpcRouterUuids: routersOf(t).filter((x) => x !== u) }, routers: [u] };
  });
}
