// IP allocator: addresses of an L3 network's IP ranges, one claim per address in the store
// (namespace ip:<l3Uuid>, key = the address, owner = the NIC or service holding it), so two
// allocations never get the same address, across concurrent flows and across controllers.
// Never handed out: the network and broadcast addresses of the range's subnet, the gateway,
// and the L3's reservedIpRanges.
// A new owner's next address comes from an in-memory view of the L3's claims (issue 19: reading
// every claim of a 10,000-VM network per allocation made creates quadratic). The view is a hint:
// the store claim still decides, a taken address is skipped; it is reloaded every 30 s and
// follows this process's claims and releases, so the lowest free address is still the one given.
import { randomUUID } from 'node:crypto';
import { TStackError, invalid } from '../../shared/errors.js';
import type { ClaimWrite, InventoryStore, Resource } from '../store/types.js';
import { intToIp, ipToInt, subnetOf } from '../model/ipv4.js';
import { Leases } from '../workflow/lease.js';

export const ipNamespace = (l3NetworkUuid: string): string => `ip:${l3NetworkUuid}`;

export interface IpRequest {
  l3NetworkUuid: string;
  /** Who holds the address (VM NIC uuid, DHCP server, VIP…). Re-requests by the same owner are idempotent. */
  owner: string;
  /** A specific address (static IP). */
  ip?: string;
  /** 'sequential' (lowest free, default) or 'random'. */
  strategy?: 'sequential' | 'random';
  /**
   * The owner was just made (a fresh NIC uuid) and holds nothing yet: no need to read every
   * claim of the L3 to find what it holds; the next address comes from the in-memory view.
   */
  newOwner?: boolean;
}

/** What this process knows of an L3's claims (a hint; the store claim decides). */
interface IpView {
  used: Set<string>;
  /** No free address below this one (as an integer), as far as this process knows. */
  low: number;
  loadedAt: number;
  /** Bumped by every change of this process: a load that overlapped one is not kept. */
  gen: number;
}

const VIEW_MAX_AGE_MS = 30_000;
const views = new WeakMap<InventoryStore, Map<string, IpView>>();

function viewsOf(store: InventoryStore): Map<string, IpView> {
  let m = views.get(store);
  if (!m) views.set(store, (m = new Map()));
  return m;
}

async function loadView(store: InventoryStore, ns: string): Promise<IpView> {
  const m = viewsOf(store);
  const gen = m.get(ns)?.gen ?? 0;
  const v: IpView = { used: new Set((await store.claims(ns)).map((c) => c.key)), low: 0, loadedAt: Date.now(), gen };
  const cur = m.get(ns);
  if ((cur?.gen ?? 0) === gen) m.set(ns, v);
  else m.delete(ns); // changed meanwhile: the next allocation loads again
  return v;
}

function noteClaim(store: InventoryStore, ns: string, ip: string): void {
  const v = viewsOf(store).get(ns);
  if (!v) return;
  v.used.add(ip);
  v.gen++;
}

function noteRelease(store: InventoryStore, ns: string, ip: string): void {
  forgetHeld(store, ns, ip);
  const v = viewsOf(store).get(ns);
  if (!v) return;
  v.used.delete(ip);
  const n = ipToIntOrNaN(ip);
  if (n < v.low) v.low = n;
  v.gen++;
}

/**
 * Addresses of long-lived service owners (a host's DHCP server `dhcp:<host>`), by namespace and
 * owner: each flat apply asks for it, and finding it read every claim of the L3. One read fills
 * in every `dhcp:` owner of the L3 (a controller's first reconcile pass asks for all its hosts'
 * at once, and they all age out together: per host, that was hosts × claims rows read each
 * minute); concurrent misses share that read. Kept for a minute, dropped by releaseIp; a
 * release by another controller is seen after that minute. Every service address this process
 * gives is noted (allocateIp), so on SQLite a recent whole read also answers a miss.
 */
const held = new WeakMap<InventoryStore, Map<string, { ip: string; at: number }>>();
const HELD_MAX_AGE_MS = 60_000;
const SERVICE_OWNER = 'dhcp:';
/** The read of a namespace's claims in progress, by store and namespace. */
const refreshing = new WeakMap<InventoryStore, Map<string, Promise<Array<{ key: string; owner: string }>>>>();
/** Releases seen by this process, by store and namespace: a read that overlapped one fills nothing in. */
const releases = new WeakMap<InventoryStore, Map<string, number>>();

