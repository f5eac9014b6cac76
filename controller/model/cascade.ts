// Delete rules (white paper §2.1.1 "瀑布流架构" / §2.1.2 "删除": deleting a parent deletes its
// descendants), made safe for an operator: infrastructure children are deleted with their
// parent only when the caller asks for it (cascade), and user data in use (VMs, volumes,
// NICs holding IPs) always blocks the delete with a 409 that names the dependents.
//
// Each kind has rules; each rule finds dependents of one kind with a query and says what to do:
//   delete   always deleted with the target (attachments, IP ranges of an L3, NICs of a VM…)
//   cascade  refused unless {cascade: true}, then deleted recursively (clusters of a zone…)
//   block    always refused: in use (VMs on a host, volumes on a primary storage…)
//   detach   the dependent stays, a field is cleared (data volumes of an expunged VM)
// planDelete is free of side effects (it only reads through `lookup`) and is unit-tested on
// in-memory snapshots; executeDeletePlan applies a plan children-first, so a delete that was
// interrupted half-way is finished by running it again.
//
// Inventory only: agent-side effects (unmount a primary storage, delete volume files, stop an
// agent) belong to the flows of kinds whose deleteMode is 'async'; such flows call this last.
import { TStackError } from '../../shared/errors.js';
import type { Filter, InventoryStore, Resource } from '../store/types.js';

export type DepAction = 'delete' | 'cascade' | 'block' | 'detach';

export interface DepRule {
  kind: string;
  where: (target: Resource) => Filter[];
  action: DepAction;
  /** Plural human noun: 'clusters', 'running VMs'. */
  what: string;
  /** For 'block': what the operator should do. */
  hint?: string;
  /** For 'detach': the patch applied to the dependent. */
  patch?: Partial<Resource>;
}

const eq = (field: string, value: string): Filter => ({ field, op: '=', value });
const child = (kind: string, action: DepAction, what: string, hint?: string): DepRule => ({ kind, where: (t) => [eq('parentUuid', t.uuid)], action, what, ...(hint ? { hint } : {}) });

/** Kinds an account can own; an account with any of them cannot be deleted. */
const OWNED_KINDS = ['vm-instance', 'volume', 'volume-snapshot', 'image', 'vm-nic'];

