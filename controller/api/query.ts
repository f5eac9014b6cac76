// List-query parsing: ?q=field<op>value (repeatable, AND-ed), limit, start, sort=+f|-f,
// count=true, fields=a,b. Pure functions (unit-tested); the result is a store Query.
import type { TSchema } from '@sinclair/typebox';
import { TStackError } from '../../shared/errors.js';
import type { Filter, FilterOp, Query } from '../store/types.js';
import { wildcardCount } from '../store/like.js';

export const DEFAULT_LIMIT = 1000;
export const MAX_LIMIT = 10_000;

/** Bounds of one list request (issue 20: each keeps a request's cost proportional to the data). */
export const LIST_LIMITS = {
  /** q parameters (AND-ed filters). */
  filters: 32,
  /** characters of one q condition. */
  condition: 2048,
  /** values of one '?=' list. */
  inValues: 256,
  /** characters of a '~=' pattern, and its '%'/'_' wildcards. */
  likePattern: 256,
  likeWildcards: 16,
  /** names in fields=. */
  fields: 64,
} as const;

export interface ListParams {
  query: Query;
  count: boolean;
  fields?: string[];
  /** `cursor=`: the `next` of a previous page (controller/api/cursor.ts), when the caller allows cursors. */
  cursor?: string;
}

const FIELD_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
// Longest operators first so 'a>=1' is not read as 'a>' '=1'.
const OPS: FilterOp[] = ['!=', '>=', '<=', '~=', '?=', '=', '>', '<'];

const bad = (field: string, reason: string): TStackError => new TStackError('INVALID_ARGUMENT', `${field}: ${reason}`, { field, reason });

type FieldType = 'string' | 'number' | 'boolean' | 'unknown';

/** The JSON type of a field according to a schema (object properties), for value coercion. */
export function fieldTypeOf(schema: TSchema | undefined, field: string): FieldType {
  if (!schema) return 'unknown';
  const props = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  if (!Object.hasOwn(props, field)) return 'unknown';
  let s = props[field] as { type?: string | string[]; anyOf?: TSchema[]; items?: TSchema } | undefined;
  if (!s) return 'unknown';
  if (s.type === 'array' && s.items) s = s.items as typeof s;
  const types = new Set<string>();
  const collect = (x: { type?: string | string[]; anyOf?: TSchema[]; const?: unknown }): void => {
    if (Array.isArray(x.type)) x.type.forEach((t) => types.add(t));
    else if (x.type) types.add(x.type);
    else if (x.const !== undefined) types.add(typeof x.const);
    for (const a of x.anyOf ?? []) collect(a as typeof x);
  };
  collect(s);
  types.delete('null');
  if (types.size !== 1) return 'unknown';
  const t = [...types][0]!;
  if (t === 'integer' || t === 'number') return 'number';
  if (t === 'boolean') return 'boolean';
  if (t === 'string') return 'string';
  return 'unknown';
}

function coerce(field: string, raw: string, type: FieldType): string | number | boolean | null {
  if (raw === 'null' && type !== 'string') return null;
  switch (type) {
    case 'string':
      return raw;
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw bad(`q.${field}`, `expected a number, got '${raw}'`);
      return n;
    }
    case 'boolean':
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      throw bad(`q.${field}`, `expected true or false, got '${raw}'`);
    default:
      // unknown field type: numbers and booleans look like themselves
      if (/^-?\d+(\.\d+)?$/.test(raw) && raw.length < 16) return Number(raw);
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      return raw;
  }
}

/** One `field<op>value` condition. */
export function parseCondition(cond: string, schema?: TSchema): Filter {
  if (cond.length > LIST_LIMITS.condition) throw bad('q', `a condition is at most ${LIST_LIMITS.condition} characters`);
  let best: { i: number; op: FilterOp } | undefined;
  for (const op of OPS) {
    const i = cond.indexOf(op);
    if (i > 0 && (best === undefined || i < best.i || (i === best.i && op.length > best.op.length))) best = { i, op };
  }
  if (!best) throw bad('q', `'${cond}' is not field<op>value (ops: = != > < >= <= ~= ?=)`);
  const field = cond.slice(0, best.i);
  const raw = cond.slice(best.i + best.op.length);
  if (!FIELD_RE.test(field)) throw bad('q', `'${field}' is not a field name`);
  const type = fieldTypeOf(schema, field);
  if (best.op === '?=') {
    const parts = raw.split(',').filter((p) => p !== '');
    if (parts.length === 0) throw bad(`q.${field}`, '?= (in) needs a comma-separated list');
    if (parts.length > LIST_LIMITS.inValues) throw bad(`q.${field}`, `?= (in) takes at most ${LIST_LIMITS.inValues} values`);
    return {
      field,
      op: '?=',
      value: parts.map((p) => {
        const v = coerce(field, p, type);
        if (v === null || typeof v === 'boolean') return String(v);
        return v;
      }),
    };
  }
  if (best.op === '~=') {
    if (raw.length > LIST_LIMITS.likePattern) throw bad(`q.${field}`, `a ~= pattern is at most ${LIST_LIMITS.likePattern} characters`);
    if (wildcardCount(raw) > LIST_LIMITS.likeWildcards) throw bad(`q.${field}`, `a ~= pattern has at most ${LIST_LIMITS.likeWildcards} wildcards (% and _)`);
    return { field, op: '~=', value: raw };
  }
  if ((best.op === '>' || best.op === '<' || best.op === '>=' || best.op === '<=') && raw === '') throw bad(`q.${field}`, `${best.op} needs a value`);
  return { field, op: best.op, value: coerce(field, raw, type) };
}