/** When each namespace's service owners were last read whole (a read no release overlapped). */
const complete = new WeakMap<InventoryStore, Map<string, number>>();

function completeOf(store: InventoryStore): Map<string, number> {
  let m = complete.get(store);
  if (!m) complete.set(store, (m = new Map()));
  return m;
}

function heldOf(store: InventoryStore): Map<string, { ip: string; at: number }> {
  let m = held.get(store);
  if (!m) held.set(store, (m = new Map()));
  return m;
}

/** Read the namespace's claims once (shared by concurrent callers) and refresh its service owners' entries. */
function refreshHeld(store: InventoryStore, ns: string): Promise<Array<{ key: string; owner: string }>> {
  let r = refreshing.get(store);
  if (!r) refreshing.set(store, (r = new Map()));
  const inFlight = r.get(ns);
  if (inFlight) return inFlight;
  const startedAt = Date.now();
  const gen = releases.get(store)?.get(ns) ?? 0;
  const p = store
    .claims(ns)
    .then((claims) => {
      if ((releases.get(store)?.get(ns) ?? 0) !== gen) return claims;
      const m = heldOf(store);
      const seen = new Set<string>();
      for (const c of claims) {
        if (!c.owner.startsWith(SERVICE_OWNER)) continue;
        const k = `${ns} ${c.owner}`;
        seen.add(k);
        m.set(k, { ip: c.key, at: startedAt });
      }
      // owners that hold nothing any more; an entry noted after the read began stays
      for (const [k, v] of m) if (k.startsWith(`${ns} `) && !seen.has(k) && v.at <= startedAt) m.delete(k);
      completeOf(store).set(ns, startedAt);
      return claims;
    })
    .finally(() => r.delete(ns));
  r.set(ns, p);
  return p;
}

/** The address `owner` holds on an L3, if any (one owner, one address). */
export async function heldIp(store: InventoryStore, l3NetworkUuid: string, owner: string): Promise<string | undefined> {
  const ns = ipNamespace(l3NetworkUuid);
  const k = `${ns} ${owner}`;
  const hit = heldOf(store).get(k);
  if (hit && Date.now() - hit.at <= HELD_MAX_AGE_MS) return hit.ip;
  // SQLite has one controller: after a recent whole read, this process noted every service
  // address given since (noteHeld), so an owner it does not know holds none (issue 19: each
  // host's first flat apply read every claim of the L3). Redis: another controller may have
  // given one: the read answers.
  const whole = completeOf(store).get(ns);
  if (store.backend === 'sqlite' && whole !== undefined && Date.now() - whole <= HELD_MAX_AGE_MS) return undefined;
  return (await refreshHeld(store, ns)).find((c) => c.owner === owner)?.key;
}

/** This process (its store connection) as the holder of the leases under which service addresses are given. */
const serviceHolders = new WeakMap<InventoryStore, string>();
function serviceHolder(store: InventoryStore): string {
  let h = serviceHolders.get(store);
  if (!h) serviceHolders.set(store, (h = `ip-service-${randomUUID()}`));
  return h;
}
/** A give takes a few store calls; the TTL only matters when a controller dies holding one. */
const SERVICE_LEASE_TTL_MS = 15_000;

/**
 * The address of a service owner (a host's DHCP server, `dhcp:<host>`) on an L3, given on first
 * use; one owner, one address. On a shared inventory two controllers can apply the same key at
 * once (a VM create's sync where it runs, the host's own controller on the create's events), and
 * each gave the owner an address of its own: the extra one leaked, and a 1,000-host L3 ran out of
 * addresses (issue 19). There the first address is given under a lease on (L3, owner), after a
 * read of the L3's claims that begins once the lease is held.
 */
export async function serviceIp(store: InventoryStore, l3NetworkUuid: string, owner: string, o: { heldAsked?: boolean } = {}): Promise<string> {
  // heldAsked: the caller's heldIp has just answered none
  const have = o.heldAsked ? undefined : await heldIp(store, l3NetworkUuid, owner);
  if (have !== undefined) return have;
  // one controller: its applies of a key run one at a time, and heldIp has just answered
  if (store.backend === 'sqlite') return (await allocateIp(store, { l3NetworkUuid, owner, newOwner: true })).ip;
  const leases = new Leases(store);
  const key = `ip-service:${l3NetworkUuid}:${owner}`;
  const holder = serviceHolder(store);
  await leases.acquire(key, holder, SERVICE_LEASE_TTL_MS, 2 * SERVICE_LEASE_TTL_MS);
  try {
    const given = (await store.claims(ipNamespace(l3NetworkUuid))).find((c) => c.owner === owner)?.key;
    if (given !== undefined) {
      noteHeld(store, l3NetworkUuid, owner, given);
      return given;
    }
    return (await allocateIp(store, { l3NetworkUuid, owner, newOwner: true })).ip;
  } finally {
    await leases.release(key, holder).catch(() => undefined);
  }
}

