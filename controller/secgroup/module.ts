// The security-group controller module: the REST handlers, and one reconcile area 'secgroup'
// keyed by host uuid whose apply sends the host's complete desired firewall to its kvmagent.
// What marks a host:
//   - any change of a security group or a VM NIC (rules, members, member addresses): every
//     Connected host (a remote group's members may sit anywhere; apply is cheap and idempotent);
//   - a VM placed or moved: its host and its previous host, while some group has a member NIC
//     (a firewall holds member NICs only);
//   - a host (re)connecting: that host (an agent restart flushed nothing, but a reboot did).
// The queue's periodic pass re-applies every Connected host, which repairs drift (a hand-run
// `iptables -F`, a lost set) and retries hosts that failed.
import { logger } from '../../shared/log.js';
import { SecurityGroupApply } from '../../shared/protocol/secgroup.js';
import type { InventoryStore, Resource } from '../store/types.js';
import type { AgentClient } from '../agent-client/client.js';
import type { ControllerContext } from '../context.js';
import { agentOf } from '../cloud/common.js';
import { registerSecurityGroupApi, forgetNic } from './api.js';
import { hostFirewall, loadSnapshot } from './desired.js';

import type { ReconcileArea } from '../reconcile/queue.js';

const log = logger('secgroup');
export const AREA = 'secgroup';

/** The part of the controller's reconcile queue this module uses (controller/reconcile/queue.ts). */
export interface ReconcileRegistry {
  register(area: ReconcileArea): void;
  mark(area: string, key: string): void;
}

/** What the module uses of the controller's context (controller/context.ts). */
export type SecgroupServices = Pick<ControllerContext, 'store' | 'agentClient' | 'bus' | 'registry'> & { reconcile?: ReconcileRegistry };

async function connectedHosts(store: InventoryStore): Promise<Resource[]> {
  return (await store.list({ kind: 'host', filters: [{ field: 'status', op: '=', value: 'Connected' }] })).items;
}

type Group = Resource & { vmNicUuids?: string[] };

/** How long a listing of the groups answers inSomeGroup at most (a backstop: any group event drops it at once). */
const GROUPS_TTL_MS = 5_000;

/**
 * Whether a NIC is in some group, from one listing of the groups shared by the NIC events that
 * follow (issue 19: a listing per NIC event, with no group at all, was ~1 % of the controller's
 * time during 2,000 creates). Every security-group event, this controller's or relayed from
 * another, drops the listing, and that same event marks every host anyway.
 */
function groupMembership(store: InventoryStore): { inSomeGroup(nicUuid: string): Promise<boolean>; anyMember(): Promise<boolean>; drop(): void } {
  let groups: { at: number; list: Promise<Group[]> } | undefined;
  const list = (): Promise<Group[]> => {
    if (!groups || Date.now() - groups.at > GROUPS_TTL_MS) {
      const mine = { at: Date.now(), list: store.list<Group>({ kind: 'security-group' }).then((r) => r.items) };
      groups = mine;
      mine.list.catch(() => {
        if (groups === mine) groups = undefined;
      });
    }
    return groups.list;
  };
  return {
    async inSomeGroup(nicUuid) {
      return (await list()).some((g) => (g.vmNicUuids ?? []).includes(nicUuid));
    },
    async anyMember() {
      return (await list()).some((g) => (g.vmNicUuids ?? []).length > 0);
    },
    drop() {
      groups = undefined;
    },
  };
}

/** Send one host its whole firewall (no-op for a host that is gone or not connected). */
export async function applyHost(store: InventoryStore, agentClient: AgentClient, hostUuid: string): Promise<void> {
  const host = await store.get(hostUuid);
  if (!host || host.kind !== 'host' || host.status !== 'Connected') return;
  const firewall = hostFirewall(hostUuid, await loadSnapshot(store, hostUuid));
  const ep = agentOf(host, 'kvmagent');
  const r = await agentClient.call(SecurityGroupApply, { ...ep, refresh: async () => agentOf((await store.get(hostUuid))!, 'kvmagent') }, { firewall });
  log.debug({ host: hostUuid, nics: r.nics, rules: r.rules, ms: r.durationMs }, 'security groups applied');
}

