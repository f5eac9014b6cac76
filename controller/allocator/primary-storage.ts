// Primary storage allocator: a storage attached to the host's cluster (or a given one), Enabled
// and Connected, whose virtual free capacity covers the volume:
//   free = totalCapacity × overProvisioningRatio − reserved (sum of volume sizes placed on it)
// and, when the agent reported it, whose physical free space is not exhausted
// (availablePhysicalCapacity ≥ size × physicalThreshold; thin images grow later).
// Reservations are store claims (ps-capacity:<psUuid>, key = volume uuid) like host capacity.
// LocalStorage note: capacity is tracked per storage, not per host (a local PS is one
// resource per cluster here); a per-host split is future work.
import { TStackError } from '../../shared/errors.js';
import type { ClaimWrite, InventoryStore, Resource } from '../store/types.js';
import { attachedTo } from '../model/attachments.js';
import { allocatorQueues, batchClaimer, capacityNamespace, jitter, knownUsage, reserve, reserved, unreserve } from './capacity.js';

export interface PsRequest {
  /** bytes (virtual size of the volume) */
  size: number;
  /** Candidates: the primary storages attached to this cluster. */
  clusterUuid?: string;
  /** Or exactly this one. */
  primaryStorageUuid?: string;
  /** Limit to these types (e.g. the image's backup storage only works with some). */
  types?: string[];
  strategy?: 'least-used' | 'first-fit' | 'random';
}

export interface PsPolicy {
  /** Virtual over-provisioning of thin volumes (ZStack default 1.0). */
  overProvisioningRatio: number;
  /** Fraction of the size that must physically be free (default 0: not checked). */
  physicalThreshold: number;
}

export const DEFAULT_PS_POLICY: PsPolicy = { overProvisioningRatio: 1, physicalThreshold: 0 };

export interface PsCandidate {
  ps: Resource;
  used: number;
  consumers?: string[];
}

const GiB = 1024 ** 3;
const fmt = (n: number): string => `${(n / GiB).toFixed(2)} GiB`;

export function psFree(c: PsCandidate, p: PsPolicy): number {
  return Math.floor(Number(c.ps.totalCapacity ?? 0) * p.overProvisioningRatio) - c.used;
}

export function psRejectReason(c: PsCandidate, req: PsRequest, p: PsPolicy): string | undefined {
  const ps = c.ps;
  if (ps.state !== 'Enabled') return `it is ${String(ps.state)}`;
  if (ps.status !== 'Connected') return `it is ${String(ps.status ?? 'not connected')}`;
  if (req.types && !req.types.includes(String(ps.type))) return `type ${String(ps.type)} is not one of ${req.types.join(', ')}`;
  const free = psFree(c, p);
  if (free < req.size) return `not enough capacity: ${fmt(free)} free (× ${p.overProvisioningRatio} over-provisioning), ${fmt(req.size)} needed`;
  if (p.physicalThreshold > 0 && ps.availablePhysicalCapacity !== undefined && Number(ps.availablePhysicalCapacity) < req.size * p.physicalThreshold) {
    return `not enough physical space: ${fmt(Number(ps.availablePhysicalCapacity))} free`;
  }
  return undefined;
}

export function rankPrimaryStorage(cands: PsCandidate[], req: PsRequest, p: PsPolicy = DEFAULT_PS_POLICY, rand: () => number = Math.random): { ranked: PsCandidate[]; rejected: Array<{ primaryStorageUuid: string; name: string; reason: string }> } {
  const ranked: PsCandidate[] = [];
  const rejected: Array<{ primaryStorageUuid: string; name: string; reason: string }> = [];
  for (const c of cands) {
    const reason = psRejectReason(c, req, p);
    if (reason) rejected.push({ primaryStorageUuid: c.ps.uuid, name: c.ps.name, reason });
    else ranked.push(c);
  }
  const byAge = (a: PsCandidate, b: PsCandidate): number => String(a.ps.createDate).localeCompare(String(b.ps.createDate)) || a.ps.uuid.localeCompare(b.ps.uuid);
  if (req.strategy === 'first-fit') ranked.sort(byAge);
  else if (req.strategy === 'random') {
    for (let i = ranked.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [ranked[i], ranked[j]] = [ranked[j]!, ranked[i]!];
    }
  } else ranked.sort((a, b) => psFree(b, p) - psFree(a, p) || byAge(a, b));
  return { ranked, rejected };
}

/**
 * `fresh`: usage read from the store; else from this process's view (capacity.ts): a local
 * storage's namespace holds every volume, reading it per allocation made creates quadratic.
 * `consumer`: the candidate it already holds a reservation on is marked `held`.
 */
