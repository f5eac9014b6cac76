// Flat-network services as desired state: for each (host, flat L3) key the controller computes
// the complete set of DHCP entries, DNS records and metadata records from the inventory and sends
// it whole (vrouter flat/apply) through the reconcile queue (area 'flat', key '<host>/<l3>').
// Whatever changes a key's inputs only marks it (watchFlatChanges); the periodic pass repairs
// drift on the host (a dead dnsmasq, a deleted namespace or lease file) and converges after a
// controller or agent restart.
//
// Who is served where: a VM's NICs are served by the host it runs on, or last ran on while it
// is stopped (hostUuid ?? lastHostUuid), until it is destroyed. DNS names cover the whole L3.
import * as V from '../../shared/protocol/vrouter.js';
import type { Static } from '../../shared/protocol/schema.js';
import { logger } from '../../shared/log.js';
import type { Resource } from '../store/types.js';
import type { ReconcileArea, ReconcileQueue } from '../reconcile/queue.js';
import type { EventBus } from '../events/bus.js';
import { allocateIp, heldIp, ipNamespace } from '../allocator/ip.js';
import { callHost, mustGet, type CloudDeps } from '../cloud/common.js';
import { ensureBridge, isFlat } from './index.js';

const log = logger('network');

export const FLAT_AREA = 'flat';
type FlatApplyReq = Static<typeof V.FlatApply.request>;

export const flatKey = (hostUuid: string, l3Uuid: string): string => `${hostUuid}/${l3Uuid}`;

/** VM states whose NICs are served nowhere. */
const GONE = new Set(['Destroying', 'Destroyed', 'Expunging', 'Expunged']);
export const servedOn = (vm: Resource): string | undefined => (GONE.has(String(vm.state)) ? undefined : ((vm.hostUuid ?? vm.lastHostUuid) as string | undefined));

export function vmHostname(vm: Resource): string {
  if (typeof vm.hostname === 'string' && vm.hostname) return vm.hostname;
  const n = String(vm.name).toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  return /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(n) ? n : `vm-${vm.uuid.slice(0, 8)}`;
}

interface L3Nic {
  nic: Resource;
  vm: Resource;
  /** Where it is served (servedOn). */
  host: string;
  /** vmHostname(vm), computed once. */
  hostname: string;
}

type OrderedNic = L3Nic & { order: string };
const byOrder = (a: OrderedNic, b: OrderedNic): number => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0);

function live(nics: Resource[], vms: Map<string, Resource>): OrderedNic[] {
  const out: OrderedNic[] = [];
  for (const nic of nics) {
    const vm = vms.get(String(nic.parentUuid));
    const host = vm && servedOn(vm);
    if (vm && host !== undefined) out.push({ nic, vm, host, hostname: vmHostname(vm), order: `${vm.createDate ?? ''}|${vm.uuid}|${String(nic.deviceId ?? 0)}` });
  }
  return out.sort(byOrder);
}

/** The NICs on an L3 whose VM still needs them, oldest VM first (first come keeps a duplicate name). */
async function liveNics(d: CloudDeps, l3Uuid: string): Promise<OrderedNic[]> {
  const nics = (await d.store.list({ kind: 'vm-nic', filters: [{ field: 'l3NetworkUuid', op: '=', value: l3Uuid }] })).items;
  if (nics.length === 0) return [];
  const vmUuids = [...new Set(nics.map((n) => String(n.parentUuid)))];
  const vms = new Map((await d.store.list({ kind: 'vm-instance', filters: [{ field: 'uuid', op: '?=', value: vmUuids }] })).items.map((v) => [v.uuid, v]));
  return live(nics, vms);
}

/** The NICs on an L3 served on one host, read through the VMs there (indexed: hostUuid, lastHostUuid). */
async function hostLiveNics(d: CloudDeps, hostUuid: string, l3Uuid: string): Promise<OrderedNic[]> {
  const vms = new Map<string, Resource>();
  for (const field of ['hostUuid', 'lastHostUuid']) {
    for (const vm of (await d.store.list({ kind: 'vm-instance', filters: [{ field, op: '=', value: hostUuid }] })).items) if (servedOn(vm) === hostUuid) vms.set(vm.uuid, vm);
  }
  if (vms.size === 0) return [];
  const nics = (await d.store.list({ kind: 'vm-nic', filters: [{ field: 'parentUuid', op: '?=', value: [...vms.keys()] }, { field: 'l3NetworkUuid', op: '=', value: l3Uuid }] })).items;
  return live(nics, vms);
}

/**
 * The whole L3's live NICs (its DNS names) for the applies of one host after another: read at
 * most once a second per L3 (issue 19: every VM create's apply read the L3's 10,000 NICs and
 * VMs). The applying host's own NICs are always read fresh and merged in, so a host's DHCP and
 * metadata entries are exact; other hosts' VMs may be a second late in its DNS (they reach the
 * other hosts only at those hosts' next apply anyway).
 */
