// One schema library (TypeBox) gives the TS type, the runtime validator and the JSON Schema
// of every protocol message and API body. Objects reject unknown fields by default.
import { Type, type TSchema, type Static, type TObject, type TProperties, type ObjectOptions } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { TStackError } from '../errors.js';

export { Type };
export type { TSchema, Static };

/** A strict object: unknown fields are rejected. */
export function Obj<T extends TProperties>(props: T, opts: ObjectOptions = {}): TObject<T> {
  return Type.Object(props, { additionalProperties: false, ...opts });
}

export const Uuid = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$', ...opts });

/** A uuid as the controller makes them (lowercase, dashed): the form a client-chosen uuid must take. */
export const LOWER_UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
export const LOWER_UUID_RE = new RegExp(LOWER_UUID_PATTERN);

/** A name that may end up in a file path, a config file, a netfilter rule or domain XML. */
export const SafeName = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$', ...opts });

/** Absolute path without '..' segments, NUL or newlines. */
export const AbsPath = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^(?!.*(^|/)\\.\\.(/|$))/[^\\0\\n\\r]*$', maxLength: 4096, ...opts });

export const Ipv4 = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)$', ...opts });

export const Mac = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$', ...opts });

/** One of a fixed list of values (the list stays the single source for docs and UIs). */
export const OneOf = <T extends string | number>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));

const cache = new WeakMap<TSchema, TypeCheck<TSchema>>();
function compiled<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = cache.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    cache.set(schema, c);
  }
  return c as TypeCheck<T>;
}

export interface FieldError {
  field: string;
  reason: string;
}

/** At most this many errors are reported (and computed: an error per item of a huge array must not cost the square). */
const MAX_ERRORS = 10;

/** Validation errors (the first few), with dotted field paths ("spec.nics.0.mac"). Linear in the value. */
export function check<T extends TSchema>(schema: T, value: unknown): FieldError[] {
  const c = compiled(schema);
  if (c.Check(value)) return [];
  const out: FieldError[] = [];
  const seen = new Set<string>();
  let looked = 0;
  for (const e of c.Errors(value)) {
    if (out.length >= MAX_ERRORS || ++looked > 10 * MAX_ERRORS) break;
    let field = e.path.replace(/^\//, '').replace(/\//g, '.');
    let reason = e.message;
    if (reason === 'Unexpected property') {
      // the path already names the unknown field
      reason = 'unknown field';
    } else if (e.schema && (e.schema as { additionalProperties?: unknown }).additionalProperties === false && e.value && typeof e.value === 'object' && !Array.isArray(e.value)) {
      // an error about a closed object as a whole: name its unknown field, not the object
      const allowed = (e.schema as TObject).properties ?? {};
      const extra = Object.keys(e.value as object).find((k) => !Object.hasOwn(allowed, k));
      if (extra !== undefined) {
        field = [field, extra].filter(Boolean).join('.');
        reason = 'unknown field';
      }
    }
    field ||= '(body)';
    if (!seen.has(field)) {
      seen.add(field);
      out.push({ field, reason });
    }
  }
  if (out.length === 0) out.push({ field: '(body)', reason: 'does not match the schema' });
  return out;
}

interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  patternProperties?: Record<string, SchemaNode>;
  maxProperties?: number;
  items?: SchemaNode;
  maxItems?: number;
}

const invalidAt = (what: string, field: string, reason: string): TStackError =>
  new TStackError('INVALID_ARGUMENT', `${what}: field '${field}': ${reason}`, { field, reason, errors: [{ field, reason }] });

/**
 * A linear pre-pass over the value along the schema, before the full validation: the first
 * unknown field of a closed object, and objects and arrays over the schema's maxProperties /
 * maxItems, are refused at once (a body of 100k unknown keys or items costs one pass).
 * Recurses only where the schema has sub-schemas, so its depth is the schema's.
 */
export function guardShape(schema: TSchema, value: unknown, what = 'request', path = ''): void {
  const s = schema as SchemaNode;
  const at = (k: string | number): string => (path ? `${path}.${k}` : String(k));
  if (Array.isArray(value)) {
    if (s.type !== 'array') return;
    if (s.maxItems !== undefined && value.length > s.maxItems) throw invalidAt(what, path || '(body)', `at most ${s.maxItems} items, got ${value.length}`);
    if (s.items && typeof s.items === 'object') for (let i = 0; i < value.length; i++) guardShape(s.items as TSchema, value[i], what, at(i));
    return;
  }
  if (value === null || typeof value !== 'object' || s.type !== 'object') return;
  const props = s.properties ?? {};
  const closed = s.additionalProperties === false;
  const extra = typeof s.additionalProperties === 'object' ? s.additionalProperties : s.patternProperties ? Object.values(s.patternProperties)[0] : undefined;
  let n = 0;
  for (const k of Object.keys(value)) {
    const known = Object.hasOwn(props, k);
    // a closed object stops at its first unknown field, whatever follows
    if (closed && !known) throw invalidAt(what, at(k), 'unknown field');
    if (s.maxProperties !== undefined && ++n > s.maxProperties) throw invalidAt(what, path || '(body)', `at most ${s.maxProperties} fields`);
    const sub = known ? props[k] : extra;
    if (sub) guardShape(sub as TSchema, (value as Record<string, unknown>)[k], what, at(k));
  }
}

/** Validate or throw INVALID_ARGUMENT naming the first bad field. */
export function validate<T extends TSchema>(schema: T, value: unknown, what = 'request'): Static<T> {
  // the compiled check is one linear pass; only a value that fails it is walked again to name the bad field
  if (compiled(schema).Check(value)) return value as Static<T>;
  guardShape(schema, value, what);
  const errs = check(schema, value);
  if (errs.length > 0) {
    const e = errs[0]!;
    throw new TStackError('INVALID_ARGUMENT', `${what}: field '${e.field}': ${e.reason}`, {
      field: e.field,
      reason: e.reason,
      errors: errs,
    });
  }
  return value as Static<T>;
}

/** JSON Schema of a TypeBox schema (TypeBox schemas are JSON Schema; strip the symbol keys). */
export function jsonSchema(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
}
