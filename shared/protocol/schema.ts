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

/** All validation errors, with dotted field paths ("spec.nics.0.mac"). */
export function check<T extends TSchema>(schema: T, value: unknown): FieldError[] {
  const c = compiled(schema);
  if (c.Check(value)) return [];
  const out: FieldError[] = [];
  for (const e of c.Errors(value)) {
    let field = e.path.replace(/^\//, '').replace(/\//g, '.');
    let reason = e.message;
    // name the unknown field itself, not its parent object
    if (e.schema && (e.schema as { additionalProperties?: unknown }).additionalProperties === false && e.value && typeof e.value === 'object') {
      const allowed = Object.keys((e.schema as TObject).properties ?? {});
      const extra = Object.keys(e.value as object).filter((k) => !allowed.includes(k));
      if (extra.length) {
        field = [field, extra[0]].filter(Boolean).join('.');
        reason = 'unknown field';
      }
    }
    if (reason === 'Unexpected property') reason = 'unknown field';
    if (!out.some((o) => o.field === field)) out.push({ field: field || '(body)', reason });
  }
  return out;
}

/** Validate or throw INVALID_ARGUMENT naming the first bad field. */
export function validate<T extends TSchema>(schema: T, value: unknown, what = 'request'): Static<T> {
  const errs = check(schema, value);
  if (errs.length > 0) {
    const e = errs[0]!;
    throw new TStackError('INVALID_ARGUMENT', `${what}: field '${e.field}': ${e.reason}`, {
      field: e.field,
      reason: e.reason,
      errors: errs.slice(0, 10),
    });
  }
  return value as Static<T>;
}

/** JSON Schema of a TypeBox schema (TypeBox schemas are JSON Schema; strip the symbol keys). */
export function jsonSchema(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
}
