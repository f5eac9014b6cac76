// The SQL the SQLite store (sqlite.ts) builds from a query: the common columns, indexed fields'
// columns and json_extract() for any other field, filters and keyset positions, with the
// comparison rules of the JS evaluator in query.ts (numbers compared as numbers, arrays by
// containment). Field names are validated identifiers (checkField) before they reach here.
import type { Filter, Position, Query } from './types.js';
import { NUMERIC_RE, fieldValue } from './query.js';

const COLUMNS: Record<string, string> = {
  uuid: 'uuid',
  kind: 'kind',
  parentUuid: 'parent_uuid',
  state: 'state',
  ownerAccountUuid: 'owner',
  name: 'name',
  createDate: 'create_date',
  lastOpDate: 'last_op_date',
};

export type Bind = string | number | null;

export function bindValue(v: unknown): Bind {
  if (v === null || v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'number' || typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** json_extract with the path inlined (field names are validated identifiers: checkField). */
export const jsonSql = (field: string): string => `json_extract(body, '$.${field}')`;

/** The column of an indexed field (quoted: field names are identifiers and dots, checkField). */
export const fieldCol = (field: string): string => `"f:${field}"`;
export const FIELD_COL_PREFIX = 'f:';

/**
 * One partial index per indexed field's column, over every kind, in list order. A filter
 * `kind = ? AND field = ?` uses it and a page in the default order (createDate, uuid) reads only
 * the page's rows, not every match then a sort. Rows without the field (most kinds) are not in
 * it. `withState` (fields that lists filter on together with state: a host's Running VMs) puts
 * state before the order, so such a list's count is read from the index alone and its page is
 * the page's rows. The other fields leave state out: a state change then moves the row's entry
 * in the state index only, not in every field index the row is in (a VM is in seven: 20 → 5 WAL
 * pages for its first state change, issue 19). The two shapes have their own names so a store
 * opened with other settings finds and replaces the other one (indexNames).
 */
export const indexSql = (field: string, withState: boolean): string =>
  withState
    ? `CREATE INDEX IF NOT EXISTS "${indexName(field, true)}" ON resources(kind, ${fieldCol(field)}, state, create_date, uuid) WHERE ${fieldCol(field)} IS NOT NULL`
    : `CREATE INDEX IF NOT EXISTS "${indexName(field, false)}" ON resources(kind, ${fieldCol(field)}, create_date, uuid) WHERE ${fieldCol(field)} IS NOT NULL`;

/** The name of a field's index in either shape (indexSql). */
export const indexName = (field: string, withState: boolean): string => `${withState ? 'resources_f:' : 'resources_fd:'}${field}`;

/** The value json_extract(body, '$.<field>') gives of the stored JSON: what the column holds. */
export function columnValue(r: Record<string, unknown>, field: string): Bind {
  return bindValue(fieldValue(r, field));
}

/** The column of a common field (own keys only: `constructor` is not a column). */
const columnOf = (field: string): string | undefined => (Object.hasOwn(COLUMNS, field) ? COLUMNS[field] : undefined);

/** SQL for one field: a column or json_extract(body, '$.field'). */
export function fieldSql(field: string, indexed: ReadonlySet<string>): string {
  return columnOf(field) ?? (indexed.has(field) ? fieldCol(field) : jsonSql(field));
}

const plainString = (v: unknown): v is string => typeof v === 'string' && !NUMERIC_RE.test(v);

/** `x <op> value`, comparing numerically when x is a number and value a numeric string. */
function compareSql(x: () => string, op: string, value: unknown, params: Bind[]): string {
  if (typeof value === 'string' && NUMERIC_RE.test(value)) {
    const a = x();
    const b = x();
    params.push(Number(value));
    const c = x();
    params.push(value);
    return `(CASE WHEN typeof(${a}) IN ('integer','real') THEN ${b} ${op} ? ELSE ${c} ${op} ? END)`;
  }
  const e = x();
  params.push(bindValue(value));
  return `${e} ${op} ?`;
}

function inSql(x: () => string, values: unknown[], params: Bind[]): string {
  const a = x();
  const b = x();
  const nums = values.map((v) => (typeof v === 'string' && NUMERIC_RE.test(v) ? Number(v) : bindValue(v)));
  params.push(...nums);
  const ph1 = nums.map(() => '?').join(',');
  const c = x();
  const raws = values.map(bindValue);
  params.push(...raws);
  const ph2 = raws.map(() => '?').join(',');
  return `(CASE WHEN typeof(${a}) IN ('integer','real') THEN ${b} IN (${ph1}) ELSE ${c} IN (${ph2}) END)`;
}

/**
 * Rows strictly after a position in the order `sort, create_date ASC, uuid ASC` (keyset
 * pagination). NULL sorts first ascending and last descending, as in ORDER BY; a comparison
 * with NULL is never true, hence the IS forms.
 */
export function afterSql(p: Position, sort: Query['sort'], params: Bind[], indexed: ReadonlySet<string>): string {
  const tail = '(create_date > ? OR (create_date = ? AND uuid > ?))';
  const tailParams = [p.createDate, p.createDate, p.uuid];
  let sql = tail;
  if (sort) {
    const s = fieldSql(sort.field, indexed);
    const v = p.sort ?? null;
    if (v === null) sql = sort.dir === 'desc' ? `(${s} IS NULL AND ${tail})` : `(${s} IS NOT NULL OR (${s} IS NULL AND ${tail}))`;
    else {
      sql = `(${sort.dir === 'desc' ? `(${s} < ? OR ${s} IS NULL)` : `${s} > ?`} OR (${s} = ? AND ${tail}))`;
      params.push(v, v);
    }
  }
  params.push(...tailParams);
  return sql;
}

export function filterSql(f: Filter, params: Bind[], indexed: ReadonlySet<string>): string {
  const col = columnOf(f.field);
  const x = (): string => fieldSql(f.field, indexed);
  if (f.value === null && (f.op === '=' || f.op === '!=')) return `${x()} IS ${f.op === '=' ? '' : 'NOT '}NULL`;
  if (f.op === '~=') {
    const e = x();
    params.push(String(f.value));
    return `${e} LIKE ?`;
  }
  if (indexed.has(f.field)) {
    // scalar fields with an index: plain comparisons the planner can use
    if (f.op === '=' && plainString(f.value)) {
      params.push(f.value);
      return `${x()} = ?`;
    }
    if (f.op === '?=' && (f.value as unknown[]).every(plainString)) {
      const vs = f.value as string[];
      params.push(...vs);
      return `${x()} IN (${vs.map(() => '?').join(',')})`;
    }
  }
  if (f.op === '?=' && col && (f.value as unknown[]).every(plainString)) {
    // a column and non-numeric strings: the CASE of inSql would pick the same plain IN, but hide it from the index
    const vs = f.value as string[];
    params.push(...vs);
    return `${col} IN (${vs.map(() => '?').join(',')})`;
  }
  if (f.op === '?=') return inSql(x, f.value as unknown[], params);
  if (!col && (f.op === '=' || f.op === '!=')) {
    // array fields: '=' means contains, '!=' does not contain (an indexed field's column holds
    // an array as JSON text, as json_extract gives it: the body decides)
    params.push(`$.${f.field}`);
    const isArray = `json_type(body, ?) = 'array'`;
    params.push(`$.${f.field}`);
    const each = `EXISTS (SELECT 1 FROM json_each(body, ?) WHERE ${compareSql(() => 'value', '=', f.value, params)})`;
    const scalar = compareSql(x, f.op, f.value, params);
    return `(CASE WHEN ${isArray} THEN ${f.op === '=' ? '' : 'NOT '}${each} ELSE ${scalar} END)`;
  }
  return compareSql(x, f.op, f.value, params);
}
