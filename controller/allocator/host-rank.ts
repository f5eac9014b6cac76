// The host allocator's pure part: the request and policy, the filters with their named
// refusals (rejectReason), the ranking (rankHosts) and the refusal error. The store side is
// host.ts; the incrementally kept ranking of the hosts is host-snapshot.ts.
import { TStackError } from '../../shared/errors.js';
import type { Resource } from '../store/types.js';

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