async function psCandidates(store: InventoryStore, req: PsRequest, o: { fresh?: boolean; consumer?: string } = {}): Promise<Array<PsCandidate & { held?: boolean }>> {
  let uuids: string[];
  if (req.primaryStorageUuid) uuids = [req.primaryStorageUuid];
  else if (req.clusterUuid) uuids = await attachedTo(store, 'cluster-primary-storage', req.clusterUuid);
  else throw new TStackError('INVALID_ARGUMENT', 'primary storage allocation needs clusterUuid or primaryStorageUuid', { field: 'clusterUuid' });
  const out: Array<PsCandidate & { held?: boolean }> = [];
  for (const u of uuids) {
    const ps = await store.get(u);
    if (!ps || ps.kind !== 'primary-storage') continue;
    if (o.fresh) {
      const r = await reserved(store, capacityNamespace('ps', u));
      out.push({ ps, used: r.total.size ?? 0, consumers: r.consumers, held: o.consumer !== undefined && r.consumers.includes(o.consumer) });
    } else {
      const r = await knownUsage(store, capacityNamespace('ps', u));
      out.push({ ps, used: r.total.size ?? 0, held: o.consumer !== undefined && r.holds(o.consumer) });
    }
  }
  return out;
}

function noPsError(req: PsRequest, rejected: Array<{ primaryStorageUuid: string; name: string; reason: string }>): TStackError {
  const why = rejected.length === 0 ? (req.clusterUuid ? `cluster ${req.clusterUuid} has no primary storage attached` : `primary storage ${String(req.primaryStorageUuid)} does not exist`) : rejected.map((r) => `${r.name} (${r.primaryStorageUuid}): ${r.reason}`).join('; ');
  return new TStackError('CAPACITY_EXCEEDED', `no primary storage can hold ${fmt(req.size)}: ${why}`, { rejected });
}

/**
 * Writes a reservation's claim with the caller's writes in one batch (the volume's record),
 * told the storage it is on; throws claimRefused's CONFLICT when refused.
 */
export type PsCommit = (claim: ClaimWrite, ps: Resource) => Promise<unknown>;

/**
 * Choose a primary storage and reserve `size` on it for `consumer` (the volume uuid). Idempotent
 * per consumer (a consumer holding a reservation already gets it back without `commit`).
 */
export async function allocatePrimaryStorage(store: InventoryStore, req: PsRequest, consumer: string, policy: Partial<PsPolicy> = {}, commit?: PsCommit): Promise<{ primaryStorageUuid: string; primaryStorage: Resource }> {
  const p = { ...DEFAULT_PS_POLICY, ...policy };
  return allocatorQueues.run('ps-allocator', async () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      // the first attempt ranks from the view; a retry after a lost race reads the store
      const cands = await psCandidates(store, req, { fresh: attempt > 0, consumer });
      const held = cands.find((c) => c.held);
      if (held) return { primaryStorageUuid: held.ps.uuid, primaryStorage: held.ps };
      const { ranked, rejected } = rankPrimaryStorage(cands, req, p);
      if (ranked.length === 0 && attempt === 0) continue; // the view may be behind: decide on a fresh read
      if (ranked.length === 0) throw noPsError(req, rejected);
      let raced = false;
      for (const c of ranked) {
        const res = await reserve(store, capacityNamespace('ps', c.ps.uuid), consumer, { size: req.size }, (after) => psFree({ ps: c.ps, used: after.size ?? 0 }, p) >= 0, commit && batchClaimer((w) => commit(w, c.ps)));
        if (res === 'reserved') return { primaryStorageUuid: c.ps.uuid, primaryStorage: c.ps };
        if (res === 'race') raced = true;
      }
      if (!raced) break;
      await jitter(attempt);
    }
    throw noPsError(req, rankPrimaryStorage(await psCandidates(store, req, { fresh: true }), req, p).rejected);
  });
}

export async function releasePrimaryStorage(store: InventoryStore, primaryStorageUuid: string, consumer: string): Promise<void> {
  await unreserve(store, capacityNamespace('ps', primaryStorageUuid), consumer);
}

/** Capacity view for the API. */
export async function primaryStorageCapacity(store: InventoryStore, ps: Resource, policy: Partial<PsPolicy> = {}): Promise<{ totalCapacity: number; usedCapacity: number; availableCapacity: number }> {
  const p = { ...DEFAULT_PS_POLICY, ...policy };
  const used = (await reserved(store, capacityNamespace('ps', ps.uuid))).total.size ?? 0;
  return { totalCapacity: Number(ps.totalCapacity ?? 0), usedCapacity: used, availableCapacity: psFree({ ps, used }, p) };
}