function int(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw)) throw bad(name, `expected a non-negative integer, got '${raw}'`);
  const n = Number(raw);
  if (n < min || n > max) throw bad(name, `must be between ${min} and ${max}`);
  return n;
}

const one = (name: string, v: string | string[] | undefined): string | undefined => {
  if (Array.isArray(v)) {
    if (v.length > 1) throw bad(name, 'given more than once');
    return v[0];
  }
  return v;
};

const KNOWN = new Set(['q', 'limit', 'start', 'sort', 'count', 'fields', 'wait', 'replyWithCount']);

/** A field name the request may use: declared (first segment of a dotted name), when `known` is given. */
function checkKnown(param: string, field: string, known: ReadonlySet<string> | undefined): void {
  if (!known) return;
  const top = field.split('.', 1)[0]!;
  if (!known.has(top)) throw bad(param, `'${field}' is not a field of this collection`);
}

/**
 * Parse a list request's query string. `sort=+name` arrives as ' name' (a '+' in a query
 * string is a space), so a leading space means ascending too. `known`: the fields the
 * collection declares; q, sort and fields naming anything else are a 400.
 */
export function parseListQuery(kind: string, qs: Record<string, string | string[] | undefined>, schema?: TSchema, known?: ReadonlySet<string>, o: { cursors?: boolean } = {}): ListParams {
  for (const k of Object.keys(qs)) {
    if (!KNOWN.has(k) && !(k === 'cursor' && o.cursors)) throw bad(k, `unknown query parameter (use q=field<op>value to filter; also limit, start, sort, count, fields${o.cursors ? ', cursor' : ''})`);
  }
  const q = qs.q === undefined ? [] : Array.isArray(qs.q) ? qs.q : [qs.q];
  if (q.length > LIST_LIMITS.filters) throw bad('q', `at most ${LIST_LIMITS.filters} filters`);
  const filters = q.map((c) => parseCondition(c, schema));
  for (const f of filters) checkKnown('q', f.field, known);
  const query: Query = { kind, filters, limit: DEFAULT_LIMIT, start: 0 };
  const limit = one('limit', qs.limit);
  if (limit !== undefined) query.limit = int('limit', limit, 0, MAX_LIMIT);
  const start = one('start', qs.start);
  if (start !== undefined) query.start = int('start', start, 0, Number.MAX_SAFE_INTEGER);
  const sort = one('sort', qs.sort);
  if (sort !== undefined) {
    const m = /^([+ -]?)(.+)$/.exec(sort);
    const field = m?.[2]?.trim() ?? '';
    if (!FIELD_RE.test(field)) throw bad('sort', `expected +field or -field, got '${sort}'`);
    checkKnown('sort', field, known);
    query.sort = { field, dir: m![1] === '-' ? 'desc' : 'asc' };
  }
  const cursor = one('cursor', qs.cursor);
  if (cursor !== undefined && start !== undefined) throw bad('cursor', 'cursor and start exclude each other (a cursor already says where the page starts)');
  const count = one('count', qs.count);
  if (count !== undefined && count !== 'true' && count !== 'false') throw bad('count', `expected true or false, got '${count}'`);
  const out: ListParams = { query, count: count === 'true' };
  // ZStack's replyWithCount: a page without `total` skips counting every match (issue 19)
  const withCount = one('replyWithCount', qs.replyWithCount);
  if (withCount !== undefined && withCount !== 'true' && withCount !== 'false') throw bad('replyWithCount', `expected true or false, got '${withCount}'`);
  if (withCount === 'false' && !out.count && o.cursors) query.skipTotal = true;
  if (cursor !== undefined) out.cursor = cursor;
  const fields = one('fields', qs.fields);
  if (fields !== undefined) {
    const fs = fields.split(',').map((f) => f.trim()).filter(Boolean);
    if (fs.length === 0) throw bad('fields', 'expected a comma-separated list of field names');
    if (fs.length > LIST_LIMITS.fields) throw bad('fields', `at most ${LIST_LIMITS.fields} names`);
    for (const f of fs) {
      if (!FIELD_RE.test(f)) throw bad('fields', `'${f}' is not a field name`);
      checkKnown('fields', f, known);
    }
    out.fields = fs;
  }
  return out;
}

/** Keep only the requested fields of a resource. */
export function project<T extends Record<string, unknown>>(item: T, fields: string[] | undefined): Record<string, unknown> {
  if (!fields) return item;
  const out: Record<string, unknown> = {};
  for (const f of fields) if (Object.hasOwn(item, f)) out[f] = item[f];
  return out;
}

/** Fields every resource has (controller/store/types.ts Resource). */
export const COMMON_FIELDS = ['uuid', 'kind', 'name', 'description', 'state', 'status', 'parentUuid', 'ownerAccountUuid', 'tags', 'createDate', 'lastOpDate'] as const;

const propsOf = (s: TSchema | undefined): string[] => Object.keys((s as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});

/**
 * The fields a list request may name: the common ones, the properties of the given schemas
 * (create, update, view) and the system-set fields, less hidden and internal ones.
 */
export function declaredFields(schemas: Array<TSchema | undefined>, extra: readonly string[] = [], hidden: readonly string[] = []): Set<string> {
  const out = new Set<string>([...COMMON_FIELDS, ...extra]);
  for (const s of schemas) for (const p of propsOf(s)) out.add(p);
  for (const h of hidden) out.delete(h);
  for (const f of out) if (f.startsWith('_')) out.delete(f);
  return out;
}