const L3_NAMES_MAX_AGE_MS = 1_000;
const l3Names = new WeakMap<object, Map<string, { at: number; nics: Promise<OrderedNic[]> }>>();

async function l3LiveNics(d: CloudDeps, hostUuid: string, l3Uuid: string): Promise<{ all: OrderedNic[]; mine: OrderedNic[] }> {
  let m = l3Names.get(d.store);
  if (!m) l3Names.set(d.store, (m = new Map()));
  let c = m.get(l3Uuid);
  if (!c || Date.now() - c.at > L3_NAMES_MAX_AGE_MS) {
    c = { at: Date.now(), nics: liveNics(d, l3Uuid) };
    m.set(l3Uuid, c);
    const mm = m;
    c.nics.catch(() => mm.delete(l3Uuid));
  }
  const [cached, mine] = await Promise.all([c.nics, hostLiveNics(d, hostUuid, l3Uuid)]);
  const mineUuids = new Set(mine.map((x) => x.nic.uuid));
  const all = cached.filter((x) => x.host !== hostUuid && !mineUuids.has(x.nic.uuid)).concat(mine).sort(byOrder);
  return { all, mine };
}

/** Every (host, L3) that has a service namespace or should have one. */
export async function flatKeys(d: CloudDeps, only?: { hostUuid?: string; l3Uuid?: string }): Promise<string[]> {
  const out = new Set<string>();
  const l3s = only?.l3Uuid ? [await d.store.get(only.l3Uuid)].filter((x): x is Resource => x !== undefined) : (await d.store.list({ kind: 'l3-network' })).items;
  for (const l3 of l3s) {
    if (l3.kind !== 'l3-network' || !isFlat(l3)) continue;
    for (const c of await d.store.claims(ipNamespace(l3.uuid))) if (c.owner.startsWith('dhcp:')) out.add(flatKey(c.owner.slice(5), l3.uuid));
    for (const { host } of await liveNics(d, l3.uuid)) out.add(flatKey(host, l3.uuid));
  }
  return [...out].filter((k) => !only?.hostUuid || k.startsWith(`${only.hostUuid}/`));
}

/**
 * The complete desired state of one L3 on one host, or undefined when the host serves nothing
 * there (no VM NIC and no namespace). Allocates the host's DHCP server address on first use.
 */
export async function desiredFlat(d: CloudDeps, hostUuid: string, l3: Resource): Promise<FlatApplyReq | undefined> {
  const { all: live, mine } = await l3LiveNics(d, hostUuid, l3.uuid);
  const heldKey = await heldIp(d.store, l3.uuid, `dhcp:${hostUuid}`);
  const held = heldKey === undefined ? undefined : { key: heldKey };
  if (mine.length === 0 && !held) return undefined;
  const ranges = await d.store.byParent('ip-range', l3.uuid);
  if (ranges.length === 0) return undefined;
  const l2 = await mustGet(d.store, String(l3.parentUuid), 'l2-network');
  const bridge = typeof l2.bridgeName === 'string' && l2.bridgeName ? l2.bridgeName : await ensureBridge(d, hostUuid, l2);
  const serverIp = held?.key ?? (await allocateIp(d.store, { l3NetworkUuid: l3.uuid, owner: `dhcp:${hostUuid}` })).ip;
  const services = (l3.networkServices as string[] | undefined) ?? [];
  const r0 = ranges[0]!;
  const network: FlatApplyReq['network'] = {
    l3NetworkUuid: l3.uuid,
    bridge,
    cidr: String(r0.networkCidr),
    dhcpServerIp: serverIp,
    gateway: String(r0.gateway),
    ipRanges: ranges.map((r) => ({ startIp: String(r.startIp), endIp: String(r.endIp) })),
    metadata: services.includes('UserData'),
  };
  const dns = (l3.dns as string[] | undefined) ?? [];
  // a VPC network's VMs ask the router's DNS forwarder first: it knows every network's names
  const viaRouter = typeof l3.vpcRouterUuid === 'string' && l3.vpcRouterUuid !== '' ? [String(r0.gateway)] : [];
  if (viaRouter.length || dns.length) network.dnsServers = [...new Set([...viaRouter, ...dns])].slice(0, 8);
  if (typeof l3.dnsDomain === 'string' && l3.dnsDomain) network.dnsDomain = l3.dnsDomain;

  // a host name is given once per L3: a later VM with the same name gets an address but no name
  const named = new Map<string, string>(); // short name → nic uuid
  const shortOf = (h: string): string => h.split('.')[0]!.toLowerCase();
  for (const { hostname, nic } of live) {
    const h = shortOf(hostname);
    if (!named.has(h)) named.set(h, nic.uuid);
  }
  const nameOf = (x: L3Nic): string | undefined => (named.get(shortOf(x.hostname)) === x.nic.uuid ? x.hostname : undefined);
  const req: FlatApplyReq = { network, dhcp: [], dns: { records: [], forwarders: [] }, metadata: [] };
  for (const x of live) {
    const name = nameOf(x);
    if (name) req.dns.records.push({ name, ip: String(x.nic.ip) });
  }
  for (const x of mine) {
    const name = nameOf(x);
    // no vmUuid: the agent does not use it (the metadata record names the VM), and it is a sixth of the body
    if (services.includes('DHCP')) req.dhcp.push({ mac: String(x.nic.mac), ip: String(x.nic.ip), ...(name ? { hostname: name } : {}) });
    if (services.includes('UserData')) {
      const rec: FlatApplyReq['metadata'][number] = { ip: String(x.nic.ip), instanceId: x.vm.uuid, hostname: x.hostname, mac: String(x.nic.mac) };
      if (typeof x.vm.userData === 'string') rec.userData = x.vm.userData;
      if (typeof x.vm.sshKey === 'string' && x.vm.sshKey) rec.sshKeys = [x.vm.sshKey];
      req.metadata.push(rec);
    }
  }
  return req;
}

