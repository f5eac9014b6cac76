// The registry of resource kinds: REST collection name -> definition. The API generates CRUD
// routes, OpenAPI and the CLI from it; prepareCreate turns a create body into a Resource.
import { randomUUID } from 'node:crypto';
import { validate, type TSchema } from '../../shared/protocol/schema.js';
import { invalid, TStackError } from '../../shared/errors.js';
import type { InventoryStore, Resource } from '../store/types.js';
import type { KindDef } from './kind.js';
import { backupStorage, cluster, host, primaryStorage, zone } from './infrastructure.js';
import { diskOffering, image, instanceOffering } from './catalog.js';
import { ipRange, l2Network, l3Network } from './network.js';
import { vmInstance, vmNic, volume, volumeSnapshot } from './compute.js';
import { account } from './account.js';
import { alarm, eventSubscription, snsDelivery, snsEndpoint, snsTopic } from './monitoring.js';
import { securityGroup } from '../secgroup/model.js';
import { affinityGroup } from './affinity.js';
import { vpcKinds } from '../vpc/model.js';
import { lbKinds } from '../lb/model.js';
import { ipsecKinds } from '../ipsec/model.js';
import { certificate } from '../lb/certificate.js';
import { schedulerKinds } from '../scheduler/model.js';
import { baremetalKinds } from '../baremetal/model.js';
import { globalConfigKind } from '../config/model.js';

/** Collection name (as in /v1/<collection>) -> kind definition. */
export const resourceKinds: Readonly<Record<string, KindDef>> = Object.freeze(
  Object.fromEntries(
    [zone, cluster, host, primaryStorage, backupStorage, image, instanceOffering, diskOffering, l2Network, l3Network, ipRange, vmInstance, vmNic, volume, volumeSnapshot, account, snsTopic, snsEndpoint, snsDelivery, eventSubscription, alarm, securityGroup, affinityGroup, ...vpcKinds, ...lbKinds, certificate, ...ipsecKinds, ...schedulerKinds, ...baremetalKinds, globalConfigKind].map((d) => [d.collection, d]),
  ),
);

/** The sub-schema at a dotted field path (properties / array items), if any. */
function schemaAt(schema: TSchema, field: string): TSchema | undefined {
  let cur: TSchema | undefined = schema;
  for (const part of field.split('.')) {
    if (!cur) return undefined;
    if (/^\d+$/.test(part) && cur.items) cur = cur.items as TSchema;
    else cur = (cur.properties as Record<string, TSchema> | undefined)?.[part];
  }
  return cur;
}

/** validate(), with "must be one of: …" instead of TypeBox's "Expected union value" for enums. */
export function validateBody(schema: TSchema, body: unknown, what: string): Record<string, unknown> {
  try {
    return validate(schema, body, what) as Record<string, unknown>;
  } catch (e) {
    if (!(e instanceof TStackError) || typeof e.details?.field !== 'string') throw e;
    const field = e.details.field;
    const sub = schemaAt(schema, field);
    const values = (sub?.anyOf as TSchema[] | undefined)?.map((x) => x.const).filter((v) => v !== undefined);
    if (!values || values.length === 0 || values.length !== (sub?.anyOf as TSchema[]).length) throw e;
    const reason = `must be one of: ${values.map(String).join(', ')}`;
    throw new TStackError('INVALID_ARGUMENT', `${what}: field '${field}': ${reason}`, { ...e.details, reason });
  }
}

const byKind = new Map(Object.values(resourceKinds).map((d) => [d.kind, d]));

/** The definition of a kind ('vm-instance'), or undefined. */
export function kindDef(kind: string): KindDef | undefined {
  return byKind.get(kind);
}

export function mustKindDef(kind: string): KindDef {
  const d = byKind.get(kind);
  if (!d) throw new TStackError('INTERNAL', `unknown resource kind '${kind}'`);
  return d;
}

export interface CreateOptions {
  ownerAccountUuid: string;
  /** Use this uuid instead of a new v4 uuid. */
  uuid?: string;
  /**
   * May the caller use this referenced resource? (Accounts see their own resources and
   * adminOnly infrastructure.) Default: yes. A refused or missing reference is a 400 naming
   * the field, not a 404: the body is what is wrong.
   */
  canUse?: (r: Resource) => boolean;
}

