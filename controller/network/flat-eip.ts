// EIPs on flat networks as desired state per host (area 'flat-eip', key = host uuid): the
// controller computes the host's whole EIP set (every attached EIP whose NIC is on a flat L3 and
// whose VM is served by that host: hostUuid ?? lastHostUuid, as for flat DHCP) and sends it
// with vrouter flat/eip/apply; the agent renders and applies it whole (vrouteragent/flat-eip.ts).
// Any change to an EIP, VIP, VM, NIC, L3 or range marks every host that has or had flat EIPs;
// a host that connects is marked too, so a controller that restarted (and forgot which hosts it
// had given EIPs) still empties a host whose EIPs went away. The periodic pass repairs drift.
import * as V from '../../shared/protocol/vrouter.js';
import type { Static } from '../../shared/protocol/schema.js';
import { logger } from '../../shared/log.js';
import type { Resource } from '../store/types.js';
import type { EventBus } from '../events/bus.js';
import type { ReconcileArea } from '../reconcile/queue.js';
import { callHost, type CloudDeps } from '../cloud/common.js';
import { ensureBridge } from './index.js';
import { servedOn } from './flat-reconcile.js';

const log = logger('network');

export const FLAT_EIP_AREA = 'flat-eip';
type Req = Static<typeof V.FlatEipApply.request>;

/** A NIC's L3 takes flat EIPs: a private L3 that no VPC router serves. */
export const takesFlatEip = (l3: Resource): boolean => l3.type !== 'L3VpcNetwork' && l3.category !== 'Public';

interface Row {
  eip: Resource;
  vip: Resource;
  nic: Resource;
  l3: Resource;
  host: string;
}

/** Every attached flat EIP and the host that serves it. */
async function flatEipRows(d: CloudDeps): Promise<Row[]> {
  const out: Row[] = [];
  for (const eip of (await d.store.list({ kind: 'eip' })).items) {
    if (typeof eip.vmNicUuid !== 'string' || !eip.vmNicUuid || (typeof eip.vpcRouterUuid === 'string' && eip.vpcRouterUuid)) continue;
    const nic = await d.store.get(eip.vmNicUuid);
    const vip = await d.store.get(String(eip.vipUuid));
    const l3 = nic && (await d.store.get(String(nic.l3NetworkUuid)));
    const vm = nic && (await d.store.get(String(nic.parentUuid)));
    const host = vm ? servedOn(vm) : undefined;
    if (!nic || !vip || !l3 || !takesFlatEip(l3) || !host) continue;
    out.push({ eip, vip, nic, l3, host });
  }
  return out;
}

/** What the host's flat/eip/apply carries (an empty set when it serves none). */
export async function desiredFlatEips(d: CloudDeps, hostUuid: string): Promise<Req> {
  const req: Req = { hostUuid, publicNetworks: [], privateNetworks: [], eips: [] };
  const nets = new Map<string, { bridge: string; cidr: string; gateway?: string } | undefined>();
  const netOf = async (l3Uuid: string): Promise<{ bridge: string; cidr: string; gateway?: string } | undefined> => {
    if (nets.has(l3Uuid)) return nets.get(l3Uuid);
    const l3 = await d.store.get(l3Uuid);
    const r0 = l3 ? (await d.store.byParent('ip-range', l3Uuid))[0] : undefined;
    const l2 = l3 ? await d.store.get(String(l3.parentUuid)) : undefined;
    const n = r0 && l2 ? { bridge: await ensureBridge(d, hostUuid, l2), cidr: String(r0.networkCidr), ...(typeof r0.gateway === 'string' && r0.gateway ? { gateway: r0.gateway } : {}) } : undefined;
    nets.set(l3Uuid, n);
    return n;
  };
  const rows = (await flatEipRows(d)).filter((r) => r.host === hostUuid);
  for (const r of rows) {
    const pubUuid = String(r.vip.l3NetworkUuid);
    const pub = await netOf(pubUuid);
    const priv = await netOf(r.l3.uuid);
    // a private L3 without a gateway gives its VMs no route to answer through: left out
    if (!pub || !priv?.gateway) {
      log.warn({ eip: r.eip.uuid, host: hostUuid }, 'flat EIP left out: its public or private network has no range (or the private one no gateway)');
      continue;
    }
    if (!req.publicNetworks.some((n) => n.l3NetworkUuid === pubUuid)) req.publicNetworks.push({ l3NetworkUuid: pubUuid, ...pub });
    if (!req.privateNetworks.some((n) => n.l3NetworkUuid === r.l3.uuid)) req.privateNetworks.push({ l3NetworkUuid: r.l3.uuid, bridge: priv.bridge, cidr: priv.cidr, gateway: priv.gateway });
    req.eips.push({ eip: String(r.vip.ip), publicL3NetworkUuid: pubUuid, privateL3NetworkUuid: r.l3.uuid, privateIp: String(r.nic.ip), mac: String(r.nic.mac) });
  }
  return req;
}

