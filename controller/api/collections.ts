// The collections the API serves. The resource model (controller/model) is the source of
// truth; until it is wired in, this module declares the minimum (zones, clusters) so the API
// works end to end.
import { Obj, Type, SafeName, Uuid } from '../../shared/protocol/schema.js';
import type { ApiRegistry, CollectionSpec } from './registry.js';

const Name = Type.String({ minLength: 1, maxLength: 255 });
const Description = Type.Optional(Type.String({ maxLength: 2048 }));
const Update = Obj({ name: Type.Optional(Name), description: Description });

export const fallbackCollections: CollectionSpec[] = [
  {
    collection: 'zones',
    kind: 'zone',
    description: 'availability zones: the top of the infrastructure tree',
    createSchema: Obj({ name: Name, description: Description }),
    updateSchema: Update,
    initialState: 'Enabled',
    adminOnly: true,
  },
  {
    collection: 'clusters',
    kind: 'cluster',
    description: 'groups of hosts of one hypervisor type in a zone',
    createSchema: Obj({
      name: Name,
      description: Description,
      zoneUuid: Uuid(),
      hypervisorType: Type.Optional(Type.Literal('KVM', { default: 'KVM' })),
    }),
    updateSchema: Update,
    parentField: 'zoneUuid',
    initialState: 'Enabled',
    adminOnly: true,
  },
];
void SafeName;

export function registerCollections(reg: ApiRegistry): void {
  for (const c of fallbackCollections) if (!reg.collection(c.collection)) reg.registerCollection(c);
}