export const deleteRules: Readonly<Record<string, DepRule[]>> = {
  zone: [
    { kind: 'vm-instance', where: (t) => [eq('zoneUuid', t.uuid)], action: 'block', what: 'VMs', hint: 'destroy and expunge them first' },
    { kind: 'baremetal-pxe-server', where: (t) => [eq('zoneUuid', t.uuid)], action: 'block', what: 'bare-metal PXE servers', hint: 'delete them first (their host stops serving)' },
    child('cluster', 'cascade', 'clusters'),
    child('l2-network', 'cascade', 'L2 networks'),
    child('primary-storage', 'cascade', 'primary storages'),
    child('zone-backup-storage', 'delete', 'backup storage attachments'),
  ],
  cluster: [
    { kind: 'vm-instance', where: (t) => [eq('clusterUuid', t.uuid)], action: 'block', what: 'VMs', hint: 'destroy and expunge them or migrate them to another cluster first' },
    child('host', 'cascade', 'hosts'),
    child('cluster-primary-storage', 'delete', 'primary storage attachments'),
    child('cluster-l2-network', 'delete', 'L2 network attachments'),
    { kind: 'baremetal-chassis', where: (t) => [eq('clusterUuid', t.uuid)], action: 'block', what: 'bare-metal chassis', hint: 'delete them first' },
  ],
  'baremetal-chassis': [{ kind: 'baremetal-instance', where: (t) => [eq('chassisUuid', t.uuid)], action: 'block', what: 'a bare-metal instance on it', hint: 'delete the instance first (it wipes the disk)' }],
  'baremetal-pxe-server': [{ kind: 'baremetal-instance', where: (t) => [eq('pxeServerUuid', t.uuid)], action: 'block', what: 'bare-metal instances it provisioned', hint: 'delete them first' }],
  host: [
    { kind: 'vm-instance', where: (t) => [eq('hostUuid', t.uuid)], action: 'block', what: 'VMs on it', hint: 'stop or migrate them first' },
    { kind: 'baremetal-pxe-server', where: (t) => [eq('hostUuid', t.uuid)], action: 'block', what: 'bare-metal PXE servers on it', hint: 'delete them first' },
  ],
  'primary-storage': [
    { kind: 'volume', where: (t) => [eq('primaryStorageUuid', t.uuid)], action: 'block', what: 'volumes', hint: 'delete them or migrate them to another primary storage first' },
    { kind: 'volume-snapshot', where: (t) => [eq('primaryStorageUuid', t.uuid)], action: 'block', what: 'volume snapshots', hint: 'delete them first' },
    // manual §7 (主存储 删除): detach it from every cluster first, or the delete is refused
    { kind: 'cluster-primary-storage', where: (t) => [eq('primaryStorageUuid', t.uuid)], action: 'cascade', what: 'clusters attached', hint: 'detach it from the clusters first' },
  ],
  'backup-storage': [
    { kind: 'image', where: (t) => [eq('backupStorageUuids', t.uuid)], action: 'block', what: 'images', hint: 'delete the images stored there first' },
    { kind: 'zone-backup-storage', where: (t) => [eq('backupStorageUuid', t.uuid)], action: 'delete', what: 'zone attachments' },
  ],
  'l2-network': [
    // manual (VXLAN Pool 删除): a pool's VXLAN networks go with it
    { kind: 'l2-network', where: (t) => [eq('poolUuid', t.uuid)], action: 'cascade', what: 'VXLAN networks of the pool' },
    child('l3-network', 'cascade', 'L3 networks'),
    { kind: 'cluster-l2-network', where: (t) => [eq('l2NetworkUuid', t.uuid)], action: 'delete', what: 'cluster attachments' },
  ],
  'l3-network': [
    { kind: 'vm-nic', where: (t) => [eq('l3NetworkUuid', t.uuid)], action: 'block', what: 'VM NICs', hint: 'detach the NICs or expunge their VMs first' },
    child('ip-range', 'delete', 'IP ranges'),
  ],
  'ip-range': [{ kind: 'vm-nic', where: (t) => [eq('ipRangeUuid', t.uuid)], action: 'block', what: 'VM NICs with addresses from it', hint: 'detach the NICs or expunge their VMs first' }],
  'vm-instance': [
    child('vm-nic', 'delete', 'NICs'),
    { kind: 'volume', where: (t) => [eq('vmInstanceUuid', t.uuid), eq('type', 'Root')], action: 'delete', what: 'root volume' },
    { kind: 'volume', where: (t) => [eq('vmInstanceUuid', t.uuid), { field: 'type', op: '!=', value: 'Root' }], action: 'detach', what: 'data volumes', patch: { vmInstanceUuid: undefined, deviceId: undefined } },
  ],
  volume: [child('volume-snapshot', 'delete', 'snapshots')],
  // manual 定时器: deleting a trigger unloads its jobs (they can be loaded on another one)
  'scheduler-trigger': [{ kind: 'scheduler-job', where: (t) => [eq('schedulerTriggerUuid', t.uuid)], action: 'detach', what: 'scheduler jobs', patch: { schedulerTriggerUuid: undefined } }],
  account: OWNED_KINDS.map((kind) => ({ kind, where: (t: Resource): Filter[] => [eq('ownerAccountUuid', t.uuid)], action: 'block' as const, what: `${kind}s it owns`, hint: 'delete them or change their owner first' })),
};

/** Conditions on the target itself (not on dependents), checked only for the resource asked for. */
export const selfChecks: Readonly<Record<string, (t: Resource) => string | undefined>> = {
  volume: (t) =>
    t.type === 'Root'
      ? `it is the root volume of VM ${String(t.vmInstanceUuid ?? '?')}; delete the VM instead`
      : t.vmInstanceUuid
        ? `it is attached to VM ${String(t.vmInstanceUuid)}; detach it first`
        : undefined,
  account: (t) => (t.type === 'SystemAdmin' ? 'the admin account cannot be deleted' : undefined),
};

export interface Dependent {
  uuid: string;
  kind: string;
  name: string;
  state?: string;
  /** Its owner (the API hides dependents of other accounts from normal accounts). */
  ownerAccountUuid?: string;
  /** The resource it depends on (the target or one of its cascaded descendants). */
  of: string;
  reason: string;
}