export function installSecgroups(s: SecgroupServices): { stop(): void } {
  registerSecurityGroupApi(s.registry);
  const rq = s.reconcile;
  if (rq) {
    rq.register({
      name: AREA,
      keys: async () => (await connectedHosts(s.store)).map((h) => h.uuid),
      apply: (hostUuid) => applyHost(s.store, s.agentClient, hostUuid),
      hostOf: (hostUuid) => hostUuid,
      keysOn: async (hosts) => (await connectedHosts(s.store)).map((h) => h.uuid).filter((u) => hosts.has(u)),
    });
  } else {
    log.warn('no reconcile queue on this controller: security-group changes do not reach hosts');
  }
  const mark = (h: string): void => rq?.mark(AREA, h);
  const markAll = async (): Promise<void> => {
    if (rq) for (const h of await connectedHosts(s.store)) mark(h.uuid);
  };
  const membership = groupMembership(s.store);
  const connectSeen = new Set<string>();
  /** Each VM's host and last host as last marked. */
  const placed = new Map<string, string>();
  const off = s.bus.subscribe((e) => {
    if (e.type !== 'resource.created' && e.type !== 'resource.updated' && e.type !== 'resource.deleted') return;
    const r = e.resource;
    const fail = (err: unknown): void => log.warn({ err: (err as Error).message, kind: e.kind, uuid: e.uuid }, 'marking hosts for security groups failed');
    if (e.kind === 'security-group') membership.drop();
    if (e.kind === 'security-group' || (e.kind === 'l3-network' && e.type === 'resource.updated')) return markAll().catch(fail);
    if (e.kind === 'vm-nic') {
      // a NIC's address and host matter to every host only while it is in a group (remote-group
      // ipsets); joining or leaving a group updates the group, which marks every host (issue 19:
      // marking 1,000 hosts for every NIC a create made was most of the controller's work)
      if (e.type === 'resource.deleted') return forgetNic(s.store, e.uuid).catch(fail);
      return membership
        .inSomeGroup(e.uuid)
        .then((yes) => (yes ? markAll() : undefined))
        .catch(fail);
    }
    if (e.kind === 'vm-instance') {
      // a host's firewall takes only where the VMs are (loadSnapshot): a state change such as
      // Starting → Running marked the host again (issue 19: 1.4 applies per VM created)
      const at = `${String(r.hostUuid ?? '')} ${String(r.lastHostUuid ?? '')}`;
      if (e.type === 'resource.deleted') placed.delete(e.uuid);
      else if (placed.get(e.uuid) === at) return;
      else placed.set(e.uuid, at);
      const hosts = [r.hostUuid, r.lastHostUuid].filter((h): h is string => typeof h === 'string' && h !== '');
      // and only of member NICs (hostFirewall): while no group has a member, where a VM is changes
      // no host's firewall (issue 19: one secgroup/apply per host a create burst touched, and its
      // new connection, with no group in use). A member joining marks every host (the group's
      // event), and that event drops the listing this answer came from.
      if (hosts.length === 0) return;
      return membership
        .anyMember()
        .then((yes) => {
          if (yes) for (const h of hosts) mark(h);
        })
        .catch(fail);
    }
    // once per (re)connection, not at every heartbeat update
    const k = `${e.uuid}:${String(r.lastConnectDate ?? '')}`;
    if (e.kind === 'host' && r.status === 'Connected' && !connectSeen.has(k)) {
      connectSeen.add(k);
      mark(e.uuid);
    }
    return;
  });
  return { stop: off };
}

/** As a controller module (controller/main.ts ControllerModule shape). */
export function secgroupModule(): { name: string; install(s: SecgroupServices): void; stop(): Promise<void> } {
  let m: { stop(): void } | undefined;
  return {
    name: 'secgroups',
    install: (s) => {
      m = installSecgroups(s);
    },
    stop: async () => m?.stop(),
  };
}