/** `owner` was just given `ip` (a service's first address): heldIp answers it without a read. */
export function noteHeld(store: InventoryStore, l3NetworkUuid: string, owner: string, ip: string): void {
  heldOf(store).set(`${ipNamespace(l3NetworkUuid)} ${owner}`, { ip, at: Date.now() });
}

function forgetHeld(store: InventoryStore, ns: string, ip: string): void {
  let g = releases.get(store);
  if (!g) releases.set(store, (g = new Map()));
  g.set(ns, (g.get(ns) ?? 0) + 1);
  complete.get(store)?.delete(ns); // misses read again (conservative; releases are rare at scale)
  const m = held.get(store);
  if (!m) return;
  for (const [k, v] of m) if (v.ip === ip && k.startsWith(`${ns} `)) m.delete(k);
}

function ipToIntOrNaN(ip: string): number {
  try {
    return ipToInt(ip);
  } catch {
    return NaN;
  }
}

export interface IpAllocation {
  ip: string;
  netmask: string;
  gateway: string;
  l3NetworkUuid: string;
  ipRangeUuid: string;
  owner: string;
}

interface RangeInfo {
  range: Resource;
  start: number;
  end: number;
  network: number;
  broadcast: number;
  gateway: number;
  netmask: string;
}

async function loadL3(store: InventoryStore, l3NetworkUuid: string): Promise<{ l3: Resource; ranges: RangeInfo[]; reserved: Array<[number, number]> }> {
  const l3 = await store.get(l3NetworkUuid);
  if (!l3 || l3.kind !== 'l3-network') throw new TStackError('NOT_FOUND', `no L3 network with uuid ${l3NetworkUuid}`, { field: 'l3NetworkUuid', uuid: l3NetworkUuid });
  const ranges = (await store.byParent('ip-range', l3NetworkUuid))
    .map((range): RangeInfo => {
      const s = subnetOf(String(range.gateway), String(range.netmask));
      return { range, start: ipToInt(String(range.startIp)), end: ipToInt(String(range.endIp)), network: s.network, broadcast: s.broadcast, gateway: ipToInt(String(range.gateway)), netmask: s.netmask };
    })
    .sort((a, b) => a.start - b.start);
  const reserved = ((l3.reservedIpRanges as Array<{ startIp: string; endIp: string }> | undefined) ?? []).map((r): [number, number] => [ipToInt(r.startIp), ipToInt(r.endIp)]);
  return { l3, ranges, reserved };
}

function isReserved(ip: number, r: RangeInfo, reserved: Array<[number, number]>): boolean {
  return ip === r.network || ip === r.broadcast || ip === r.gateway || reserved.some(([a, b]) => ip >= a && ip <= b);
}

function allocation(r: RangeInfo, ip: number, req: IpRequest): IpAllocation {
  return { ip: intToIp(ip), netmask: r.netmask, gateway: intToIp(r.gateway), l3NetworkUuid: req.l3NetworkUuid, ipRangeUuid: r.range.uuid, owner: req.owner };
}

/** Allocate one address. CAPACITY_EXCEEDED when the L3 is full; CONFLICT when a requested address is taken. */
export async function allocateIp(store: InventoryStore, req: IpRequest): Promise<IpAllocation> {
  const a = await allocateIpIn(store, req);
  // a service owner's address: heldIp answers it from memory (and relies on knowing every one)
  if (a.owner.startsWith(SERVICE_OWNER)) noteHeld(store, a.l3NetworkUuid, a.owner, a.ip);
  return a;
}

