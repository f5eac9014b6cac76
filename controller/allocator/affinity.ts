// Affinity groups (type host): which hosts a VM must or should avoid because another member of
// its group runs there. Pure; the caller gathers the members and their hosts from the store.
//   antiHard: a host with a member is excluded, and a refusal names the group and those hosts;
//   antiSoft: such hosts are only avoided while another host can take the VM.
// A Disabled group constrains nothing (ZStack's rule).
import type { HostRequest } from './host.js';

export const AFFINITY_POLICIES = ['antiSoft', 'antiHard'] as const;
export type AffinityPolicy = (typeof AFFINITY_POLICIES)[number];

export interface AffinityGroupView {
  uuid: string;
  name: string;
  policy: AffinityPolicy;
  state: string;
}

export interface Member {
  vmUuid: string;
  vmName: string;
  /** Where the member runs (or holds its reservation); undefined when stopped. */
  hostUuid?: string;
}

export interface AffinityPlan {
  /** Requests to try in order: first with the group's exclusions, then (antiSoft only) without. */
  attempts: HostRequest[];
}

/** Hosts a VM of the group must/should avoid, with the reason shown in a refusal (the VM itself does not count). */
export function affinityExclusions(group: AffinityGroupView, members: Member[], vmUuid: string): Record<string, string> {
  if (group.state !== 'Enabled') return {};
  const byHost = new Map<string, string[]>();
  for (const m of members) {
    if (m.vmUuid === vmUuid || !m.hostUuid) continue;
    byHost.set(m.hostUuid, [...(byHost.get(m.hostUuid) ?? []), m.vmName]);
  }
  const out: Record<string, string> = {};
  for (const [h, names] of byHost) out[h] = `affinity group ${group.name} (${group.policy}) already has ${names.join(', ')} on this host`;
  return out;
}

/** The allocation attempts for a VM of the group (hard: one; soft: prefer, then fall back). */
export function affinityPlan(req: HostRequest, group: AffinityGroupView | undefined, members: Member[], vmUuid: string): AffinityPlan {
  if (!group) return { attempts: [req] };
  const ex = affinityExclusions(group, members, vmUuid);
  if (Object.keys(ex).length === 0) return { attempts: [req] };
  const constrained: HostRequest = { ...req, excluded: { ...(req.excluded ?? {}), ...ex } };
  return { attempts: group.policy === 'antiHard' ? [constrained] : [constrained, req] };
}

/** Order hosts for a soft group: hosts without a member first (stable otherwise). */
export function preferFree<T extends { uuid: string }>(hosts: T[], excluded: Record<string, string>): T[] {
  return [...hosts.filter((h) => !excluded[h.uuid]), ...hosts.filter((h) => excluded[h.uuid])];
}
