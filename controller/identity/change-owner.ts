// changeOwner (ZStack ChangeResourceOwner, issue 18): the admin gives a resource, with what
// belongs to it, to another account:
//   VM     → its volumes (and their snapshots), its NICs, the EIPs and port forwards on its NICs
//            and their VIPs
//   volume → its snapshots (refused while attached to a VM: change the VM's owner instead)
//   VIP    → the EIPs and port-forwarding rules on it;  EIP → its VIP (and what else is on it)
//   image  → itself
// A move never splits a binding (409 naming it, nothing moved): afterwards every EIP and port
// forward and the NIC it forwards to belong to one account (as their create requires), a VIP
// that a load balancer uses or that is a router's system VIP stays where it is.
// The target account's quotas are checked for all of it before anything changes (each
// resource's charge reserved in the target's ledger; one refusal undoes the others and answers
// 409 QUOTA_EXCEEDED naming the quota); then the owners change and the old account's holdings end.
import { TStackError } from '../../shared/errors.js';
import { Obj, Uuid } from '../../shared/protocol/schema.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import { ACCOUNT_KIND } from '../model/account.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { chargeOf } from './quota-defs.js';
import { QuotaService } from './quotas.js';

export const ChangeOwnerParams = Obj({ accountUuid: Uuid({ description: 'the account that will own the resource (and what belongs to it)' }) });

/** Collections served, and the resource kinds that can be moved. */
export const CHANGE_OWNER_COLLECTIONS = ['vm-instances', 'volumes', 'vips', 'eips', 'images'];

const by = async (store: InventoryStore, kind: string, field: string, value: string): Promise<Resource[]> => (await store.list({ kind, filters: [{ field, op: '=', value }] })).items;

/** A VIP and the services on it (a router's system VIP or a load balancer's stays put: 409). */
async function vipGroup(store: InventoryStore, vipUuid: string): Promise<Resource[]> {
  const vip = await store.get(vipUuid);
  if (!vip) return [];
  if (vip.system === true) throw new TStackError('CONFLICT', `VIP ${String(vip.ip)} is the system VIP of VPC router ${String(vip.vpcRouterUuid)} and moves only with it: detach the services on it first`, { field: 'vipUuid', vipUuid });
  const lb = (await by(store, 'load-balancer', 'vipUuid', vipUuid))[0];
  if (lb) throw new TStackError('CONFLICT', `VIP ${String(vip.ip)} is used by load balancer ${lb.name} (${lb.uuid}), whose owner does not change`, { field: 'vipUuid', vipUuid });
  return [vip, ...(await by(store, 'eip', 'vipUuid', vipUuid)), ...(await by(store, 'port-forwarding-rule', 'vipUuid', vipUuid))];
}

const BOUND = ['eip', 'port-forwarding-rule'];

/**
 * Refuse a move that would leave an EIP or a port forward and the NIC it forwards to with two
 * owners: a moving rule bound to a NIC that stays, or a moving NIC with a rule that stays.
 */
async function checkBindings(store: InventoryStore, group: Resource[], target: string): Promise<void> {
  const moving = new Set(group.map((x) => x.uuid));
  const ownerAfter = (x: Resource): string => (moving.has(x.uuid) ? target : x.ownerAccountUuid);
  const split = (rule: Resource, nic: Resource): TStackError =>
    new TStackError('CONFLICT', `${rule.kind} ${rule.name || rule.uuid} forwards to NIC ${nic.uuid} of VM ${String(nic.vmInstanceUuid)}; after this change they would belong to different accounts: change the VM's owner (it takes the EIPs and port forwards on its NICs) or detach the ${rule.kind} first`, { uuid: rule.uuid, vmNicUuid: nic.uuid });
  for (const x of group) {
    if (BOUND.includes(x.kind) && typeof x.vmNicUuid === 'string') {
      const nic = await store.get(x.vmNicUuid);
      if (nic && ownerAfter(nic) !== target) throw split(x, nic);
    }
    if (x.kind === 'vm-nic') for (const k of BOUND) for (const rule of await by(store, k, 'vmNicUuid', x.uuid)) if (ownerAfter(rule) !== target) throw split(rule, x);
  }
}

