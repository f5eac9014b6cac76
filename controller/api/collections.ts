// The collections the API serves, generated from the resource model (controller/model):
// schemas, parents, references, admin-only writes, sync/async create and delete, declared
// actions. Generic handlers cover sync kinds; async creates/deletes and actions are neither
// advertised nor served until the code that owns them registers a handler (registry.setCreate /
// setDelete / registerAction).
import { TStackError } from '../../shared/errors.js';
import { resourceKinds, type KindDef } from '../model/index.js';
import type { ApiRegistry, CollectionSpec } from './registry.js';

/**
 * Kinds whose admin-owned resources every account may read and reference (what a tenant
 * picks to create a VM). Everything else is seen by its owner and the admin only.
 */
export const SHARED_KINDS = ['zone', 'image', 'instance-offering', 'disk-offering', 'l3-network', 'virtual-router-offering'];

/** The API's own collections (not generated from the model). */
const OWN = new Set(['accounts']);

export function specFromKind(def: KindDef): CollectionSpec {
  const refs: Record<string, string> = {};
  for (const r of def.refs) refs[r.field] = r.kind;
  const spec: CollectionSpec = {
    collection: def.collection,
    kind: def.kind,
    description: def.title,
    createSchema: def.createSchema,
    updateSchema: def.updateSchema,
    refs,
    adminOnly: def.adminOnly,
    shared: SHARED_KINDS.includes(def.kind),
    createMode: def.createMode,
    deleteMode: def.deleteMode,
    model: def,
  };
  if (def.parentField) spec.parentField = def.parentField;
  if (def.initialState) spec.initialState = def.initialState;
  if (def.createMode === 'none') spec.noCreate = true;
  if (def.systemFields?.length) spec.hiddenFields = def.systemFields.filter((f) => f.toLowerCase().includes('password') || f.toLowerCase().includes('secret') || f.toLowerCase().includes('token'));
  if (def.secretFields?.length) spec.hiddenFields = [...(spec.hiddenFields ?? []), ...def.secretFields];
  return spec;
}

/** Register every model kind and declare its actions (handlers registered elsewhere are kept). */
export function registerCollections(reg: ApiRegistry): void {
  for (const def of Object.values(resourceKinds)) {
    if (OWN.has(def.collection)) continue;
    reg.registerCollection(specFromKind(def));
    for (const [name, a] of Object.entries(def.actions)) reg.declareAction(def.collection, name, { schema: a.schema, long: a.async, description: a.description });
  }
}

/** A create/delete the model declares but no module serves (not in OpenAPI either). */
export const notServed = (what: string): TStackError =>
  new TStackError('METHOD_NOT_ALLOWED', `${what} is not available in this controller (no handler is registered for it)`);
