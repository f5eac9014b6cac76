// Affinity groups in the cloud: the API actions (addVm, removeVm, changeState, delete) and the
// placement hook the VM create/start flows and migration use. Decisions: a VM's membership is
// its affinityGroupUuid (so at most one group); members are read at allocation time, so two
// VMs of one antiHard group created at the same instant may still race onto one host.
import { TStackError } from '../../shared/errors.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { allocateHost, type HostAllocation, type HostRequest } from '../allocator/host.js';
import { affinityExclusions, affinityPlan, type AffinityGroupView, type Member } from '../allocator/affinity.js';
import { mustGet } from '../cloud/common.js';

async function groupOf(store: InventoryStore, vm: Resource): Promise<{ group?: AffinityGroupView; members: Member[] }> {
  const g = typeof vm.affinityGroupUuid === 'string' ? await store.get(vm.affinityGroupUuid) : undefined;
  if (!g || g.kind !== 'affinity-group') return { members: [] };
  const vms = (await store.list({ kind: 'vm-instance', filters: [{ field: 'affinityGroupUuid', op: '=', value: g.uuid }] })).items;
  const members: Member[] = vms.map((v) => ({ vmUuid: v.uuid, vmName: v.name, ...(typeof v.hostUuid === 'string' ? { hostUuid: v.hostUuid } : {}) }));
  return { group: { uuid: g.uuid, name: g.name, policy: g.policy as AffinityGroupView['policy'], state: String(g.state) }, members };
}

/** allocateHost honouring the VM's affinity group: antiHard excludes, antiSoft prefers. */
export async function allocateHostFor(store: InventoryStore, req: HostRequest, vm: Resource): Promise<HostAllocation> {
  const { group, members } = await groupOf(store, vm);
  const attempts = affinityPlan(req, group, members, vm.uuid).attempts;
  for (const [i, r] of attempts.entries()) {
    try {
      return await allocateHost(store, r, vm.uuid);
    } catch (e) {
      if (i === attempts.length - 1 || (e as TStackError).code !== 'CAPACITY_EXCEEDED') throw e;
    }
  }
  throw new TStackError('INTERNAL', 'no allocation attempt'); // unreachable: attempts is never empty
}

/** Hosts a VM's group excludes (hard) or disfavours (soft), for migration target ranking. */
export async function affinityOf(store: InventoryStore, vm: Resource): Promise<{ policy?: AffinityGroupView['policy']; excluded: Record<string, string> }> {
  const { group, members } = await groupOf(store, vm);
  if (!group) return { excluded: {} };
  return { policy: group.policy, excluded: affinityExclusions(group, members, vm.uuid) };
}

async function addVm(g: Resource, p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const vm = await mustGet(oc.store, String(p.vmUuid), 'vm-instance', 'addVm.vmUuid');
  if (vm.ownerAccountUuid !== g.ownerAccountUuid && !oc.principal.isAdmin) throw new TStackError('NOT_FOUND', `no vm-instance with uuid ${vm.uuid}`, { field: 'addVm.vmUuid' });
  if (vm.affinityGroupUuid === g.uuid) return g;
  if (typeof vm.affinityGroupUuid === 'string' && (await oc.store.get(vm.affinityGroupUuid))) {
    throw new TStackError('CONFLICT', `VM ${vm.name} is already in affinity group ${vm.affinityGroupUuid}; remove it there first (a VM is in at most one group)`);
  }
  if (g.policy === 'antiHard' && g.state === 'Enabled' && typeof vm.hostUuid === 'string') {
    const { excluded } = await affinityOf(oc.store, { ...vm, affinityGroupUuid: g.uuid });
    const why = excluded[vm.hostUuid];
    if (why) throw new TStackError('CONFLICT', `VM ${vm.name} runs on host ${vm.hostUuid}, where ${why}; migrate it first`);
  }
  await oc.store.update(vm.uuid, { affinityGroupUuid: g.uuid });
  return g;
}

async function removeVm(g: Resource, p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const vm = await mustGet(oc.store, String(p.vmUuid), 'vm-instance', 'removeVm.vmUuid');
  if (vm.affinityGroupUuid !== g.uuid) throw new TStackError('INVALID_ARGUMENT', `removeVm.vmUuid: VM ${vm.name} is not in affinity group ${g.name}`, { field: 'removeVm.vmUuid' });
  await oc.store.update(vm.uuid, { affinityGroupUuid: undefined });
  return g;
}

async function changeState(g: Resource, p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  return oc.store.update(g.uuid, { state: p.stateEvent === 'disable' ? 'Disabled' : 'Enabled' });
}

export function registerAffinityApi(reg: ApiRegistry): void {
  const once = (name: string, run: (g: Resource, p: Record<string, unknown>, oc: OpContext) => Promise<Resource>): void => {
    if (!reg.action('affinity-groups', name)?.run) reg.registerAction('affinity-groups', name, { long: false, run });
  };
  once('addVm', addVm);
  once('removeVm', removeVm);
  once('changeState', changeState);
}