/** The resource and everything that moves with it (deduplicated; the resource first). */
export async function ownershipGroup(store: InventoryStore, r: Resource): Promise<Resource[]> {
  const out = new Map<string, Resource>([[r.uuid, r]]);
  const add = (xs: Resource[]): void => xs.forEach((x) => out.has(x.uuid) || out.set(x.uuid, x));
  const volumeWith = async (v: Resource): Promise<void> => add([v, ...(await by(store, 'volume-snapshot', 'volumeUuid', v.uuid))]);
  switch (r.kind) {
    case 'vm-instance': {
      for (const v of await by(store, 'volume', 'vmInstanceUuid', r.uuid)) await volumeWith(v);
      for (const nic of await by(store, 'vm-nic', 'vmInstanceUuid', r.uuid)) {
        add([nic]);
        for (const k of BOUND) for (const e of await by(store, k, 'vmNicUuid', nic.uuid)) add(typeof e.vipUuid === 'string' ? [e, ...(await vipGroup(store, e.vipUuid))] : [e]);
      }
      break;
    }
    case 'volume':
      if (typeof r.vmInstanceUuid === 'string') throw new TStackError('CONFLICT', `volume ${r.name || r.uuid} is attached to VM ${r.vmInstanceUuid}: change the VM's owner (it takes its volumes) or detach the volume first`);
      await volumeWith(r);
      break;
    case 'vip':
      add(await vipGroup(store, r.uuid));
      break;
    case 'eip':
      if (typeof r.vipUuid === 'string') add(await vipGroup(store, r.vipUuid));
      break;
    default:
      break;
  }
  return [...out.values()];
}

export async function changeOwner(r: Resource, p: Record<string, unknown>, oc: OpContext): Promise<Record<string, unknown>> {
  const target = String(p.accountUuid);
  const acc = await oc.store.get(target);
  if (!acc || acc.kind !== ACCOUNT_KIND) throw new TStackError('INVALID_ARGUMENT', `changeOwner.accountUuid: no account ${target}`, { field: 'changeOwner.accountUuid' });
  if (acc.state !== 'Enabled') throw new TStackError('CONFLICT', `account ${acc.name} is ${String(acc.state)}`);
  if (r.ownerAccountUuid === target) throw new TStackError('CONFLICT', `${r.kind} ${r.name || r.uuid} already belongs to account ${acc.name}`);
  const whole = await ownershipGroup(oc.store, r);
  await checkBindings(oc.store, whole, target);
  const group = whole.filter((x) => x.ownerAccountUuid !== target);
  const quotas = new QuotaService(oc.store, () => oc.adminAccountUuid);
  const reserved: string[] = [];
  if (target !== oc.adminAccountUuid) {
    try {
      for (const x of group) {
        const c = chargeOf(x);
        if (!c) continue;
        await quotas.admit(target, x.uuid, c);
        reserved.push(x.uuid);
      }
    } catch (e) {
      for (const h of reserved) await quotas.end(target, h);
      throw e;
    }
  }
  const moved: Array<{ kind: string; uuid: string }> = [];
  for (const x of group) {
    await oc.store.update(x.uuid, { ownerAccountUuid: target });
    // the old owner's holding ends (the target's was set above; resource events re-sync it)
    if (x.ownerAccountUuid !== oc.adminAccountUuid) await quotas.end(x.ownerAccountUuid, x.uuid);
    moved.push({ kind: x.kind, uuid: x.uuid });
  }
  return { uuid: r.uuid, ownerAccountUuid: target, moved };
}

export function registerChangeOwner(reg: ApiRegistry): void {
  for (const col of CHANGE_OWNER_COLLECTIONS) {
    if (reg.action(col, 'changeOwner')?.run) continue;
    reg.registerAction(col, 'changeOwner', {
      description: 'give it (with its volumes, NICs, snapshots, EIPs, port forwards and VIPs as they belong) to another account; that account\'s quotas are checked first',
      schema: ChangeOwnerParams,
      adminOnly: true,
      run: changeOwner,
    });
  }
}
