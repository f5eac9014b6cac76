// Query semantics shared by both stores. SQLite evaluates filters in SQL; Redis (and the
// cascade planner, and tests) evaluate them here in JS. Both follow SQLite's rules so the
// same query gives the same answer on either backend:
//   - a missing field is NULL; NULL matches only `= null`; `!= null` matches every present value;
//     every other comparison with NULL is false;
//   - booleans compare as 1/0;
//   - a numeric string compared with a numeric field compares as a number ("cpuNum>2" works
//     when the API passes the value as the string "2");
//   - otherwise values order NULL < numbers < text; text compares by code unit (BINARY);
//   - `~=` is SQL LIKE: % any run, _ one character, ASCII case-insensitive;
//   - `?=` is IN over a list;
//   - `=` / `!=` on an array field (tags, l3NetworkUuids…) mean contains / does not contain.
import { TStackError } from '../../shared/errors.js';
import type { Filter, FilterOp, Position, Query, Resource } from './types.js';
import { likeMatcher, type LikeMatcher } from './like.js';

export const FILTER_OPS: readonly FilterOp[] = ['=', '!=', '>', '<', '>=', '<=', '~=', '?='];

/** Field names allowed in filters and sort: identifiers, dotted for nested objects. */
const FIELD_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

export function checkField(field: string): void {
  if (!FIELD_RE.test(field)) {
    throw new TStackError('INVALID_ARGUMENT', `query: bad field name '${field}' (letters, digits, _ and dots only)`, { field });
  }
}

/**
 * Hard bounds of any query (the API sets tighter ones per request, controller/api/query.ts):
 * they keep SQL below SQLite's expression-depth and parameter limits and the in-memory
 * evaluator's work proportional to the data.
 */
export const QUERY_LIMITS = { filters: 256, inValues: 4096, likePattern: 4096 } as const;

const tooBig = (field: string, what: string): TStackError => new TStackError('INVALID_ARGUMENT', `query: ${what}`, { field });

export function checkQuery(q: Query): void {
  if (!q.kind) throw new TStackError('INVALID_ARGUMENT', 'query: kind is required', { field: 'kind' });
  if ((q.filters?.length ?? 0) > QUERY_LIMITS.filters) throw tooBig('q', `at most ${QUERY_LIMITS.filters} filters`);
  for (const f of q.filters ?? []) {
    checkField(f.field);
    if (!FILTER_OPS.includes(f.op)) throw new TStackError('INVALID_ARGUMENT', `query: unknown operator '${String(f.op)}'`, { field: f.field });
    if (f.op === '?=' && !Array.isArray(f.value)) {
      throw new TStackError('INVALID_ARGUMENT', `query: '?=' on '${f.field}' needs a list of values`, { field: f.field });
    }
    if (f.op === '~=' && typeof f.value !== 'string') {
      throw new TStackError('INVALID_ARGUMENT', `query: '~=' on '${f.field}' needs a string pattern`, { field: f.field });
    }
    if (f.op === '?=' && (f.value as unknown[]).length > QUERY_LIMITS.inValues) throw tooBig(f.field, `'?=' takes at most ${QUERY_LIMITS.inValues} values`);
    if (f.op === '~=' && (f.value as string).length > QUERY_LIMITS.likePattern) throw tooBig(f.field, `'~=' patterns are at most ${QUERY_LIMITS.likePattern} characters`);
  }
  if (q.sort) checkField(q.sort.field);
  if (q.limit !== undefined && (!Number.isInteger(q.limit) || q.limit < 0)) {
    throw new TStackError('INVALID_ARGUMENT', 'query: limit must be a non-negative integer', { field: 'limit' });
  }
  if (q.start !== undefined && (!Number.isInteger(q.start) || q.start < 0)) {
    throw new TStackError('INVALID_ARGUMENT', 'query: start must be a non-negative integer', { field: 'start' });
  }
  if (q.after !== undefined) checkPosition(q.after, q.sort);
}

/** A position fits its query: texts for createDate and uuid, a scalar sort value exactly when sorted. */
function checkPosition(p: Position, sort: Query['sort']): void {
  const bad = (why: string): TStackError => new TStackError('INVALID_ARGUMENT', `query: after: ${why}`, { field: 'after' });
  if (typeof p !== 'object' || p === null) throw bad('expected a position');
  if (typeof p.createDate !== 'string' || typeof p.uuid !== 'string') throw bad('createDate and uuid must be texts');
  if (sort === undefined) {
    if (p.sort !== undefined) throw bad('a sort value without a sort');
  } else if (p.sort !== null && typeof p.sort !== 'string' && !(typeof p.sort === 'number' && Number.isFinite(p.sort))) {
    throw bad('the sort value must be a text, a finite number or null');
  }
}

