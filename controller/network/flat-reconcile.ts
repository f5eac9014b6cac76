// Flat-network services as desired state: for each (host, flat L3) key the controller computes
// the complete set of DHCP entries, DNS records and metadata records from the inventory and sends
// it whole (vrouter flat/apply) through the reconcile queue (area 'flat', key '<host>/<l3>').
// Whatever changes a key's inputs only marks it (watchFlatChanges); the periodic pass repairs
// drift on the host (a dead dnsmasq, a deleted namespace or lease file: flat/apply `verify`)
// and converges after a controller or agent restart.
//
// Who is served where: a VM's NICs are served by the host it runs on, or last ran on while it
// is stopped (hostUuid ?? lastHostUuid), until it is destroyed. DNS names cover the whole L3:
// the other hosts' names go as the changes since what the agent acknowledged when it can
// (flat-dns.ts), else whole.
import * as V from '../../shared/protocol/vrouter.js';
import type { Static } from '../../shared/protocol/schema.js';
import { logger } from '../../shared/log.js';
import { TStackError } from '../../shared/errors.js';
import type { Resource } from '../store/types.js';
import type { ReconcileArea, ReconcileQueue } from '../reconcile/queue.js';
import type { EventBus } from '../events/bus.js';
import { heldIp, ipNamespace, serviceIp } from '../allocator/ip.js';
import { callHost, mustGet, refreshable, type CloudDeps } from '../cloud/common.js';
import { ensureBridge, isFlat } from './index.js';
import { servedOn, storeNics, vmHostname, type LiveNic, type NicSource } from './flat-nics.js';
import { FlatDns, type HostRecord } from './flat-dns.js';
import { deltaParts, wholeParts } from './flat-whole.js';
import { DNS_BASE_MISMATCH, type DnsRec } from '../../shared/dns-set.js';

const log = logger('network');

export const FLAT_AREA = 'flat';
type FlatApplyReq = Static<typeof V.FlatApply.request>;
/** A flat/apply with the other hosts' DNS records whole. */
export type FlatApplyWhole = Omit<FlatApplyReq, 'dns'> & { dns: { records: DnsRec[]; forwarders: string[] } };

export const flatKey = (hostUuid: string, l3Uuid: string): string => `${hostUuid}/${l3Uuid}`;

export { servedOn, vmHostname };

/** Every (host, L3) that has a service namespace or should have one. */
export async function flatKeys(d: CloudDeps, only?: { hostUuid?: string; l3Uuid?: string }, nics: NicSource = storeNics(d.store)): Promise<string[]> {
  const out = new Set<string>();
  const l3s = only?.l3Uuid ? [await d.store.get(only.l3Uuid)].filter((x): x is Resource => x !== undefined) : (await d.store.list({ kind: 'l3-network' })).items;
  for (const l3 of l3s) {
    if (l3.kind !== 'l3-network' || !isFlat(l3)) continue;
    for (const c of await d.store.claims(ipNamespace(l3.uuid))) if (c.owner.startsWith('dhcp:')) out.add(flatKey(c.owner.slice(5), l3.uuid));
    for (const { host } of await nics.liveNics(l3.uuid)) out.add(flatKey(host, l3.uuid));
  }
  return [...out].filter((k) => !only?.hostUuid || k.startsWith(`${only.hostUuid}/`));
}

/**
 * The complete desired state of one L3 on one host, or undefined when the host serves nothing
 * there (no VM NIC and no namespace). Allocates the host's DHCP server address on first use.
 * `nics`: where the L3's NICs come from (default: the inventory, read now).
 */
export async function desiredFlat(d: CloudDeps, hostUuid: string, l3: Resource, nics: NicSource = storeNics(d.store)): Promise<FlatApplyWhole | undefined> {
  const p = await desiredParts(d, hostUuid, l3, nics);
  return p && withRecords(p.req, p.layout, p.alone, hostUuid);
}

