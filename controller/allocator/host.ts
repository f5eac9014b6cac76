// Host allocator. A pure part decides from a snapshot (filterHosts / rankHosts), an impure
// part gathers the snapshot from the store and reserves the capacity (allocateHost).
//
// A host is eligible when: host state Enabled and status Connected; its cluster and zone are
// Enabled; the cluster's hypervisor matches; the cluster has the required primary storage
// attached (a given one, or any) and every required L2 network attached; it is not excluded;
// it matches the host/cluster/zone hints; and free CPU / memory cover the request:
//   free cpu    = totalCpu    × cpuOvercommit    − reserved cpu
//   free memory = totalMemory × memoryOvercommit − reservedMemoryPerHost − reserved memory
// A refusal names every host and why it was rejected (no bare "no host found").
// Candidates are ranked from a snapshot of the hosts (a few seconds old at most) and this
// process's view of their reservations (capacity.ts); the chosen host is read again from the
// store and re-checked before its capacity is claimed, and a refusal is always decided on
// fresh reads (issue 19: reading 1,000 hosts and their reservations per VM made creates
// quadratic).
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { attachedTo } from '../model/attachments.js';
import { allocatorQueues, cachedUsage, capacityNamespace, hold, jitter, knownUsage, reserve, reserved, unreserve } from './capacity.js';

export type HostStrategy = 'least-used' | 'random' | 'first-fit';

export interface HostRequest {
  cpuNum: number;
  /** bytes */
  memorySize: number;
  /** The root volume's primary storage, if already chosen: the host's cluster must have it. */
  primaryStorageUuid?: string;
  /** L2 networks of the VM's L3 networks: all must be attached to the host's cluster. */
  l2NetworkUuids?: string[];
  hostUuid?: string;
  clusterUuid?: string;
  zoneUuid?: string;
  avoidHostUuids?: string[];
  /** Hosts excluded with the reason a refusal shows (affinity groups). */
  excluded?: Record<string, string>;
  hypervisorType?: string;
  strategy?: HostStrategy;
  /**
   * Read the reservations from the store, not this process's recent view: a flow resumed from
   * another controller may already hold one that this view has not seen.
   */
  fromStore?: boolean;
}

export interface HostPolicy {
  /** vCPUs per physical CPU thread (ZStack default 10). */
  cpuOvercommit: number;
  /** memory over-commit (default 1.0: none). */
  memoryOvercommit: number;
  /** bytes kept for the host itself. */
  reservedMemoryPerHost: number;
}

export const DEFAULT_HOST_POLICY: HostPolicy = { cpuOvercommit: 10, memoryOvercommit: 1, reservedMemoryPerHost: 0 };

export interface HostCandidate {
  host: Resource;
  cluster?: Resource;
  zone?: Resource;
  usedCpu: number;
  usedMemory: number;
  primaryStorageUuids: string[];
  l2NetworkUuids: string[];
  /** Consumers holding a reservation on this host. */
  consumers?: string[];
}

export interface Rejection {
  hostUuid: string;
  name: string;
  reason: string;
}

export interface HostFit {
  candidate: HostCandidate;
  freeCpu: number;
  freeMemory: number;
}

