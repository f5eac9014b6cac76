// Affinity groups (ZStack 亲和组, type host): VMs of an antiHard group never share a host, those
// of an antiSoft group share one only when nothing else fits. A VM is in at most one group
// (its affinityGroupUuid). Placement logic: controller/allocator/affinity.ts.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { baseCreate, baseUpdate, Enum, Uuid } from './fields.js';
import { action, changeStateAction, type KindDef } from './kind.js';
import { ENABLED_STATES } from './states.js';

export const affinityGroup: KindDef = {
  kind: 'affinity-group',
  collection: 'affinity-groups',
  title: 'affinity group',
  createSchema: Obj({
    ...baseCreate(),
    policy: Enum(['antiSoft', 'antiHard'] as const),
    type: Type.Optional(Enum(['host'] as const)),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { type: 'host' },
  actions: {
    addVm: action(Obj({ vmUuid: Uuid() }), 'Put a VM in the group (a VM is in at most one group)', false),
    removeVm: action(Obj({ vmUuid: Uuid() }), 'Take a VM out of the group', false),
    changeState: changeStateAction(),
  },
};
