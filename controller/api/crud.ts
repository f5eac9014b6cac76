// Generic create/update/delete of a collection, ownership and visibility rules, and the
// shaping of resources for output.
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { Resource } from '../store/types.js';
import type { Principal } from '../auth/accounts.js';
import { prepareCreate } from '../model/index.js';
import type { ApiRegistry, CollectionSpec, OpContext } from './registry.js';

/**
 * Admin sees everything; a normal account what it owns, plus the admin's resources of
 * shared collections (zones, images, offerings, L3 networks: what a tenant needs to pick).
 */
export function visible(p: Principal, r: Resource, spec?: CollectionSpec, adminAccountUuid?: string): boolean {
  if (p.isAdmin || r.ownerAccountUuid === p.accountUuid) return true;
  return spec?.shared === true && adminAccountUuid !== undefined && r.ownerAccountUuid === adminAccountUuid;
}

/** May the caller reference this resource (in a create/update body or an action)? */
export function canUse(ctx: OpContext, r: Resource): boolean {
  return visible(ctx.principal, r, ctx.registry.byKind(r.kind), ctx.adminAccountUuid);
}

/** May the caller change it (owner or admin; shared resources are read-only to others)? */
export function canWrite(p: Principal, r: Resource): boolean {
  return p.isAdmin || r.ownerAccountUuid === p.accountUuid;
}

export function notFound(spec: CollectionSpec | undefined, uuid: string): TStackError {
  return new TStackError('NOT_FOUND', `${spec?.kind ?? 'resource'} ${uuid} not found`, { uuid });
}

/** A resource of the collection the caller may see, else NOT_FOUND (never FORBIDDEN: no existence leak). */
export async function getVisible(ctx: OpContext, spec: CollectionSpec, uuid: string): Promise<Resource> {
  const r = await ctx.store.get(uuid);
  if (!r || r.kind !== spec.kind || !visible(ctx.principal, r, spec, ctx.adminAccountUuid)) throw notFound(spec, uuid);
  return r;
}

const FIRST = ['uuid', 'name', 'description', 'kind', 'state', 'status'];
const LAST = ['parentUuid', 'ownerAccountUuid', 'tags', 'createDate', 'lastOpDate'];

/** Strip internal fields (leading '_' and the collection's hidden fields); common fields first. */
export function shape(spec: CollectionSpec | undefined, r: Resource): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const hidden = spec?.hiddenFields;
  const keep = (k: string): boolean => !k.startsWith('_') && !hidden?.includes(k) && r[k] !== undefined;
  for (const k of FIRST) if (keep(k)) out[k] = r[k];
  for (const [k, v] of Object.entries(r)) if (keep(k) && !FIRST.includes(k) && !LAST.includes(k)) out[k] = v;
  for (const k of LAST) if (keep(k)) out[k] = r[k];
  return out;
}

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

/** The kind a `fooBarUuid(s)` field refers to, if such a kind is registered. */
export function refKind(reg: ApiRegistry, spec: CollectionSpec, field: string): string | undefined {
  if (spec.refs && field in spec.refs) return spec.refs[field];
  const m = /^(.+?)Uuids?$/.exec(field);
  if (!m) return undefined;
  let base = m[1]!;
  for (;;) {
    const k = kebab(base);
    if (reg.byKind(k)) return k;
    const stripped = base.replace(/^(default|root|data|source|target|dest|src|peer|backup|primary)(?=[A-Z])/, '');
    if (stripped === base) return undefined;
    base = stripped.charAt(0).toLowerCase() + stripped.slice(1);
  }
}

/** Check that every referenced resource exists, has the right kind and is visible to the caller. */
export async function checkRefs(ctx: OpContext, spec: CollectionSpec, body: Record<string, unknown>): Promise<void> {
  for (const [field, value] of Object.entries(body)) {
    const kind = refKind(ctx.registry, spec, field);
    if (!kind || value === undefined || value === null) continue;
    const uuids = Array.isArray(value) ? value : [value];
    for (const u of uuids) {
      if (typeof u !== 'string') continue;
      const r = await ctx.store.get(u);
      if (!r || r.kind !== kind || !canUse(ctx, r)) {
        throw new TStackError('INVALID_ARGUMENT', `${field}: no ${kind} ${u} (or not visible to your account)`, { field, reason: `no ${kind} ${u}` });
      }
    }
  }
}

export async function genericCreate(spec: CollectionSpec, body: Record<string, unknown>, ctx: OpContext): Promise<Resource> {
  if (spec.model) {
    const p = await prepareCreate(ctx.store, spec.model, body, { ownerAccountUuid: ctx.principal.accountUuid, canUse: (r) => canUse(ctx, r) });
    return ctx.store.create(p.resource);
  }
  await checkRefs(ctx, spec, body);
  const now = new Date().toISOString();
  const r: Resource = {
    ...body,
    uuid: randomUUID(),
    kind: spec.kind,
    name: typeof body.name === 'string' ? body.name : '',
    createDate: now,
    lastOpDate: now,
    ownerAccountUuid: ctx.principal.accountUuid,
    tags: Array.isArray(body.tags) ? (body.tags as string[]) : [],
  };
  if (spec.parentField && typeof body[spec.parentField] === 'string') r.parentUuid = body[spec.parentField] as string;
  if (spec.initialState && r.state === undefined) r.state = spec.initialState;
  return ctx.store.create(r);
}

export async function genericUpdate(spec: CollectionSpec, r: Resource, body: Record<string, unknown>, ctx: OpContext): Promise<Resource> {
  await checkRefs(ctx, spec, body);
  if (Object.keys(body).length === 0) return r;
  return ctx.store.update(r.uuid, body as Partial<Resource>);
}

/** Refuse while children exist (collections whose parentField points at this kind). */
export async function genericDelete(spec: CollectionSpec, r: Resource, ctx: OpContext): Promise<Resource> {
  const blockers: string[] = [];
  for (const c of ctx.registry.collections()) {
    if (!c.parentField || refKind(ctx.registry, c, c.parentField) !== spec.kind) continue;
    const children = await ctx.store.byParent(c.kind, r.uuid);
    if (children.length) blockers.push(`${children.length} ${c.collection} (${children.slice(0, 3).map((x) => x.name || x.uuid).join(', ')}${children.length > 3 ? ', …' : ''})`);
  }
  if (blockers.length) throw new TStackError('CONFLICT', `${spec.kind} ${r.name || r.uuid} still has ${blockers.join(' and ')}; delete them first`, { uuid: r.uuid });
  if (!(await ctx.store.delete(r.uuid))) throw notFound(spec, r.uuid);
  return r;
}