async function allocateIpIn(store: InventoryStore, req: IpRequest): Promise<IpAllocation> {
  const { l3, ranges, reserved } = await loadL3(store, req.l3NetworkUuid);
  const ns = ipNamespace(req.l3NetworkUuid);
  if (ranges.length === 0) throw noRange(l3);

  if (req.ip !== undefined) {
    const r = staticRange(l3, ranges, reserved, req.ip);
    if (await store.claim(ns, req.ip, req.owner)) {
      noteClaim(store, ns, req.ip);
      return allocation(r, ipToInt(req.ip), req);
    }
    throw await inUse(store, l3, req.ip);
  }

  if (req.newOwner && req.strategy !== 'random') return nextFree(store, ns, l3, ranges, reserved, req, (ip) => store.claim(ns, ip, req.owner));
  const claims = await store.claims(ns);
  const mine = claims.find((c) => c.owner === req.owner);
  if (mine) {
    // idempotent: a resumed flow asking again for the same owner gets the same address
    const ip = ipToInt(mine.key);
    const r = ranges.find((x) => ip >= x.start && ip <= x.end);
    if (r) return allocation(r, ip, req);
  }
  const used = new Set(claims.map((c) => c.key));
  let total = 0;
  const candidates: Array<{ r: RangeInfo; ip: number }> = [];
  for (const r of ranges) {
    for (let ip = r.start; ip <= r.end; ip++) {
      if (isReserved(ip, r, reserved)) continue;
      total++;
      if (!used.has(intToIp(ip))) candidates.push({ r, ip });
    }
  }
  if (req.strategy === 'random' && candidates.length > 1) {
    const k = Math.floor(Math.random() * candidates.length);
    candidates.push(...candidates.splice(0, k));
  }
  for (const c of candidates) {
    if (await store.claim(ns, intToIp(c.ip), req.owner)) {
      noteClaim(store, ns, intToIp(c.ip));
      return allocation(c.r, c.ip, req);
    }
  }
  throw full(l3, ranges, total);
}

const noRange = (l3: Resource): TStackError => new TStackError('CAPACITY_EXCEEDED', `L3 network ${l3.name} (${l3.uuid}) has no IP range; add one first`, { l3NetworkUuid: l3.uuid, field: 'l3NetworkUuid' });

/** The range of a requested (static) address; INVALID_ARGUMENT outside the ranges or on a reserved one. */
function staticRange(l3: Resource, ranges: RangeInfo[], reserved: Array<[number, number]>, text: string): RangeInfo {
  const ip = ipToInt(text, 'ip');
  const r = ranges.find((x) => ip >= x.start && ip <= x.end);
  if (!r) throw invalid('ip', `${text} is not in any IP range of L3 network ${l3.name}`);
  if (isReserved(ip, r, reserved)) throw invalid('ip', `${text} is reserved on L3 network ${l3.name} (network, broadcast, gateway or a reserved range)`);
  return r;
}

async function inUse(store: InventoryStore, l3: Resource, ip: string): Promise<TStackError> {
  const holder = (await store.claims(ipNamespace(l3.uuid))).find((c) => c.key === ip)?.owner;
  return new TStackError('CONFLICT', `${ip} on L3 network ${l3.name} is already in use${holder ? ` by ${holder}` : ''}`, { field: 'ip', ip, owner: holder });
}

function full(l3: Resource, ranges: RangeInfo[], total: number): TStackError {
  return new TStackError('CAPACITY_EXCEEDED', `L3 network ${l3.name} (${l3.uuid}) has no free IP address: all ${total} usable addresses of its ${ranges.length} range(s) are in use`, {
    l3NetworkUuid: l3.uuid,
    usable: total,
  });
}

/**
 * The lowest address the view has free, taken with `take` (the store claim; a pick's: true, its
 * caller claims it); a taken one (another process, or a claim made outside this module) is
 * marked and skipped. A stale view is reloaded first, and once more before the L3 is declared full.
 */
async function nextFree(store: InventoryStore, ns: string, l3: Resource, ranges: RangeInfo[], reserved: Array<[number, number]>, req: IpRequest, take: (ip: string) => Promise<boolean>): Promise<IpAllocation> {
  for (let pass = 0; pass < 2; pass++) {
    let v = viewsOf(store).get(ns);
    if (!v || pass > 0 || Date.now() - v.loadedAt > VIEW_MAX_AGE_MS) v = await loadView(store, ns);
    for (const r of ranges) {
      if (r.end < v.low) continue;
      for (let ip = Math.max(r.start, v.low); ip <= r.end; ip++) {
        if (isReserved(ip, r, reserved)) continue;
        const text = intToIp(ip);
        if (v.used.has(text)) continue;
        const got = await take(text);
        v.used.add(text);
        v.gen++;
        if (got) {
          // everything below is taken, as far as this process knows
          if (v.low < ip) v.low = ip;
          return allocation(r, ip, req);
        }
      }
    }
  }
  let total = 0;
  for (const r of ranges) for (let ip = r.start; ip <= r.end; ip++) if (!isReserved(ip, r, reserved)) total++;
  throw full(l3, ranges, total);
}

