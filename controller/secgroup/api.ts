// REST handlers of /v1/security-groups: create (with the two default rules), delete (releases
// its NICs and drops other groups' rules naming it), and the actions. Every handler only changes
// the inventory; the hosts follow through the reconcile queue (controller/secgroup/module.ts),
// which a store event for the group marks. Changes to one group are serialised in-process.
import { randomUUID } from 'node:crypto';
import { invalid, TStackError } from '../../shared/errors.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { prepareCreate } from '../model/registry.js';
import { checkRules, defaultRules, securityGroup, type SecurityGroup, type SecurityGroupRule } from './model.js';
import { locked } from '../cloud/keyed-lock.js';


/** Re-name an INVALID_ARGUMENT's field as "<action>.<field>" (as the API does for schema errors). */
async function inAction<T>(action: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof TStackError && e.code === 'INVALID_ARGUMENT' && typeof e.details?.field === 'string') {
      throw new TStackError(e.code, `${action}: ${e.message}`, { ...e.details, field: `${action}.${e.details.field}` });
    }
    throw e;
  }
}

async function fresh(store: InventoryStore, uuid: string): Promise<SecurityGroup> {
  const g = await store.get<SecurityGroup>(uuid);
  if (!g || g.kind !== 'security-group') throw new TStackError('NOT_FOUND', `no security group with uuid ${uuid}`, { uuid });
  return { ...g, rules: g.rules ?? [], attachedL3NetworkUuids: g.attachedL3NetworkUuids ?? [], vmNicUuids: g.vmNicUuids ?? [] };
}

type Handler = (g: SecurityGroup, params: Record<string, unknown>, oc: OpContext) => Promise<Partial<Resource>>;