export interface DeletePlan {
  target: Resource;
  /** Resources to delete, children before parents; the target is last. */
  deletes: Resource[];
  /** Resources to keep but patch. */
  detaches: Array<{ resource: Resource; patch: Partial<Resource> }>;
  /** Why it cannot be deleted; empty when it can. */
  blockers: Dependent[];
}

/** Read-only access to the inventory for the planner: resources of a kind matching filters. */
export type Lookup = (kind: string, filters: Filter[]) => Promise<Resource[]>;

export function storeLookup(store: InventoryStore): Lookup {
  return async (kind, filters) => (await store.list({ kind, filters })).items;
}

/** Plan the delete of `target` (no side effects). */
export async function planDelete(target: Resource, lookup: Lookup, opts: { cascade?: boolean } = {}): Promise<DeletePlan> {
  const plan: DeletePlan = { target, deletes: [], detaches: [], blockers: [] };
  const self = selfChecks[target.kind]?.(target);
  if (self) plan.blockers.push({ uuid: target.uuid, kind: target.kind, name: target.name, ...(target.state ? { state: target.state } : {}), of: target.uuid, reason: self });
  const seen = new Set<string>();
  const block = (d: Dependent): void => {
    if (!plan.blockers.some((b) => b.uuid === d.uuid)) plan.blockers.push(d);
  };
  const visit = async (r: Resource): Promise<void> => {
    if (seen.has(r.uuid)) return;
    seen.add(r.uuid);
    for (const rule of deleteRules[r.kind] ?? []) {
      for (const d of await lookup(rule.kind, rule.where(r))) {
        const dep = (reason: string): Dependent => ({ uuid: d.uuid, kind: d.kind, name: d.name, ...(d.state ? { state: d.state } : {}), ownerAccountUuid: d.ownerAccountUuid, of: r.uuid, reason });
        switch (rule.action) {
          case 'block':
            block(dep(`${r.kind} ${r.name || r.uuid} has ${rule.what}: ${rule.hint ?? 'remove them first'}`));
            break;
          case 'cascade':
            if (opts.cascade) await visit(d);
            else block(dep(`${r.kind} ${r.name || r.uuid} has ${rule.what}: ${rule.hint ?? 'delete them first'} or delete with cascade`));
            break;
          case 'delete':
            await visit(d);
            break;
          case 'detach':
            if (!plan.detaches.some((x) => x.resource.uuid === d.uuid)) plan.detaches.push({ resource: d, patch: rule.patch ?? {} });
            break;
        }
      }
    }
    plan.deletes.push(r);
  };
  await visit(target);
  // a detached resource that is also deleted (reached another way) is just deleted
  plan.detaches = plan.detaches.filter((x) => !seen.has(x.resource.uuid));
  return plan;
}

/** The 409 for a blocked plan: names the dependents (the first ten in the message, up to 100 in details). */
export function blockedError(plan: DeletePlan): TStackError {
  const t = plan.target;
  const names = plan.blockers.slice(0, 10).map((b) => `${b.kind} ${b.name || b.uuid} (${b.uuid})`);
  const more = plan.blockers.length > 10 ? ` and ${plan.blockers.length - 10} more` : '';
  const reasons = [...new Set(plan.blockers.map((b) => b.reason))].slice(0, 5).join('; ');
  return new TStackError('CONFLICT', `cannot delete ${t.kind} ${t.name || t.uuid}: ${reasons} [${names.join(', ')}${more}]`, {
    uuid: t.uuid,
    kind: t.kind,
    dependents: plan.blockers.slice(0, 100),
  });
}

/** Apply a plan: detaches, then deletes children-first. Throws the 409 if the plan is blocked. */
export async function executeDeletePlan(store: InventoryStore, plan: DeletePlan): Promise<void> {
  if (plan.blockers.length > 0) throw blockedError(plan);
  for (const d of plan.detaches) await store.update(d.resource.uuid, d.patch);
  for (const r of plan.deletes) await store.delete(r.uuid);
}

/** Plan and execute the delete of a resource by uuid. NOT_FOUND if absent; CONFLICT if blocked. */
export async function deleteWithCascade(store: InventoryStore, uuid: string, opts: { cascade?: boolean } = {}): Promise<DeletePlan> {
  const target = await store.get(uuid);
  if (!target) throw new TStackError('NOT_FOUND', `resource ${uuid} not found`, { uuid });
  const plan = await planDelete(target, storeLookup(store), opts);
  await executeDeletePlan(store, plan);
  return plan;
}