const NO_RECORDS: readonly HostRecord[] = [];

/** `req` with the records of the L3's other hosts (none when it serves the L3 alone), whole. */
function withRecords(req: FlatApplyReq, layout: FlatLayout, alone: boolean, hostUuid: string): FlatApplyWhole {
  const out: DnsRec[] = [];
  if (!alone) for (const r of layout.records) if (r.host !== hostUuid) out.push(r.record);
  return { ...req, dns: { records: out, forwarders: req.dns.forwarders } };
}

/** mustGet of an L3 or L2 network, through the NIC source's memory when it keeps them. */
async function networkOf(d: CloudDeps, nics: NicSource, uuid: string, kind: 'l2-network'): Promise<Resource> {
  if (!nics.network) return mustGet(d.store, uuid, kind);
  const r = await nics.network(uuid);
  if (!r || r.kind !== kind) throw new TStackError('NOT_FOUND', `no ${kind} with uuid ${uuid}`, { uuid });
  return r;
}

/** desiredFlat without the DNS records, and the L3's named records with their hosts. */
async function desiredParts(d: CloudDeps, hostUuid: string, l3: Resource, nics: NicSource): Promise<{ req: FlatApplyReq; layout: FlatLayout; alone: boolean } | undefined> {
  let live = await nics.liveNics(l3.uuid);
  const mine = layoutOf(live).byHost.has(hostUuid);
  const heldKey = await heldIp(d.store, l3.uuid, `dhcp:${hostUuid}`);
  const held = heldKey === undefined ? undefined : { key: heldKey };
  if (!mine && !held) return undefined;
  // the L3's ranges and L2 from the NIC source's memory when it keeps them (FlatNicCache: fed by
  // resource events, reloaded by each periodic pass), else from the inventory
  const ranges = await (nics.ranges?.(l3.uuid) ?? d.store.byParent('ip-range', l3.uuid));
  if (ranges.length === 0) return undefined;
  const l2 = await networkOf(d, nics, String(l3.parentUuid), 'l2-network');
  const bridge = typeof l2.bridgeName === 'string' && l2.bridgeName ? l2.bridgeName : await ensureBridge(d, hostUuid, l2);
  // heldIp has just answered from the store or a recent whole read of it: the owner holds
  // nothing, so the address comes from the allocator's view instead of another read of every
  // claim of the L3 (per host: quadratic at 1,000 hosts × 10,000 VMs; on a shared inventory
  // under a lease, see serviceIp); allocateIp notes it for heldIp
  const serverIp = held?.key ?? (await serviceIp(d.store, l3.uuid, `dhcp:${hostUuid}`, { heldAsked: true }));
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

  // the NICs as they are now (the reads above waited): an L3's DNS log follows one list to the
  // next, and a list older than another apply's made it step back and forth
  live = await nics.liveNics(l3.uuid);
  const layout = layoutOf(live);
  const byHost = layout.byHost;
  // each NIC of this host once (the agent derives its DHCP entry, DNS name and metadata record);
  // DNS records only for the names other hosts serve (added by the caller)
  const metadata = network.metadata;
  const req: FlatApplyReq = { network, nics: [], dns: { forwarders: [] } };
  if (!services.includes('DHCP')) req.dhcp = false;
  for (const i of byHost.get(hostUuid) ?? []) {
    const x = layout.live[i]!;
    const named = layout.named[i]!;
    const nic: FlatApplyReq['nics'][number] = { mac: x.mac, ip: x.ip, vmUuid: x.vmUuid, hostname: x.hostname };
    if (!named) nic.named = false;
    if (metadata && x.userData !== undefined) nic.userData = x.userData;
    if (metadata && x.sshKey !== undefined) nic.sshKeys = [x.sshKey];
    req.nics.push(nic);
  }
  // alone: no other host serves the L3 (no names to send: the whole set is empty)
  return { req, layout, alone: byHost.size === 0 || (byHost.size === 1 && byHost.has(hostUuid)) };
}