function mutate(action: string, fn: Handler) {
  return async (r: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> =>
    inAction(action, () =>
      locked(r.uuid, async () => {
        const g = await fresh(oc.store, r.uuid);
        const patch = await fn(g, params, oc);
        return Object.keys(patch).length ? oc.store.update(g.uuid, patch) : g;
      }),
    );
}

async function createGroup(body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const p = await prepareCreate(oc.store, securityGroup, body, { ownerAccountUuid: oc.principal.accountUuid });
  const uuid = p.resource.uuid;
  return oc.store.create({ ...p.resource, rules: defaultRules(uuid, randomUUID), attachedL3NetworkUuids: [], vmNicUuids: [] });
}

async function deleteGroup(r: Resource, _q: Record<string, string>, oc: OpContext): Promise<Resource> {
  return locked(r.uuid, async () => {
    // rules of other groups that name it would match nobody: they go too
    for (const other of (await oc.store.list<SecurityGroup>({ kind: 'security-group' })).items) {
      if (other.uuid === r.uuid) continue;
      const rules = (other.rules ?? []).filter((x) => x.remoteSecurityGroupUuid !== r.uuid);
      if (rules.length !== (other.rules ?? []).length) await locked(other.uuid, () => oc.store.update(other.uuid, { rules }));
    }
    await oc.store.delete(r.uuid);
    return r;
  });
}

const addRules: Handler = async (g, params, oc) => {
  const added = await checkRules(oc.store, g, params.rules as Array<Omit<SecurityGroupRule, 'uuid' | 'ipVersion'>>, randomUUID);
  return { rules: [...g.rules, ...added] };
};

const removeRules: Handler = async (g, params) => {
  const uuids = params.ruleUuids as string[];
  for (const [i, u] of uuids.entries()) if (!g.rules.some((r) => r.uuid === u)) throw invalid(`ruleUuids.${i}`, `the group has no rule ${u}`);
  return { rules: g.rules.filter((r) => !uuids.includes(r.uuid)) };
};

const attachL3: Handler = async (g, params, oc) => {
  const u = String(params.l3NetworkUuid);
  const l3 = await oc.store.get(u);
  const usable = l3 && l3.kind === 'l3-network' && (oc.principal.isAdmin || l3.ownerAccountUuid === g.ownerAccountUuid || l3.ownerAccountUuid === oc.adminAccountUuid);
  if (!usable) throw invalid('l3NetworkUuid', `no L3 network ${u}`);
  if (g.attachedL3NetworkUuids.includes(u)) throw new TStackError('CONFLICT', `L3 network ${l3.name} is already attached to security group ${g.name}`, { field: 'l3NetworkUuid' });
  return { attachedL3NetworkUuids: [...g.attachedL3NetworkUuids, u] };
};

const detachL3: Handler = async (g, params, oc) => {
  const u = String(params.l3NetworkUuid);
  if (!g.attachedL3NetworkUuids.includes(u)) throw invalid('l3NetworkUuid', `L3 network ${u} is not attached to security group ${g.name}`);
  // its NICs leave the group
  const keep: string[] = [];
  for (const n of g.vmNicUuids) {
    const nic = await oc.store.get(n);
    if (nic && nic.l3NetworkUuid !== u) keep.push(n);
  }
  return { attachedL3NetworkUuids: g.attachedL3NetworkUuids.filter((x) => x !== u), vmNicUuids: keep };
};

/** NICs that may join `g`: exist, belong to the group's account, are on an attached L3. */
export async function checkJoin(store: InventoryStore, g: Pick<SecurityGroup, 'name' | 'ownerAccountUuid' | 'attachedL3NetworkUuids'>, nicUuids: string[], field: string, isAdmin = false): Promise<void> {
  for (const [i, u] of nicUuids.entries()) {
    const nic = await store.get(u);
    if (!nic || nic.kind !== 'vm-nic' || (!isAdmin && nic.ownerAccountUuid !== g.ownerAccountUuid)) throw invalid(`${field}.${i}`, `no VM NIC ${u}`);
    if (!g.attachedL3NetworkUuids.includes(String(nic.l3NetworkUuid))) {
      throw invalid(`${field}.${i}`, `NIC ${u} is on L3 network ${String(nic.l3NetworkUuid)}, which is not attached to security group ${g.name}; attach it first (attachL3Network)`);
    }
  }
}

const addNics: Handler = async (g, params, oc) => {
  const uuids = params.vmNicUuids as string[];
  await checkJoin(oc.store, g, uuids, 'vmNicUuids', oc.principal.isAdmin);
  const next = [...new Set([...g.vmNicUuids, ...uuids])];
  return next.length === g.vmNicUuids.length ? {} : { vmNicUuids: next };
};

const removeNics: Handler = async (g, params) => {
  const uuids = params.vmNicUuids as string[];
  for (const [i, u] of uuids.entries()) if (!g.vmNicUuids.includes(u)) throw invalid(`vmNicUuids.${i}`, `NIC ${u} is not in security group ${g.name}`);
  return { vmNicUuids: g.vmNicUuids.filter((n) => !uuids.includes(n)) };
};

/**
 * For VM create with securityGroupUuids: every group must be usable by the caller and attached
 * to at least one of the VM's L3 networks (400 naming securityGroupUuids.<i> otherwise).
 */
export async function checkVmGroups(store: InventoryStore, groupUuids: string[], l3Uuids: string[], accountUuid: string, isAdmin: boolean): Promise<void> {
  for (const [i, u] of groupUuids.entries()) {
    const g = await store.get<SecurityGroup>(u);
    if (!g || g.kind !== 'security-group' || (!isAdmin && g.ownerAccountUuid !== accountUuid)) throw invalid(`securityGroupUuids.${i}`, `no security group ${u}`);
    if (!(g.attachedL3NetworkUuids ?? []).some((l) => l3Uuids.includes(l))) throw invalid(`securityGroupUuids.${i}`, `security group ${g.name} is attached to none of the VM's L3 networks`);
  }
}

/** Put a new VM's NICs into its groups (each NIC into the groups attached to its L3). */
export async function joinVmGroups(store: InventoryStore, groupUuids: string[], nics: Array<{ uuid: string; l3NetworkUuid: string }>): Promise<void> {
  for (const u of groupUuids) {
    await locked(u, async () => {
      const g = await fresh(store, u);
      const add = nics.filter((n) => g.attachedL3NetworkUuids.includes(n.l3NetworkUuid)).map((n) => n.uuid);
      const next = [...new Set([...g.vmNicUuids, ...add])];
      if (next.length !== g.vmNicUuids.length) await store.update(u, { vmNicUuids: next });
    });
  }
}

/** A NIC that is gone leaves every group (VM expunge, detachL3Network of a VM). */
export async function forgetNic(store: InventoryStore, nicUuid: string): Promise<void> {
  for (const g of (await store.list<SecurityGroup>({ kind: 'security-group' })).items) {
    if (!(g.vmNicUuids ?? []).includes(nicUuid)) continue;
    await locked(g.uuid, async () => {
      const cur = await fresh(store, g.uuid);
      await store.update(g.uuid, { vmNicUuids: cur.vmNicUuids.filter((n) => n !== nicUuid) });
    });
  }
}

const once = (reg: ApiRegistry, name: string, run: ReturnType<typeof mutate>): void => {
  if (!reg.action('security-groups', name)?.run) reg.registerAction('security-groups', name, { run });
};

export function registerSecurityGroupApi(reg: ApiRegistry): void {
  reg.setCreate('security-groups', { run: createGroup });
  reg.setDelete('security-groups', { run: deleteGroup });
  once(reg, 'addRules', mutate('addRules', addRules));
  once(reg, 'removeRules', mutate('removeRules', removeRules));
  once(reg, 'attachL3Network', mutate('attachL3Network', attachL3));
  once(reg, 'detachL3Network', mutate('detachL3Network', detachL3));
  once(reg, 'addVmNics', mutate('addVmNics', addNics));
  once(reg, 'removeVmNics', mutate('removeVmNics', removeNics));
}
