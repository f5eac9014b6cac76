// Generic create/update/delete of a collection, ownership and visibility rules, and the
// shaping of resources for output.
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { Resource } from '../store/types.js';
import { viewOf } from '../store/view.js';
import type { Principal } from '../auth/accounts.js';
import { blockedError, executeDeletePlan, planDelete, prepareCreate, storeLookup, type DeletePlan, type Dependent } from '../model/index.js';
import type { ApiRegistry, CollectionSpec, OpContext } from './registry.js';
import type { ShareRule } from './collections.js';

/**
 * Admin sees everything; a normal account what it owns, plus the admin's resources of shared
 * collections that are shared with it (zones, images, offerings, L3 networks, VXLAN pools:
 * what a tenant needs to pick; collections.ts SHARE_RULES).
 */
export function visible(p: Principal, r: Resource, spec?: CollectionSpec, adminAccountUuid?: string): boolean {
  if (p.isAdmin || r.ownerAccountUuid === p.accountUuid) return true;
  return spec?.shared !== undefined && adminAccountUuid !== undefined && r.ownerAccountUuid === adminAccountUuid && sharedWith(r, p.accountUuid, spec.shared);
}

/** How the admin shares one of its resources (controller/identity/sharing.ts); absent = the kind's default. */
export interface Sharing {
  public: boolean;
  accountUuids: string[];
}

/**
 * Is the admin's resource shared with the account? Only resources the kind's rule lets be
 * shared ever are; until the admin decides, the kind's default applies (the catalog: with all,
 * so it works for a new account at once; VXLAN pools: with none).
 */
export function sharedWith(r: Resource, accountUuid: string, rule: ShareRule): boolean {
  if (rule.only && !rule.only.test(r)) return false;
  if (rule.fixed) return true;
  const s = r._sharing as Sharing | undefined;
  if (s === undefined) return rule.byDefault;
  return s.public || s.accountUuids.includes(accountUuid);
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

/**
 * Strip internal fields (leading '_' and the collection's hidden fields); common fields first.
 * The SQLite store keeps this view's text with each row (controller/store/view.ts).
 */
export function shape(spec: CollectionSpec | undefined, r: Resource): Record<string, unknown> {
  return viewOf(r, spec?.hiddenFields);
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

/** `?cascade=true|false` (absent: false); anything else is a 400 naming `cascade`. */
export function cascadeParam(query: Record<string, string>): boolean {
  const v = query.cascade;
  if (v === undefined || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1' || v === '') return true;
  throw new TStackError('INVALID_ARGUMENT', `cascade: expected true or false, got '${v}'`, { field: 'cascade' });
}

/**
 * Plan the delete of `r` with the model's cascade rules (controller/model/cascade.ts) and
 * refuse it when blocked: a 409 naming the dependents (details.dependents). A normal account
 * never deletes, detaches or even learns about resources it cannot change: if the plan
 * touches any, the delete is refused without naming them (ask the admin).
 * `blockersOnly`: for deletes served by a module (it decides what goes with the resource).
 */
export async function planApiDelete(r: Resource, query: Record<string, string>, ctx: OpContext, o: { blockersOnly?: boolean } = {}): Promise<DeletePlan> {
  const cascade = cascadeParam(query);
  const plan = await planDelete(r, storeLookup(ctx.store), { cascade });
  const p = ctx.principal;
  if (!p.isAdmin) {
    // blockersOnly: a module's delete decides itself what goes with the resource; only the
    // refusals apply (and still never name another account's resources)
    const touched = o.blockersOnly ? [] : [...plan.deletes, ...plan.detaches.map((d) => d.resource)];
    const foreign = touched.filter((x) => !canWrite(p, x)).length + plan.blockers.filter((b) => b.uuid !== r.uuid && !ownedBy(p, b, touched)).length;
    if (foreign > 0) {
      throw new TStackError('CONFLICT', `cannot delete ${r.kind} ${r.name || r.uuid}: ${foreign} resource(s) your account cannot change depend on it; ask the admin`, { uuid: r.uuid, kind: r.kind, dependents: [] });
    }
  }
  if (plan.blockers.length > 0) throw blockedError(plan);
  return plan;
}

/** Is the blocker (a dependent found by the planner) the caller's own? */
function ownedBy(p: Principal, b: Dependent, known: Resource[]): boolean {
  const k = known.find((x) => x.uuid === b.uuid);
  return k !== undefined ? canWrite(p, k) : b.ownerAccountUuid === p.accountUuid;
}

/**
 * Delete with the model's cascade rules: children and attachments that always go with it
 * (attachments, IP ranges…) are deleted too; infrastructure children (clusters of a zone,
 * hosts of a cluster…) refuse the delete unless `?cascade=true`; VMs, volumes and NICs in use
 * always refuse it (409 listing them in details.dependents).
 */
export async function genericDelete(spec: CollectionSpec, r: Resource, ctx: OpContext, query: Record<string, string> = {}): Promise<Resource> {
  const plan = await planApiDelete(r, query, ctx);
  if (!(await ctx.store.get(r.uuid))) throw notFound(spec, r.uuid);
  await executeDeletePlan(ctx.store, plan);
  return r;
}