const GiB = 1024 ** 3;
const fmtBytes = (n: number): string => (Math.abs(n) >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`);

export function freeOf(c: HostCandidate, p: HostPolicy): { freeCpu: number; freeMemory: number } {
  const totalCpu = Number(c.host.totalCpu ?? 0);
  const totalMemory = Number(c.host.totalMemory ?? 0);
  return {
    freeCpu: Math.floor(totalCpu * p.cpuOvercommit) - c.usedCpu,
    freeMemory: Math.floor(totalMemory * p.memoryOvercommit) - p.reservedMemoryPerHost - c.usedMemory,
  };
}

/** Why this host cannot take the request, or undefined if it can. */
export function rejectReason(c: HostCandidate, req: HostRequest, p: HostPolicy): string | undefined {
  const h = c.host;
  if (req.hostUuid && h.uuid !== req.hostUuid) return 'not the requested host';
  if (req.avoidHostUuids?.includes(h.uuid)) return 'excluded';
  if (req.excluded?.[h.uuid]) return req.excluded[h.uuid];
  if (req.clusterUuid && h.parentUuid !== req.clusterUuid) return 'not in the requested cluster';
  if (req.zoneUuid && (c.cluster?.parentUuid ?? h.zoneUuid) !== req.zoneUuid) return 'not in the requested zone';
  if (h.state !== 'Enabled') return `host is ${String(h.state)}`;
  if (h.status !== 'Connected') return `host is ${String(h.status ?? 'not connected')}`;
  if (!c.cluster) return 'its cluster is missing';
  if (c.cluster.state !== 'Enabled') return `cluster ${c.cluster.name} is ${String(c.cluster.state)}`;
  if (c.zone && c.zone.state !== 'Enabled') return `zone ${c.zone.name} is ${String(c.zone.state)}`;
  if (req.hypervisorType && c.cluster.hypervisorType !== req.hypervisorType) return `cluster hypervisor is ${String(c.cluster.hypervisorType)}, not ${req.hypervisorType}`;
  if (req.primaryStorageUuid ? !c.primaryStorageUuids.includes(req.primaryStorageUuid) : c.primaryStorageUuids.length === 0) {
    return req.primaryStorageUuid ? `primary storage ${req.primaryStorageUuid} is not attached to cluster ${c.cluster.name}` : `cluster ${c.cluster.name} has no primary storage attached`;
  }
  const missing = (req.l2NetworkUuids ?? []).filter((l2) => !c.l2NetworkUuids.includes(l2));
  if (missing.length) return `L2 network(s) ${missing.join(', ')} not attached to cluster ${c.cluster.name}`;
  const { freeCpu, freeMemory } = freeOf(c, p);
  if (freeCpu < req.cpuNum) return `not enough CPU: ${freeCpu} vCPU free (${String(h.totalCpu ?? 0)} × ${p.cpuOvercommit} − ${c.usedCpu} used), ${req.cpuNum} needed`;
  if (freeMemory < req.memorySize) return `not enough memory: ${fmtBytes(freeMemory)} free, ${fmtBytes(req.memorySize)} needed`;
  return undefined;
}

/** Eligible hosts best-first per strategy, and every rejected host with its reason. */
export function rankHosts(cands: HostCandidate[], req: HostRequest, p: HostPolicy = DEFAULT_HOST_POLICY, rand: () => number = Math.random): { ranked: HostFit[]; rejected: Rejection[] } {
  const ranked: HostFit[] = [];
  const rejected: Rejection[] = [];
  for (const c of cands) {
    const reason = rejectReason(c, req, p);
    if (reason) rejected.push({ hostUuid: c.host.uuid, name: c.host.name, reason });
    else ranked.push({ candidate: c, ...freeOf(c, p) });
  }
  const byAge = (a: HostFit, b: HostFit): number => String(a.candidate.host.createDate).localeCompare(String(b.candidate.host.createDate)) || a.candidate.host.uuid.localeCompare(b.candidate.host.uuid);
  switch (req.strategy ?? 'least-used') {
    case 'first-fit':
      ranked.sort(byAge);
      break;
    case 'random':
      for (let i = ranked.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [ranked[i], ranked[j]] = [ranked[j]!, ranked[i]!];
      }
      break;
    case 'least-used': {
      // most free memory share first, then most free CPU, then oldest
      const share = (f: HostFit): number => f.freeMemory / Math.max(1, Number(f.candidate.host.totalMemory ?? 1) * p.memoryOvercommit);
      ranked.sort((a, b) => share(b) - share(a) || b.freeCpu - a.freeCpu || byAge(a, b));
      break;
    }
  }
  return { ranked, rejected };
}

export function noHostError(req: HostRequest, rejected: Rejection[]): TStackError {
  const list = rejected.slice(0, 20).map((r) => `${r.name} (${r.hostUuid}): ${r.reason}`);
  const more = rejected.length > 20 ? `; and ${rejected.length - 20} more` : '';
  const why = rejected.length === 0 ? 'there are no hosts' + (req.clusterUuid ? ' in the cluster' : req.zoneUuid ? ' in the zone' : '') : list.join('; ') + more;
  return new TStackError('CAPACITY_EXCEEDED', `no host can run ${req.cpuNum} vCPU / ${fmtBytes(req.memorySize)}: ${why}`, { rejected: rejected.slice(0, 100) });
}

/** Snapshots of candidates without their usage, per store and hint (see allocateHost). */
const SNAPSHOT_MAX_AGE_MS = 3_000;
const snapshots = new WeakMap<InventoryStore, Map<string, { at: number; cands: Promise<Array<{ c: HostCandidate; ns: string }>> }>>();

async function snapshotCandidates(store: InventoryStore, req: HostRequest, consumer: string): Promise<{ cands: HostCandidate[]; held: boolean }> {
  const key = req.clusterUuid ? `c:${req.clusterUuid}` : req.zoneUuid ? `z:${req.zoneUuid}` : '*';
  let m = snapshots.get(store);
  if (!m) snapshots.set(store, (m = new Map()));
  let s = m.get(key);
  if (!s || Date.now() - s.at > SNAPSHOT_MAX_AGE_MS) {
    const wide: HostRequest = { cpuNum: req.cpuNum, memorySize: req.memorySize };
    if (req.clusterUuid) wide.clusterUuid = req.clusterUuid;
    else if (req.zoneUuid) wide.zoneUuid = req.zoneUuid;
    // each host's namespace string made once (a new string per lookup was hashed each time)
    s = { at: Date.now(), cands: hostCandidates(store, wide, { usage: false }).then((cs) => cs.map((c) => ({ c, ns: capacityNamespace('host', c.host.uuid) }))) };
    m.set(key, s);
    s.cands.catch(() => m.delete(key));
  }
  const cands = await s.cands;
  // usage from this process's view of the reservations (no store read while it is recent);
  // what is in memory is taken synchronously, only the rest awaited
  let held = false;
  const now = Date.now();
  const out: HostCandidate[] = new Array<HostCandidate>(cands.length);
  const reads: Array<Promise<void>> = [];
  for (let i = 0; i < cands.length; i++) {
    const { c, ns } = cands[i]!;
    const u = cachedUsage(store, ns, now);
    if (u) {
      if (u.consumers.has(consumer)) held = true;
      out[i] = { ...c, usedCpu: u.total.cpu ?? 0, usedMemory: u.total.memory ?? 0 };
      continue;
    }
    reads.push(
      knownUsage(store, ns).then((k) => {
        if (k.holds(consumer)) held = true;
        out[i] = { ...c, usedCpu: k.total.cpu ?? 0, usedMemory: k.total.memory ?? 0 };
      }),
    );
  }
  await Promise.all(reads);
  return { cands: out, held };
}

/** Gather candidates from the store (hosts narrowed by the hints). */
export async function hostCandidates(store: InventoryStore, req: HostRequest, o: { usage?: boolean } = {}): Promise<HostCandidate[]> {
  let hosts: Resource[];
  if (req.hostUuid) {
    const h = await store.get(req.hostUuid);
    hosts = h && h.kind === 'host' ? [h] : [];
  } else if (req.clusterUuid) {
    hosts = await store.byParent('host', req.clusterUuid);
  } else if (req.zoneUuid) {
    hosts = (await store.list({ kind: 'host', filters: [{ field: 'zoneUuid', op: '=', value: req.zoneUuid }] })).items;
  } else {
    hosts = (await store.list({ kind: 'host' })).items;
  }
  const cache = new Map<string, Promise<Resource | undefined>>();
  const get = (u: unknown): Promise<Resource | undefined> => {
    if (typeof u !== 'string') return Promise.resolve(undefined);
    if (!cache.has(u)) cache.set(u, store.get(u));
    return cache.get(u)!;
  };
  const attachCache = new Map<string, Promise<[string[], string[]]>>();
  const attachments = (clusterUuid: string): Promise<[string[], string[]]> => {
    if (!attachCache.has(clusterUuid)) attachCache.set(clusterUuid, Promise.all([attachedTo(store, 'cluster-primary-storage', clusterUuid), attachedTo(store, 'cluster-l2-network', clusterUuid)]));
    return attachCache.get(clusterUuid)!;
  };
  return Promise.all(
    hosts.map(async (host): Promise<HostCandidate> => {
      const cluster = await get(host.parentUuid);
      const zone = await get(cluster?.parentUuid ?? host.zoneUuid);
      const [ps, l2] = cluster ? await attachments(cluster.uuid) : [[], []];
      const r = o.usage === false ? { total: {} as Record<string, number>, consumers: [] } : await reserved(store, capacityNamespace('host', host.uuid));
      return { host, ...(cluster ? { cluster } : {}), ...(zone ? { zone } : {}), usedCpu: r.total.cpu ?? 0, usedMemory: r.total.memory ?? 0, primaryStorageUuids: ps, l2NetworkUuids: l2, consumers: r.consumers };
    }),
  );
}

export interface HostAllocation {
  hostUuid: string;
  clusterUuid: string;
  zoneUuid: string;
  host: Resource;
  /** Other eligible hosts, best first (for a retry elsewhere). */
  alternatives: string[];
}

/**
 * Choose a host and reserve cpuNum/memorySize on it for `consumer` (the VM uuid). Release
 * with releaseHost() (flow rollback, VM stop/destroy, migration source). Idempotent per consumer.
 */
export async function allocateHost(store: InventoryStore, req: HostRequest, consumer: string, policy: Partial<HostPolicy> = {}): Promise<HostAllocation> {
  const p = { ...DEFAULT_HOST_POLICY, ...policy };
  return allocatorQueues.run('host-allocator', async () => {
    if (!req.hostUuid && !req.fromStore) {
      const got = await fromSnapshot(store, req, consumer, p);
      if (got) return got;
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      const cands = await hostCandidates(store, req);
      const held = cands.find((c) => c.consumers?.includes(consumer));
      if (held) {
        // a resumed/retried flow: the consumer already has its reservation here
        return { hostUuid: held.host.uuid, clusterUuid: String(held.host.parentUuid), zoneUuid: String(held.cluster?.parentUuid ?? held.host.zoneUuid), host: held.host, alternatives: [] };
      }
      const { ranked, rejected } = rankHosts(cands, req, p);
      if (ranked.length === 0) throw noHostError(req, rejected);
      let raced = false;
      for (const fit of ranked) {
        const h = fit.candidate.host;
        const res = await reserve(store, capacityNamespace('host', h.uuid), consumer, { cpu: req.cpuNum, memory: req.memorySize }, (after) => {
          const cand = { ...fit.candidate, usedCpu: after.cpu ?? 0, usedMemory: after.memory ?? 0 };
          const f = freeOf(cand, p);
          return f.freeCpu >= 0 && f.freeMemory >= 0;
        });
        if (res === 'reserved') {
          return {
            hostUuid: h.uuid,
            clusterUuid: String(h.parentUuid),
            zoneUuid: String(fit.candidate.cluster?.parentUuid ?? h.zoneUuid),
            host: h,
            alternatives: ranked.filter((x) => x !== fit).map((x) => x.candidate.host.uuid),
          };
        }
        if (res === 'race') raced = true;
      }
      if (!raced) break;
      await jitter(attempt);
    }
    const { rejected } = rankHosts(await hostCandidates(store, req), req, p);
    throw noHostError(req, rejected);
  });
}

const allocationOf = (h: Resource, cluster: Resource | undefined, alternatives: string[]): HostAllocation => ({
  hostUuid: h.uuid,
  clusterUuid: String(h.parentUuid),
  zoneUuid: String(cluster?.parentUuid ?? h.zoneUuid),
  host: h,
  alternatives,
});

/**
 * The fast path: rank the snapshot, re-read the best host (and its cluster, zone, attachments
 * and reservations) and re-check it, then reserve. Undefined when the snapshot offers nothing
 * that still fits: the caller decides on fresh reads.
 */
async function fromSnapshot(store: InventoryStore, req: HostRequest, consumer: string, p: HostPolicy): Promise<HostAllocation | undefined> {
  const { cands, held } = await snapshotCandidates(store, req, consumer);
  if (held) return undefined; // a resumed flow: the fresh path answers it
  const { ranked } = rankHosts(cands, req, p);
  for (const [i, fit] of ranked.slice(0, 8).entries()) {
    const [fresh] = await hostCandidates(store, { ...req, hostUuid: fit.candidate.host.uuid });
    if (!fresh || rejectReason(fresh, req, p)) continue;
    const res = await reserve(store, capacityNamespace('host', fresh.host.uuid), consumer, { cpu: req.cpuNum, memory: req.memorySize }, (after) => {
      const f = freeOf({ ...fresh, usedCpu: after.cpu ?? 0, usedMemory: after.memory ?? 0 }, p);
      return f.freeCpu >= 0 && f.freeMemory >= 0;
    });
    if (res === 'reserved') return allocationOf(fresh.host, fresh.cluster, ranked.filter((_, j) => j !== i).map((x) => x.candidate.host.uuid));
  }
  return undefined;
}

export async function releaseHost(store: InventoryStore, hostUuid: string, consumer: string): Promise<void> {
  await unreserve(store, capacityNamespace('host', hostUuid), consumer);
}

/**
 * Record what a VM found running on a host uses, without a fit check (it runs there already:
 * the allocator must count it). Idempotent per consumer.
 */
export async function holdHost(store: InventoryStore, hostUuid: string, consumer: string, amounts: { cpu: number; memory: number }): Promise<void> {
  await hold(store, capacityNamespace('host', hostUuid), consumer, amounts);
}

/** Capacity view of a host for the API: totals, reserved and available (after over-commit). */
export async function hostCapacity(store: InventoryStore, host: Resource, policy: Partial<HostPolicy> = {}): Promise<Record<string, number>> {
  const p = { ...DEFAULT_HOST_POLICY, ...policy };
  const used = (await reserved(store, capacityNamespace('host', host.uuid))).total;
  const c: HostCandidate = { host, usedCpu: used.cpu ?? 0, usedMemory: used.memory ?? 0, primaryStorageUuids: [], l2NetworkUuids: [] };
  const f = freeOf(c, p);
  return { totalCpu: Number(host.totalCpu ?? 0), usedCpu: c.usedCpu, availableCpu: f.freeCpu, totalMemory: Number(host.totalMemory ?? 0), usedMemory: c.usedMemory, availableMemory: f.freeMemory };
}