/**
 * An address for a new owner (IpRequest.newOwner) or a static one, not claimed yet: the caller
 * writes its ipClaim with its own writes (the NIC record: one commit, issue 19), then tells how it
 * went with ipTaken or ipUnclaimed. The view counts it as used meanwhile, so concurrent picks
 * of this process differ. Other requests are allocated (claimed) here: the ipClaim is then the
 * owner's claim again (granted).
 */
export async function pickIp(store: InventoryStore, req: IpRequest): Promise<{ allocation: IpAllocation }> {
  const ns = ipNamespace(req.l3NetworkUuid);
  let a: IpAllocation;
  if (req.ip !== undefined || (req.newOwner && req.strategy !== 'random')) {
    const { l3, ranges, reserved } = await loadL3(store, req.l3NetworkUuid);
    if (ranges.length === 0) throw noRange(l3);
    if (req.ip === undefined) a = await nextFree(store, ns, l3, ranges, reserved, req, async () => true);
    else {
      a = allocation(staticRange(l3, ranges, reserved, req.ip), ipToInt(req.ip), req);
      noteClaim(store, ns, req.ip);
    }
  } else a = await allocateIp(store, req);
  return { allocation: a };
}

/** An address's claim for `owner`, for a caller writing it with other writes (a batch). */
export const ipClaim = (l3NetworkUuid: string, ip: string, owner: string): ClaimWrite => ({ op: 'claim', namespace: ipNamespace(l3NetworkUuid), key: ip, owner });

/**
 * A picked address was claimed by another owner (the caller's batch was refused for it): the
 * view keeps it as used. A static address: the CONFLICT naming its holder to throw; else
 * undefined (pick again).
 */
export async function ipTaken(store: InventoryStore, l3NetworkUuid: string, ip: string, wasStatic: boolean): Promise<TStackError | undefined> {
  if (!wasStatic) return undefined;
  const l3 = await store.get(l3NetworkUuid);
  return inUse(store, l3 ?? ({ uuid: l3NetworkUuid, name: l3NetworkUuid } as Resource), ip);
}

/** A picked address was not claimed (the caller's batch failed otherwise): free again in the view. */
export function ipUnclaimed(store: InventoryStore, l3NetworkUuid: string, ip: string): void {
  const v = viewsOf(store).get(ipNamespace(l3NetworkUuid));
  if (!v || !v.used.delete(ip)) return;
  const n = ipToIntOrNaN(ip);
  if (n < v.low) v.low = n;
  v.gen++;
}

/** Give an address back (only if `owner` holds it, when given). Idempotent. */
export async function releaseIp(store: InventoryStore, l3NetworkUuid: string, ip: string, owner?: string): Promise<void> {
  await store.release(ipNamespace(l3NetworkUuid), ip, owner);
  // with an owner that did not hold it nothing was released: the view reloads on a failed claim
  noteRelease(store, ipNamespace(l3NetworkUuid), ip);
}

/** Give back every address `owner` holds on an L3 (a rollback that never learnt which one). */
export async function releaseIpsOf(store: InventoryStore, l3NetworkUuid: string, owner: string): Promise<void> {
  const ns = ipNamespace(l3NetworkUuid);
  for (const c of await store.claims(ns)) {
    if (c.owner !== owner) continue;
    await store.release(ns, c.key, owner);
    noteRelease(store, ns, c.key);
  }
}

/** Addresses in use on an L3 and who holds them. */
export async function usedIps(store: InventoryStore, l3NetworkUuid: string): Promise<Array<{ ip: string; owner: string }>> {
  return (await store.claims(ipNamespace(l3NetworkUuid))).map((c) => ({ ip: c.key, owner: c.owner }));
}

/** Usable / used / free address counts of an L3 (for the API's IP capacity view). */
export async function ipCapacity(store: InventoryStore, l3NetworkUuid: string): Promise<{ total: number; used: number; available: number }> {
  const { ranges, reserved } = await loadL3(store, l3NetworkUuid);
  const used = new Set((await store.claims(ipNamespace(l3NetworkUuid))).map((c) => c.key));
  let total = 0;
  let inUse = 0;
  for (const r of ranges) {
    for (let ip = r.start; ip <= r.end; ip++) {
      if (isReserved(ip, r, reserved)) continue;
      total++;
      if (used.has(intToIp(ip))) inUse++;
    }
  }
  return { total, used: inUse, available: total - inUse };
}
