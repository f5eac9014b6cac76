// Forms and queries from the API's own description (/v1/openapi.json): which fields a create or
// action takes, what input each needs, how form values become a request body, and where an API
// error's `field` belongs. Pure functions (unit-tested in test/unit/webui).
import type { CliCollection, JsonSchema } from './types.js';

export interface OpenApiDoc {
  components: { schemas: Record<string, JsonSchema> };
  'x-tstack-collections': CliCollection[];
}

export type FieldInput = 'text' | 'textarea' | 'password' | 'integer' | 'number' | 'boolean' | 'enum' | 'ref' | 'refs' | 'list' | 'json';

export interface Field {
  name: string;
  label: string;
  input: FieldInput;
  required: boolean;
  description?: string;
  options?: string[];
  /** The kind a ref/refs field names (e.g. 'l3-network'). */
  refKind?: string;
  schema: JsonSchema;
}

export function resolve(doc: Pick<OpenApiDoc, 'components'>, s: JsonSchema | undefined): JsonSchema {
  let cur = s ?? {};
  for (let i = 0; i < 10 && cur.$ref; i++) cur = doc.components.schemas[cur.$ref.replace('#/components/schemas/', '')] ?? {};
  return cur;
}

const kebab = (s: string): string => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/** `fooBarUuid(s)` → the first known kind among 'foo-bar', 'bar' (e.g. defaultL3NetworkUuid → l3-network). */
export function refKindOf(field: string, kinds: readonly string[]): string | undefined {
  const m = /^(.+?)Uuids?$/.exec(field);
  if (!m) return undefined;
  const parts = kebab(m[1]!).split('-');
  for (let i = 0; i < parts.length; i++) {
    const k = parts.slice(i).join('-');
    if (kinds.includes(k)) return k;
  }
  return undefined;
}

const enumOf = (s: JsonSchema): string[] | undefined => {
  if (Array.isArray(s.enum)) return s.enum.map(String);
  const alts = s.anyOf ?? s.oneOf;
  if (alts && alts.length && alts.every((a) => a.const !== undefined)) return alts.map((a) => String(a.const));
  return undefined;
};

export const labelOf = (name: string): string => {
  const words = kebab(name).replace(/-uuids?$/, '').split('-');
  const s = words.join(' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
};

/** The fields of an object schema, in schema order, with the input each needs. */
export function fieldsOf(doc: Pick<OpenApiDoc, 'components'>, schema: JsonSchema | undefined, kinds: readonly string[]): Field[] {
  const s = resolve(doc, schema);
  const req = new Set(s.required ?? []);
  return Object.entries(s.properties ?? {}).map(([name, raw]) => {
    const p = resolve(doc, raw);
    const f: Field = { name, label: labelOf(name), input: 'text', required: req.has(name), schema: p };
    if (p.description) f.description = p.description;
    const en = enumOf(p);
    const type = Array.isArray(p.type) ? p.type[0] : p.type;
    const rk = refKindOf(name, kinds);
    if (en) {
      f.input = 'enum';
      f.options = en;
    } else if (type === 'boolean') f.input = 'boolean';
    else if (type === 'integer') f.input = 'integer';
    else if (type === 'number') f.input = 'number';
    else if (type === 'array') {
      const it = resolve(doc, p.items);
      f.input = rk ? 'refs' : it.type === 'string' ? 'list' : 'json';
    } else if (type === 'object' || (!type && !en)) f.input = 'json';
    else if (rk) f.input = 'ref';
    else if (/password/i.test(name)) f.input = 'password';
    else if (/userData|sshKey|PrivateKey|description|script/i.test(name) || (p.maxLength ?? 0) > 1024) f.input = 'textarea';
    if (rk) f.refKind = rk;
    return f;
  });
}

export type FormValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Form values → request body. Empty optional fields are left out; numbers are parsed; a bad
 * value is reported as {field: reason} so it shows at the field before anything is sent.
 */
export function toBody(fields: Field[], values: FormValues): { body: Record<string, unknown>; errors: Record<string, string> } {
  const body: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const f of fields) {
    const v = values[f.name];
    const empty = v === undefined || v === '' || (Array.isArray(v) && v.length === 0);
    if (f.input === 'boolean') {
      if (v === true || v === false) body[f.name] = v;
      continue;
    }
    if (empty) {
      if (f.required) errors[f.name] = 'required';
      continue;
    }
    switch (f.input) {
      case 'integer':
      case 'number': {
        const n = Number(String(v).trim());
        if (!Number.isFinite(n) || (f.input === 'integer' && !Number.isInteger(n))) errors[f.name] = `expected ${f.input === 'integer' ? 'an integer' : 'a number'}`;
        else body[f.name] = n;
        break;
      }
      case 'refs':
        body[f.name] = Array.isArray(v) ? v : [String(v)];
        break;
      case 'list':
        body[f.name] = (Array.isArray(v) ? v : String(v).split(/[\n,]/))
          .map((x) => x.trim())
          .filter(Boolean);
        break;
      case 'json':
        try {
          body[f.name] = JSON.parse(String(v));
        } catch {
          errors[f.name] = 'expected JSON';
        }
        break;
      default:
        body[f.name] = String(v);
    }
  }
  return { body, errors };
}

/** The form field an API error's `field` names ("l3NetworkUuids.0" → l3NetworkUuids; "stop.type" → type in the stop action's form). */
export function formFieldOf(apiField: string | undefined, fields: Field[], action?: string): string | undefined {
  if (!apiField) return undefined;
  let f = apiField;
  if (action && f.startsWith(action + '.')) f = f.slice(action.length + 1);
  const top = f.split('.')[0]!;
  return fields.some((x) => x.name === top) ? top : undefined;
}

export interface ListState {
  /** Raw q= expressions, one per line (e.g. state=Running, name~=web%). */
  filters: string[];
  sort?: string;
  start: number;
  limit: number;
}

/** The query string of a list page (q repeated; sort '+x' is sent %2B-encoded). */
export function listQuery(s: ListState): string {
  const p = new URLSearchParams();
  for (const q of s.filters) if (q.trim()) p.append('q', q.trim());
  if (s.sort) p.set('sort', s.sort);
  p.set('start', String(s.start));
  p.set('limit', String(s.limit));
  return p.toString();
}

/** Click on a column: ascending, then descending, then ascending again. */
export const nextSort = (cur: string | undefined, field: string): string => (cur === `+${field}` ? `-${field}` : `+${field}`);

/** Actions that lose work or access: the button asks first. */
export const DESTRUCTIVE = /^(stop|reboot|pause|destroy|expunge|delete|detach|reconnect|reset|revert|remove|migrate|changeState)/i;
export const isDestructive = (action: string): boolean => DESTRUCTIVE.test(action);