/** Apply one key: the host's namespace for the L3 made to match the inventory. */
export async function applyFlat(d: CloudDeps, key: string): Promise<void> {
  const [hostUuid, l3Uuid] = key.split('/') as [string, string];
  const host = await d.store.get(hostUuid);
  // a host that is gone cannot be reached; one that is not connected is marked when it connects
  if (!host || host.kind !== 'host' || host.status !== 'Connected') return;
  const l3 = await d.store.get(l3Uuid);
  if (!l3 || l3.kind !== 'l3-network' || !isFlat(l3)) {
    await callHost(d, hostUuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3Uuid });
    return;
  }
  const req = await desiredFlat(d, hostUuid, l3);
  // nothing to serve here (any more): no namespace either
  if (!req) {
    await callHost(d, hostUuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3Uuid });
    return;
  }
  const r = await callHost(d, hostUuid, 'vrouteragent', V.FlatApply, req);
  if (r.releasedLeases > 0) log.info({ host: hostUuid, l3: l3Uuid, released: r.releasedLeases }, 'stale DHCP leases released');
}

export function flatArea(d: CloudDeps): ReconcileArea {
  return { name: FLAT_AREA, keys: () => flatKeys(d), apply: (k) => applyFlat(d, k) };
}

/** Mark every flat key a VM's NICs touch (where it runs and where it ran). */
export function markVm(q: ReconcileQueue, vm: Resource): void {
  const hosts = new Set([vm.hostUuid, vm.lastHostUuid].filter((h): h is string => typeof h === 'string' && h !== ''));
  for (const l3 of (vm.l3NetworkUuids as string[] | undefined) ?? []) for (const h of hosts) q.mark(FLAT_AREA, flatKey(h, l3));
}

/** Apply (and wait for) the flat keys of a VM on a host: its NICs are served before it boots. */
export async function syncVmFlat(d: CloudDeps, vm: Resource, hostUuid: string): Promise<void> {
  for (const l3 of (vm.l3NetworkUuids as string[] | undefined) ?? []) {
    const l3r = await d.store.get(l3);
    if (l3r && isFlat(l3r)) await d.reconcile.sync(FLAT_AREA, flatKey(hostUuid, l3));
  }
}

/** Any inventory change that alters a flat key's desired state marks the key. */
export function watchFlatChanges(d: CloudDeps, bus: EventBus): () => void {
  const q = d.reconcile;
  const markL3 = (l3Uuid: string): void => {
    void flatKeys(d, { l3Uuid })
      .then((ks) => ks.forEach((k) => q.mark(FLAT_AREA, k)))
      .catch((e: unknown) => log.warn({ l3: l3Uuid, err: (e as Error).message }, 'cannot list the flat keys of an L3'));
  };
  return bus.subscribe((e) => {
    if (e.type !== 'resource.created' && e.type !== 'resource.updated' && e.type !== 'resource.deleted') return;
    const r = e.resource;
    if (e.kind === 'vm-instance') markVm(q, r);
    else if (e.kind === 'vm-nic') {
      void d.store
        .get(String(r.parentUuid))
        .then((vm) => {
          const h = vm ? servedOn(vm) : undefined;
          if (h) q.mark(FLAT_AREA, flatKey(h, String(r.l3NetworkUuid)));
        })
        .catch((err: unknown) => log.warn({ nic: r.uuid, err: (err as Error).message }, 'cannot mark the flat key of a NIC'));
    } else if (e.kind === 'l3-network') markL3(r.uuid);
    else if (e.kind === 'ip-range') markL3(String(r.parentUuid));
  });
}

/** A host (re)connected: re-apply everything it serves (after its bridges exist). */
export async function markHostFlat(d: CloudDeps, hostUuid: string): Promise<void> {
  for (const k of await flatKeys(d, { hostUuid })) d.reconcile.mark(FLAT_AREA, k);
}
