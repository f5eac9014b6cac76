// Host allocator. A pure part (host-rank.ts: rejectReason / rankHosts) decides from a snapshot, an impure
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
// process's view of their reservations (capacity.ts), kept in ranking order between decisions
// (host-snapshot.ts); the chosen host is read again from the
// store and re-checked before its capacity is claimed, and a refusal is always decided on
// fresh reads (issue 19: reading 1,000 hosts and their reservations per VM made creates
// quadratic).
import type { InventoryStore, Resource } from '../store/types.js';
import { attachedTo } from '../model/attachments.js';
import { allocatorQueues, capacityNamespace, hold, jitter, reserve, reserved, unreserve } from './capacity.js';
import { DEFAULT_HOST_POLICY, freeOf, noHostError, rankHosts, rejectReason, type HostCandidate, type HostPolicy, type HostRequest } from './host-rank.js';
import { hostIndex } from './host-snapshot.js';

export * from './host-rank.js';
export { forgetHostIndexes } from './host-snapshot.js';

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
  /** Other eligible hosts, best first (for a retry elsewhere): from the snapshot, the next few only. */
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

/** How many of the snapshot's best hosts the fast path re-reads and tries before the fresh path. */
const SNAPSHOT_TRIES = 8;

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
  const index = await hostIndex(store, req, p, (wide) => hostCandidates(store, wide, { usage: false }));
  if (index.holds(consumer)) return undefined; // a resumed flow: the fresh path answers it
  const ranked = index.best(req, SNAPSHOT_TRIES);
  for (const [i, fit] of ranked.entries()) {
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
