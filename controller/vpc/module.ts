// The VPC controller module: the REST handlers (api.ts) and one reconcile area 'vrouter' keyed
// by router uuid whose apply sends the router's complete desired state (desired.ts) to the
// vrouteragent of its host, or deletes the namespace of a Stopped router.
// What marks a router:
//   - the router itself changing (attach/detach, DNS, start/stop);
//   - an EIP, port-forwarding rule or VIP changing, a VM or NIC changing (addresses, names),
//     an L3 or IP range changing: every router (there are few, apply is idempotent and cheap);
//   - its host (re)connecting.
// The periodic pass re-applies every router, which repairs drift (a deleted namespace, a flushed
// table, a rebooted host) and retries routers that failed. A NIC that is deleted (VM expunged)
// leaves its EIPs and port forwards (detached, not deleted: the manual keeps the EIP).
import { logger } from '../../shared/log.js';
import * as VPC from '../../shared/protocol/vpc.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { callHost, type CloudDeps } from '../cloud/common.js';
import type { ControllerContext } from '../context.js';
import { ensureBridge } from '../network/index.js';
import { AREA, registerVpcApi } from './api.js';
import { desiredRouter } from './desired.js';
import { registerLbApi } from '../lb/api.js';
import { registerIpsecApi } from '../ipsec/api.js';
import { registerRouteTableApi } from './route-table.js';
import { flatEipArea, watchFlatEips } from '../network/flat-eip.js';

const log = logger('vpc');

/** What the module gets: the controller's context (controller/context.ts). */
export type VpcServices = ControllerContext;

/** Make one router's host match the inventory. */
export async function applyRouter(d: CloudDeps, routerUuid: string): Promise<void> {
  const store = d.store;
  const r = await store.get(routerUuid);
  if (!r || r.kind !== 'vpc-router') return; // its delete removed the namespace
  const hostUuid = String(r.hostUuid);
  const host = await store.get(hostUuid);
  if (!host || host.kind !== 'host' || host.status !== 'Connected') {
    if (r.status !== 'Disconnected') await store.update(r.uuid, { status: 'Disconnected' });
    return; // marked again when the host connects
  }
  if (r.state === 'Stopped') {
    await callHost(d, hostUuid, 'vrouteragent', VPC.RouterDelete, { routerUuid });
    return;
  }
  try {
    const bridges = new Map<string, string>();
    const bridgeOf = async (l2Uuid: string): Promise<string> => {
      const known = bridges.get(l2Uuid);
      if (known) return known;
      const l2 = await store.get(l2Uuid);
      if (!l2) throw new Error(`L2 network ${l2Uuid} is gone`);
      const b = await ensureBridge(d, hostUuid, l2);
      bridges.set(l2Uuid, b);
      return b;
    };
    const spec = await desiredRouter(store, r, bridgeOf);
    const res = await callHost(d, hostUuid, 'vrouteragent', VPC.RouterApply, { router: spec });
    log.debug({ router: routerUuid, natRules: res.natRules, ms: res.durationMs, changed: res.changed }, 'VPC router applied');
    if (r.status !== 'Connected') await store.update(r.uuid, { status: 'Connected' });
  } catch (e) {
    if (r.status !== 'Disconnected') await store.update(r.uuid, { status: 'Disconnected' }).catch(() => undefined);
    throw e;
  }
}

const WATCHED = new Set(['eip', 'port-forwarding-rule', 'vip', 'vm-instance', 'vm-nic', 'l3-network', 'ip-range']);