/** The area: keys are the hosts with flat EIPs and those this controller gave some. */
export function flatEipArea(d: CloudDeps): ReconcileArea & { keysNow(): Promise<string[]> } {
  const given = new Set<string>();
  const keysNow = async (): Promise<string[]> => [...new Set([...(await flatEipRows(d)).map((r) => r.host), ...given])];
  return {
    name: FLAT_EIP_AREA,
    keys: keysNow,
    keysNow,
    hostOf: (hostUuid) => hostUuid,
    apply: async (hostUuid) => {
      const host = await d.store.get(hostUuid);
      if (!host || host.kind !== 'host') {
        given.delete(hostUuid);
        return;
      }
      if (host.status !== 'Connected') return; // marked when it connects
      const req = await desiredFlatEips(d, hostUuid);
      await callHost(d, hostUuid, 'vrouteragent', V.FlatEipApply, req);
      if (req.eips.length > 0) given.add(hostUuid);
      else given.delete(hostUuid);
    },
  };
}

const WATCHED = new Set(['eip', 'vip', 'vm-instance', 'vm-nic', 'l3-network', 'ip-range']);

/** Mark the hosts whose flat EIPs an inventory change may alter; and every host that connects. */
export function watchFlatEips(d: CloudDeps, bus: EventBus, area: { keysNow(): Promise<string[]> }): () => void {
  const connectSeen = new Set<string>();
  // one evaluation at a time, and one more after it when events came meanwhile: every event is
  // followed by a full evaluation, but a burst (a VM create is a dozen events) costs one or two
  // reads of every EIP, not one per event (issue 19)
  let running = false;
  let again = false;
  // EIP records in the inventory (undefined: not counted yet). With none, a VM or NIC change
  // cannot alter any host's flat EIPs: a cloud without EIPs read the EIPs at every VM event
  // (six per VM create, scale bench). Bumped by EIP events, so a count that overlapped one is not kept.
  let eips: number | undefined;
  let eipGen = 0;
  const countEips = async (): Promise<void> => {
    const gen = eipGen;
    const n = (await d.store.list({ kind: 'eip', limit: 1 })).total;
    if (gen === eipGen) eips = n;
  };
  const markKeys = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    again = false;
    void (eips === undefined ? countEips() : Promise.resolve())
      .then(() => area.keysNow())
      .then((ks) => ks.forEach((k) => d.reconcile.mark(FLAT_EIP_AREA, k)))
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'cannot mark the flat EIP hosts'))
      .finally(() => {
        running = false;
        if (again) markKeys();
      });
  };
  return bus.subscribe((e) => {
    if (e.type !== 'resource.created' && e.type !== 'resource.updated' && e.type !== 'resource.deleted') return;
    const r = e.resource;
    if (e.kind === 'eip') {
      eipGen++;
      if (eips !== undefined) eips += e.type === 'resource.created' ? 1 : e.type === 'resource.deleted' ? -1 : 0;
    }
    if (WATCHED.has(e.kind)) {
      if (eips === 0 && (e.kind === 'vm-instance' || e.kind === 'vm-nic')) return;
      // a VM that moved: its new host has its EIP now, its old one was given it (both keys)
      markKeys();
      return;
    }
    const k = `${e.uuid}:${String(r.lastConnectDate ?? '')}`;
    if (e.kind === 'host' && r.status === 'Connected' && !connectSeen.has(k)) {
      connectSeen.add(k);
      d.reconcile.mark(FLAT_EIP_AREA, e.uuid);
    }
  });
}
