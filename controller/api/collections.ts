// The collections the API serves, generated from the resource model (controller/model):
// schemas, parents, references, admin-only writes, sync/async create and delete, declared
// actions. Generic handlers cover sync kinds; async creates/deletes and actions are neither
// advertised nor served until the code that owns them registers a handler (registry.setCreate /
// setDelete / registerAction).
import { TStackError } from '../../shared/errors.js';
import { resourceKinds, type KindDef } from '../model/index.js';
import { isVxlanPool } from '../model/network.js';
import type { ApiRegistry, CollectionSpec } from './registry.js';

/**
 * How the admin's resources of a kind are shared with the other accounts, which may then read
 * and reference them (what a tenant picks to create a VM or a VXLAN network).
 *  - `byDefault`: shared with all until the admin shares or revokes (the catalog works for a
 *    new account at once); false: with nobody until the admin shares it.
 *  - `only`: the resources of the kind that can be shared at all; the others stay the admin's
 *    own whatever `_sharing` says (the admin's physical L2s, unlike its VXLAN pools).
 *  - `fixed`: always shared with all, no share/revoke (zones: every account needs them).
 * Kinds absent here are seen by their owner and the admin only.
 */
export interface ShareRule {
  byDefault: boolean;
  only?: { test: (r: Record<string, unknown>) => boolean; why: string };
  fixed?: boolean;
}

export const SHARE_RULES: Readonly<Record<string, ShareRule>> = {
  zone: { byDefault: true, fixed: true },
  image: { byDefault: true },
  'instance-offering': { byDefault: true },
  'disk-offering': { byDefault: true },
  'l3-network': { byDefault: true },
  'virtual-router-offering': { byDefault: true },
  'l2-network': { byDefault: false, only: { test: isVxlanPool, why: 'among L2 networks only VXLAN pools are shared' } },
};

export const SHARED_KINDS: readonly string[] = Object.keys(SHARE_RULES);

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
    createMode: def.createMode,
    deleteMode: def.deleteMode,
    model: def,
  };
  const rule = SHARE_RULES[def.kind];
  if (rule) spec.shared = rule;
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