export function installVpc(s: VpcServices): { stop(): void } {
  const q = s.reconcile;
  registerVpcApi(s.registry, q);
  registerLbApi(s.registry, q);
  registerIpsecApi(s.registry, q);
  registerRouteTableApi(s.registry, q, AREA);
  // the routers (issue 19: each VM or NIC change listed them, 0.8 % of the controller's busy
  // time in 2,000 creates, with no router at all): read once, then kept by the routers' own
  // events, each applied to the set it follows; every periodic pass reads them again (a router
  // another controller made, whose relayed event was lost, is marked from then on)
  let routers: Promise<Set<string>> | undefined;
  /** Router events seen: a pass's listing replaces the set only if none came while it read. */
  let routerEvents = 0;
  const routerSet = (): Promise<Set<string>> =>
    (routers ??= s.store.list({ kind: 'vpc-router' }).then(
      (r) => new Set(r.items.map((x) => x.uuid)),
      (e: unknown) => {
        routers = undefined;
        throw e;
      },
    ));
  q.register({
    name: AREA,
    keys: async () => {
      const seen = routerEvents;
      const uuids = (await s.store.list({ kind: 'vpc-router' })).items.map((r) => r.uuid);
      if (routerEvents === seen) routers = Promise.resolve(new Set(uuids));
      return uuids;
    },
    apply: (k) => applyRouter(s, k),
  });
  // EIPs of flat networks: 1:1 NAT on the VM's host, the host's whole set as desired state
  const eipArea = flatEipArea(s);
  q.register(eipArea);
  const offEip = watchFlatEips(s, s.bus, eipArea);
  // a burst of changes (a VM create writes its VM and NICs several times) marks the routers
  // once: calls while a marking is pending share it
  let pendingMark: Promise<void> | undefined;
  const markAll = (): Promise<void> =>
    (pendingMark ??= new Promise<void>((resolve) => setImmediate(resolve))
      .then(async () => {
        pendingMark = undefined;
        for (const uuid of await routerSet()) q.mark(AREA, uuid);
      }));
  const connectSeen = new Set<string>();
  const off = s.bus.subscribe((e) => {
    if (e.type !== 'resource.created' && e.type !== 'resource.updated' && e.type !== 'resource.deleted') return;
    const fail = (err: unknown): void => log.warn({ err: (err as Error).message, kind: e.kind, uuid: e.uuid }, 'marking VPC routers failed');
    const r: Resource = e.resource;
    if (e.kind === 'vpc-router') {
      routerEvents++;
      if (e.type === 'resource.created') void routerSet().then((set) => set.add(e.uuid), fail);
      else if (e.type === 'resource.deleted') void routerSet().then((set) => set.delete(e.uuid), fail);
      // a router's own status updates would loop: its actions apply synchronously anyway
      return;
    }
    if (e.kind === 'vm-nic' && e.type === 'resource.deleted') {
      void forgetNic(s.store, e.uuid).then(markAll).catch(fail);
      return;
    }
    if (WATCHED.has(e.kind)) {
      void markAll().catch(fail);
      return;
    }
    const k = `${e.uuid}:${String(r.lastConnectDate ?? '')}`;
    if (e.kind === 'host' && r.status === 'Connected' && !connectSeen.has(k)) {
      connectSeen.add(k);
      void s.store
        .list({ kind: 'vpc-router', filters: [{ field: 'hostUuid', op: '=', value: e.uuid }] })
        .then((rs) => rs.items.forEach((x) => q.mark(AREA, x.uuid)))
        .catch(fail);
    }
  });
  return {
    stop: () => {
      off();
      offEip();
    },
  };
}

/** A deleted NIC's EIPs and port forwards are detached (they stay, as in the manual). */
async function forgetNic(store: InventoryStore, nicUuid: string): Promise<void> {
  for (const kind of ['eip', 'port-forwarding-rule']) {
    for (const x of (await store.list({ kind, filters: [{ field: 'vmNicUuid', op: '=', value: nicUuid }] })).items) {
      await store.update(x.uuid, { vmNicUuid: undefined, guestIp: undefined, vmInstanceUuid: undefined, vpcRouterUuid: undefined });
    }
  }
  // and it stops being a load-balancer backend
  for (const l of (await store.list({ kind: 'load-balancer-listener' })).items) {
    const nics = (l.vmNicUuids as string[] | undefined) ?? [];
    if (nics.includes(nicUuid)) await store.update(l.uuid, { vmNicUuids: nics.filter((u) => u !== nicUuid) });
  }
}

/** As a controller module (controller/main.ts ControllerModule shape). */
export function vpcModule(): { name: string; install(s: VpcServices): void; stop(): Promise<void> } {
  let m: { stop(): void } | undefined;
  return {
    name: 'vpc',
    install: (s) => {
      m = installVpc(s);
    },
    stop: async () => m?.stop(),
  };
}