export const NUMERIC_RE = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/**
 * The value of a (possibly dotted) field of a resource: own properties only, so a field named
 * `constructor` or `__proto__` is a missing field, never something from Object.prototype.
 */
export function fieldValue(r: Record<string, unknown>, field: string): unknown {
  if (!field.includes('.')) return Object.hasOwn(r, field) ? r[field] : undefined;
  let cur: unknown = r;
  for (const part of field.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

type Scalar = null | number | string;

/** Normalise a stored value the way json_extract would present it to SQL. */
function scalar(v: unknown): Scalar {
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function rank(v: Scalar): number {
  return v === null ? 0 : typeof v === 'number' ? 1 : 2;
}

/** SQLite-style comparison (-1/0/1) of two non-null scalars. */
function cmp(a: Scalar, b: Scalar): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  if (a === b) return 0;
  return (a as string | number) < (b as string | number) ? -1 : 1;
}

/** The filter value as it should meet this stored value (numeric coercion of numeric strings). */
function operand(stored: Scalar, v: unknown): Scalar {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof stored === 'number' && typeof v === 'string' && NUMERIC_RE.test(v)) return Number(v);
  return scalar(v);
}

// compiled LIKE patterns of the query being evaluated (one compile per filter, not per row)
const likeCache = new WeakMap<Filter, LikeMatcher>();
function likeOf(f: Filter): LikeMatcher {
  let m = likeCache.get(f);
  if (!m) likeCache.set(f, (m = likeMatcher(String(f.value))));
  return m;
}

/**
 * A '?=' filter's values as the stored values they equal (operand's coercions, cmp's equality):
 * one lookup per row instead of a walk over up to 4,096 values (issue 19: the flat cache's
 * `uuid ?=` read of 2,000 VMs made 4 M comparisons; a hostile query could stall the loop).
 */
interface InSet {
  nums: Set<number>;
  strs: Set<string>;
}
const inCache = new WeakMap<Filter, InSet>();
function inSetOf(f: Filter): InSet {
  let m = inCache.get(f);
  if (m) return m;
  m = { nums: new Set(), strs: new Set() };
  for (const v of f.value as unknown[]) {
    if (v === null || v === undefined) continue;
    // a number meets numbers, a boolean meets 0/1, a numeric text meets its number and itself
    if (typeof v === 'number') m.nums.add(v);
    else if (typeof v === 'boolean') m.nums.add(v ? 1 : 0);
    else if (typeof v === 'string') {
      m.strs.add(v);
      if (NUMERIC_RE.test(v)) m.nums.add(Number(v));
    } else m.strs.add(JSON.stringify(v));
  }
  inCache.set(f, m);
  return m;
}

function matchScalar(stored: Scalar, f: Filter): boolean {
  const { op, value } = f;
  if (op === '=' && value === null) return stored === null;
  if (op === '!=' && value === null) return stored !== null;
  if (stored === null) return false;
  switch (op) {
    case '=':
      return cmp(stored, operand(stored, value)) === 0;
    case '!=':
      return cmp(stored, operand(stored, value)) !== 0;
    case '>':
      return value !== null && cmp(stored, operand(stored, value)) > 0;
    case '<':
      return value !== null && cmp(stored, operand(stored, value)) < 0;
    case '>=':
      return value !== null && cmp(stored, operand(stored, value)) >= 0;
    case '<=':
      return value !== null && cmp(stored, operand(stored, value)) <= 0;
    case '~=':
      return likeOf(f)(String(stored));
    case '?=': {
      const m = inSetOf(f);
      return typeof stored === 'number' ? m.nums.has(stored) : m.strs.has(stored);
    }
  }
  return false;
}

export function matchesFilter(r: Record<string, unknown>, f: Filter): boolean {
  const raw = fieldValue(r, f.field);
  if (Array.isArray(raw) && (f.op === '=' || f.op === '!=') && f.value !== null) {
    const has = raw.some((x) => matchScalar(scalar(x), { ...f, op: '=' }));
    return f.op === '=' ? has : !has;
  }
  return matchScalar(scalar(raw), f);
}

export function matchesAll(r: Record<string, unknown>, filters: readonly Filter[] = []): boolean {
  return filters.every((f) => matchesFilter(r, f));
}

/** The order both stores use: the sort field (NULLs first ascending), then createDate, then uuid. */
export function compareResources(a: Resource, b: Resource, sort?: Query['sort']): number {
  if (sort) {
    const c = cmp(scalar(fieldValue(a, sort.field)), scalar(fieldValue(b, sort.field)));
    if (c !== 0) return sort.dir === 'desc' ? -c : c;
  }
  const d = cmp(a.createDate, b.createDate);
  if (d !== 0) return d;
  return cmp(a.uuid, b.uuid);
}

/** Where a resource stands in a query's order (Query.after: the next page starts after it). */
export function positionOf(r: Resource, sort?: Query['sort']): Position {
  const p: Position = { createDate: r.createDate, uuid: r.uuid };
  if (sort) p.sort = scalar(fieldValue(r, sort.field));
  return p;
}

/** The order of compareResources between a resource and a position (> 0: the resource comes after). */
export function compareToPosition(r: Resource, p: Position, sort?: Query['sort']): number {
  if (sort) {
    const c = cmp(scalar(fieldValue(r, sort.field)), p.sort ?? null);
    if (c !== 0) return sort.dir === 'desc' ? -c : c;
  }
  const d = cmp(r.createDate, p.createDate);
  if (d !== 0) return d;
  return cmp(r.uuid, p.uuid);
}

/**
 * CPU budget of one in-memory query: past it the query fails (400) instead of holding the
 * event loop, whatever the cause (defence in depth behind the linear matcher and the limits).
 */
export const QUERY_BUDGET_MS = 1_500;

/** Evaluate a whole query over an in-memory list (Redis store, cascade planner, tests). */
export function runQuery<T extends Resource>(all: T[], q: Query, budgetMs = QUERY_BUDGET_MS): { items: T[]; total: number } {
  checkQuery(q);
  const deadline = performance.now() + budgetMs;
  const hits: T[] = [];
  for (let i = 0; i < all.length; i++) {
    if ((i & 15) === 15 && performance.now() > deadline) {
      throw new TStackError('INVALID_ARGUMENT', `query on ${q.kind} took longer than ${budgetMs} ms: narrow it (fewer or simpler filters)`, { field: 'q' });
    }
    const r = all[i]!;
    if (r.kind === q.kind && (q.ownerAccountUuid === undefined || r.ownerAccountUuid === q.ownerAccountUuid) && matchesAll(r, q.filters)) hits.push(r);
  }
  const total = q.skipTotal ? -1 : hits.length;
  const after = q.after;
  const rest = after === undefined ? hits : hits.filter((r) => compareToPosition(r, after, q.sort) > 0);
  rest.sort((a, b) => compareResources(a, b, q.sort));
  const start = q.start ?? 0;
  const items = q.limit === undefined ? rest.slice(start) : rest.slice(start, start + q.limit);
  return { items, total };
}

/** Apply a patch: undefined values delete fields. uuid and kind never change. */
export function applyPatch<T extends Resource>(cur: T, patch: Partial<Resource>, now: string): T {
  const next: Record<string, unknown> = { ...cur };
  for (const [k, v] of Object.entries(patch)) {
    if (k === 'uuid' || k === 'kind' || k === 'createDate') continue;
    if (v === undefined) delete next[k];
    else next[k] = v;
  }
  next.lastOpDate = patch.lastOpDate ?? now;
  return next as T;
}

/** Fill createDate/lastOpDate (when absent or empty)/tags and check the common fields of a new resource. */
export function prepareNew<T extends Resource>(r: T, now: string): T {
  if (!r.uuid || typeof r.uuid !== 'string') throw new TStackError('INVALID_ARGUMENT', 'resource: uuid is required', { field: 'uuid' });
  if (!r.kind || typeof r.kind !== 'string') throw new TStackError('INVALID_ARGUMENT', 'resource: kind is required', { field: 'kind' });
  const out: Record<string, unknown> = { ...r };
  for (const [k, v] of Object.entries(out)) if (v === undefined) delete out[k];
  out.createDate = r.createDate || now;
  out.lastOpDate = r.lastOpDate || out.createDate;
  out.tags = r.tags ?? [];
  out.name = r.name ?? '';
  out.ownerAccountUuid = r.ownerAccountUuid ?? '';
  return out as T;
}

export function asList(from: string | string[]): string[] {
  return Array.isArray(from) ? from : [from];
}

/** Monotonic-enough ISO timestamps: never equal to or before the previous one in this process. */
let lastTs = 0;
export function nowIso(): string {
  let t = Date.now();
  if (t <= lastTs) t = lastTs + 1;
  lastTs = t;
  return new Date(t).toISOString();
}

/** The CONFLICT of a transition() whose current state is not one of `allowed` (both backends). */
export function transitionConflict(cur: Resource, allowed: string[], to: string): TStackError {
  return new TStackError('CONFLICT', `${cur.kind} ${cur.uuid} is ${cur.state ?? '(no state)'}, expected ${allowed.join(' or ')} to move to ${to}`, {
    uuid: cur.uuid,
    kind: cur.kind,
    state: cur.state,
    expected: allowed,
    to,
  });
}