/** A named NIC's DNS record (never changed once made: its text is kept by flat-whole). */
const recordOf = new WeakMap<LiveNic, HostRecord>();

/**
 * An L3's NICs by serving host, and the DNS record of each named NIC (with its host). The
 * records are made on first use: an L3 that one host serves alone sends none (a 250-VM L3 made
 * 500 objects per apply for nothing).
 */
class FlatLayout {
  /** Per serving host, the places of its NICs in `live` (numbers: no object per NIC per list, issue 19). */
  readonly byHost = new Map<string, number[]>();
  private made?: HostRecord[];

  constructor(
    readonly live: readonly LiveNic[],
    /** Per NIC of `live`: whether it holds its name (the first of the L3 with it). */
    readonly named: readonly boolean[],
  ) {}

  /** How many of `records` `host` serves (its named NICs). */
  ownRecords(host: string): number {
    let n = 0;
    for (const i of this.byHost.get(host) ?? []) if (this.named[i]) n++;
    return n;
  }

  get records(): readonly HostRecord[] {
    if (!this.made) {
      const out: HostRecord[] = [];
      for (let i = 0; i < this.live.length; i++) {
        const x = this.live[i]!;
        if (!this.named[i]) continue;
        // the same NIC object in the next list (flat-nics' join) gives the same record object (flat-whole keeps its text)
        let r = recordOf.get(x);
        if (!r) recordOf.set(x, (r = { host: x.host, record: { name: x.hostname, ip: x.ip } }));
        out.push(r);
      }
      this.made = out;
    }
    return this.made;
  }
}

/**
 * Per list of NICs (a NicSource hands out the same list until the L3 changes): a periodic pass
 * applies every host of an L3 from one list, and each apply walked and named all its NICs.
 */
const layouts = new WeakMap<readonly LiveNic[], FlatLayout>();

function layoutOf(live: readonly LiveNic[]): FlatLayout {
  const hit = layouts.get(live);
  if (hit) return hit;
  // a host name is given once per L3: a later VM with the same name gets an address but no name
  const taken = new Set<string>(); // short names (before the first dot, lower case)
  const named: boolean[] = new Array<boolean>(live.length);
  const out = new FlatLayout(live, named);
  for (let i = 0; i < live.length; i++) {
    const x = live[i]!;
    const h = x.hostname;
    const dot = h.indexOf('.');
    const short = (dot < 0 ? h : h.slice(0, dot)).toLowerCase();
    const owns = !taken.has(short);
    if (owns) taken.add(short);
    named[i] = owns;
    let mine = out.byHost.get(x.host);
    if (!mine) out.byHost.set(x.host, (mine = []));
    mine.push(i);
  }
  layouts.set(live, out);
  return out;
}

/**
 * Apply one key: the host's namespace for the L3 made to match the inventory. With `dns` (the
 * area's), the other hosts' DNS records go as a delta when the agent acknowledged a base.
 */
