// IP allocator: addresses of an L3 network's IP ranges, one claim per address in the store
// (namespace ip:<l3Uuid>, key = the address, owner = the NIC or service holding it), so two
// allocations never get the same address, across concurrent flows and across controllers.
// Never handed out: the network and broadcast addresses of the range's subnet, the gateway,
// and the L3's reservedIpRanges.
import { TStackError, invalid } from '../../shared/errors.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { intToIp, ipToInt, subnetOf } from '../model/ipv4.js';

export const ipNamespace = (l3NetworkUuid: string): string => `ip:${l3NetworkUuid}`;

export interface IpRequest {
  l3NetworkUuid: string;
  /** Who holds the address (VM NIC uuid, DHCP server, VIP…). Re-requests by the same owner are idempotent. */
  owner: string;
  /** A specific address (static IP). */
  ip?: string;
  /** 'sequential' (lowest free, default) or 'random'. */
  strategy?: 'sequential' | 'random';
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
  const { l3, ranges, reserved } = await loadL3(store, req.l3NetworkUuid);
  const ns = ipNamespace(req.l3NetworkUuid);
  if (ranges.length === 0) {
    throw new TStackError('CAPACITY_EXCEEDED', `L3 network ${l3.name} (${l3.uuid}) has no IP range; add one first`, { l3NetworkUuid: l3.uuid, field: 'l3NetworkUuid' });
  }

  if (req.ip !== undefined) {
    const ip = ipToInt(req.ip, 'ip');
    const r = ranges.find((x) => ip >= x.start && ip <= x.end);
    if (!r) throw invalid('ip', `${req.ip} is not in any IP range of L3 network ${l3.name}`);
    if (isReserved(ip, r, reserved)) throw invalid('ip', `${req.ip} is reserved on L3 network ${l3.name} (network, broadcast, gateway or a reserved range)`);
    if (await store.claim(ns, req.ip, req.owner)) return allocation(r, ip, req);
    const holder = (await store.claims(ns)).find((c) => c.key === req.ip)?.owner;
    throw new TStackError('CONFLICT', `${req.ip} on L3 network ${l3.name} is already in use${holder ? ` by ${holder}` : ''}`, { field: 'ip', ip: req.ip, owner: holder });
  }

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
    if (await store.claim(ns, intToIp(c.ip), req.owner)) return allocation(c.r, c.ip, req);
  }
  throw new TStackError('CAPACITY_EXCEEDED', `L3 network ${l3.name} (${l3.uuid}) has no free IP address: all ${total} usable addresses of its ${ranges.length} range(s) are in use`, {
    l3NetworkUuid: l3.uuid,
    usable: total,
  });
}

/** Give an address back (only if `owner` holds it, when given). Idempotent. */
export async function releaseIp(store: InventoryStore, l3NetworkUuid: string, ip: string, owner?: string): Promise<void> {
  await store.release(ipNamespace(l3NetworkUuid), ip, owner);
}

/** Give back every address `owner` holds on an L3 (a rollback that never learnt which one). */
export async function releaseIpsOf(store: InventoryStore, l3NetworkUuid: string, owner: string): Promise<void> {
  const ns = ipNamespace(l3NetworkUuid);
  for (const c of await store.claims(ns)) if (c.owner === owner) await store.release(ns, c.key, owner);
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