export interface PreparedCreate {
  resource: Resource;
  /** Secret fields of the body (host password…), never stored: hand them to the create flow. */
  secrets: Record<string, unknown>;
  /** The referenced resources by field (first one of a list). */
  refs: Record<string, Resource>;
  /** Every referenced resource with the field that named it (`l3NetworkUuids.1`…), in body order. */
  used: Array<{ field: string; kind: string; resource: Resource }>;
}

/**
 * Validate a create body and build the resource to store (not stored yet): schema check,
 * cross-field checks, references (exist, right kind, usable), defaults, derived fields,
 * parentUuid, initial state/status. Throws INVALID_ARGUMENT naming the field.
 */
export async function prepareCreate(store: InventoryStore, def: KindDef, body: unknown, opts: CreateOptions): Promise<PreparedCreate> {
  const valid = validateBody(def.createSchema, body, `create ${def.kind}`);
  def.check?.(valid);
  const refs: Record<string, Resource> = {};
  const used: PreparedCreate['used'] = [];
  for (const ref of def.refs) {
    const v = valid[ref.field];
    if (v === undefined) continue;
    const uuids = ref.many ? (v as string[]) : [v as string];
    for (const [i, u] of uuids.entries()) {
      const field = ref.many ? `${ref.field}.${i}` : ref.field;
      const r = await store.get(u);
      if (!r || r.kind !== ref.kind || (opts.canUse && !opts.canUse(r))) throw refused(field, ref.kind, u);
      if (i === 0) refs[ref.field] = r;
      used.push({ field, kind: ref.kind, resource: r });
    }
  }
  let fields: Record<string, unknown> = { ...(def.defaults ?? {}), ...valid };
  if (def.normalize) fields = await def.normalize(fields, { store, refs });
  const secrets: Record<string, unknown> = {};
  for (const s of def.secretFields ?? []) {
    if (fields[s] !== undefined) secrets[s] = fields[s];
    delete fields[s];
  }
  const resource: Resource = {
    ...fields,
    uuid: opts.uuid ?? randomUUID(),
    kind: def.kind,
    name: String(fields.name ?? ''),
    createDate: '', // the store stamps both dates
    lastOpDate: '',
    ownerAccountUuid: opts.ownerAccountUuid,
    tags: (fields.tags as string[] | undefined) ?? [],
  };
  if (def.parentField) resource.parentUuid = String(fields[def.parentField]);
  if (def.initialState) resource.state = def.initialState;
  if (def.initialStatus) resource.status = def.initialStatus;
  return { resource, secrets, refs, used };
}

const refused = (field: string, kind: string, uuid: string): Error => invalid(field, `no ${kind} with uuid ${uuid}`);

/**
 * A create prepared under a wider `canUse` (the API's check of the body) held to a narrower one:
 * the error prepareCreate with `canUse` would have thrown for the first reference it refuses.
 */
export function recheckUse(p: PreparedCreate, canUse: (r: Resource) => boolean): void {
  for (const { field, kind, resource } of p.used) if (!canUse(resource)) throw refused(field, kind, resource.uuid);
}

/** Validate an update body; returns the patch (only the fields given). */
export function validateUpdate(def: KindDef, body: unknown): Partial<Resource> {
  return validateBody(def.updateSchema, body, `update ${def.kind}`) as Partial<Resource>;
}

/** Validate an action body `{ "<action>": {...} }`; returns the action name and its params. */
export function validateAction(def: KindDef, body: unknown): { action: string; params: Record<string, unknown> } {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalid('(body)', 'expected { "<action>": { ... } }');
  const keys = Object.keys(body);
  if (keys.length !== 1) throw invalid('(body)', `exactly one action expected, one of: ${Object.keys(def.actions).join(', ')}`);
  const name = keys[0]!;
  const a = def.actions[name];
  if (!a) throw invalid(name, `unknown action for ${def.kind}; one of: ${Object.keys(def.actions).join(', ') || '(none)'}`);
  const params = validateBody(a.schema, (body as Record<string, unknown>)[name], `${def.kind} action ${name}`);
  return { action: name, params };
}