export async function applyFlat(d: CloudDeps, key: string, nics: NicSource = storeNics(d.store), dns?: FlatDns): Promise<void> {
  const [hostUuid, l3Uuid] = key.split('/') as [string, string];
  const host = await d.store.get(hostUuid);
  // a host that is gone cannot be reached; one that is not connected is marked when it connects
  if (!host || host.kind !== 'host' || host.status !== 'Connected') return;
  const epoch = dns?.currentEpoch ?? 0;
  const l3 = await (nics.network?.(l3Uuid) ?? d.store.get(l3Uuid));
  if (!l3 || l3.kind !== 'l3-network' || !isFlat(l3)) {
    dns?.forgetL3(l3Uuid);
    dns?.forgetKey(key);
    await callHost(d, hostUuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3Uuid });
    return;
  }
  const p = await desiredParts(d, hostUuid, l3, nics);
  // nothing to serve here (any more): no namespace either
  if (!p) {
    dns?.forgetKey(key);
    await callHost(d, hostUuid, 'vrouteragent', V.NamespaceDelete, { l3NetworkUuid: l3Uuid });
    return;
  }
  // the host just read: its endpoint as callHost would read it again
  const ep = refreshable(d, host, 'vrouteragent');
  // the first apply since the periodic pass (or since this controller started) checks the host
  const check = dns?.checkDue(key) === true;
  if (check) p.req.verify = true;
  // the whole set's text cut from the L3's records serialized once (flat-whole.ts); the request
  // object without them tells observers the form. Alone, the host has no other hosts' records.
  const whole = (): Promise<Static<typeof V.FlatApply.response>> =>
    d.agentClient.call(V.FlatApply, ep, { ...p.req, dns: { forwarders: p.req.dns.forwarders } }, { json: p.alone ? wholeParts(p.req, NO_RECORDS, hostUuid) : wholeParts(p.req, p.layout.records, hostUuid, p.layout.ownRecords(hostUuid)) });
  let r: Static<typeof V.FlatApply.response> | undefined;
  if (!dns || p.alone) {
    // alone, the L3's log is not kept in step (a 250-VM L3 on one host paid ~0.6 ms per apply
    // for it); what the agent holds is then not vouched for: the next apply with other hosts' names sends them whole
    dns?.drop(key);
    r = await whole();
  } else {
    const dnsLog = dns.log(l3Uuid);
    dnsLog.sync(p.layout.records);
    const v = dnsLog.version;
    const digest = dnsLog.digestFor(hostUuid);
    // a check too (the periodic pass): an empty delta when the records are what the agent
    // acknowledged, whose digests the agent checks (the whole set for every key made each pass
    // O(hosts × L3 size) on the controller); the files are checked because of `verify`
    const delta = dns.delta(key, hostUuid, dnsLog);
    try {
      if (delta) {
        try {
          // the request object tells observers the form; the text is made from the records' kept JSON
          r = await d.agentClient.call(V.FlatApply, ep, { ...p.req, dns: { forwarders: p.req.dns.forwarders, delta } }, { json: deltaParts(p.req, delta) });
        } catch (e) {
          if ((e as { code?: string }).code !== DNS_BASE_MISMATCH) throw e;
          // the agent restarted without its state, or another controller applied since: the whole set
          log.info({ host: hostUuid, l3: l3Uuid, err: (e as Error).message }, 'the agent does not hold the DNS base: sending the whole set');
        }
      }
      r ??= await whole();
    } catch (e) {
      dns.drop(key);
      throw e;
    }
    if (r.dnsDigest === digest) dns.acknowledged(key, dnsLog, v, digest);
    else dns.drop(key);
  }
  if (check) dns?.checkedIn(key, epoch);
  if (r.releasedLeases > 0) log.info({ host: hostUuid, l3: l3Uuid, released: r.releasedLeases }, 'stale DHCP leases released');
}

/**
 * The reconcile area. With a FlatNicCache (the controller's), applies read NICs from memory and
 * each periodic pass (keys()) reloads them from the inventory first.
 */
export function flatArea(d: CloudDeps, nics: NicSource = storeNics(d.store), dns = new FlatDns()): ReconcileArea {
  return {
    name: FLAT_AREA,
    keys: () => {
      nics.refresh?.();
      // each key's next apply checks its host (drift repair), its DNS records as an empty delta
      // when unchanged
      dns.passNext();
      return flatKeys(d, undefined, nics);
    },
    apply: (k) => applyFlat(d, k, nics, dns),
    hostOf: (k) => k.slice(0, k.indexOf('/')),
    keysOn: async (hosts) => (await flatKeys(d, undefined, nics)).filter((k) => hosts.has(k.slice(0, k.indexOf('/')))),
  };
}

/** Mark every flat key a VM's NICs touch (where it runs and where it ran). */
export function markVm(q: ReconcileQueue, vm: Resource): void {
  const hosts = new Set([vm.hostUuid, vm.lastHostUuid].filter((h): h is string => typeof h === 'string' && h !== ''));
  for (const l3 of (vm.l3NetworkUuids as string[] | undefined) ?? []) for (const h of hosts) q.mark(FLAT_AREA, flatKey(h, l3));
}

/**
 * Apply (and wait for) the flat keys of a VM on a host: its NICs are served before it boots.
 * `l3s`: L3 records the caller read already (whether an L3 is flat cannot change: vm-spec.ts L3sRead).
 */
export async function syncVmFlat(d: CloudDeps, vm: Resource, hostUuid: string, l3s?: ReadonlyMap<string, Resource>): Promise<void> {
  for (const l3 of (vm.l3NetworkUuids as string[] | undefined) ?? []) {
    const l3r = l3s?.get(l3) ?? (await d.store.get(l3));
    if (l3r && isFlat(l3r)) await d.reconcile.sync(FLAT_AREA, flatKey(hostUuid, l3));
  }
}

/** What the flat keys take of a VM (markVm's keys and flat-nics' row of it). */
interface FlatVmInputs {
  host: unknown;
  lastHost: unknown;
  served: string | undefined;
  hostname: string;
  createDate: unknown;
  userData: unknown;
  sshKey: unknown;
  l3s: string;
}

const flatInputs = (vm: Resource): FlatVmInputs => ({
  host: vm.hostUuid,
  lastHost: vm.lastHostUuid,
  served: servedOn(vm),
  hostname: vmHostname(vm),
  createDate: vm.createDate,
  userData: vm.userData,
  sshKey: vm.sshKey,
  l3s: ((vm.l3NetworkUuids as string[] | undefined) ?? []).join(','),
});

const sameInputs = (a: FlatVmInputs, b: FlatVmInputs): boolean =>
  a.host === b.host && a.lastHost === b.lastHost && a.served === b.served && a.hostname === b.hostname && a.createDate === b.createDate && a.userData === b.userData && a.sshKey === b.sshKey && a.l3s === b.l3s;

/** Any inventory change that alters a flat key's desired state marks the key. */
export function watchFlatChanges(d: CloudDeps, bus: EventBus): () => void {
  const q = d.reconcile;
  const markL3 = (l3Uuid: string): void => {
    void flatKeys(d, { l3Uuid })
      .then((ks) => ks.forEach((k) => q.mark(FLAT_AREA, k)))
      .catch((e: unknown) => log.warn({ l3: l3Uuid, err: (e as Error).message }, 'cannot list the flat keys of an L3'));
  };
  const shown = new Map<string, FlatVmInputs>();
  return bus.subscribe((e) => {
    if (e.type !== 'resource.created' && e.type !== 'resource.updated' && e.type !== 'resource.deleted') return;
    const r = e.resource;
    if (e.kind === 'vm-instance') {
      if (e.type === 'resource.deleted') shown.delete(r.uuid);
      else {
        // a change the desired state does not show (Starting → Running, a date) marks nothing:
        // a create made ~4 applies of its key, each as big as the L3 (issue 19)
        const now = flatInputs(r);
        const was = shown.get(r.uuid);
        shown.set(r.uuid, now);
        if (was && sameInputs(was, now)) return;
      }
      markVm(q, r);
    }
    else if (e.kind === 'vm-nic') {
      // the NIC's VM where its last event showed it served (issue 19: a store read per NIC
      // event, each create's NIC among them); a VM no event showed since this process started is read
      const seen = shown.get(String(r.parentUuid));
      if (seen) {
        if (seen.served) q.mark(FLAT_AREA, flatKey(seen.served, String(r.l3NetworkUuid)));
        return;
      }
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
