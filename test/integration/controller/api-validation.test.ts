// Table-driven over the OpenAPI document: bad input on every create endpoint (and every
// update and action) is a 400 naming the offending field — never a 500. Also checks that the
// document itself is complete and its $refs resolve.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { builtinModules } from '../../../controller/main.js';

type Schema = Record<string, any>;

function resolve(doc: any, s: Schema): Schema {
  if (s?.$ref) return resolve(doc, s.$ref.replace(/^#\//, '').split('/').reduce((o: any, k: string) => o?.[k], doc));
  return s;
}

/** A value that satisfies the schema, or undefined if we cannot make one. */
function sample(s: Schema): unknown {
  if (s.const !== undefined) return s.const;
  if (s.default !== undefined) return s.default;
  if (s.enum) return s.enum[0];
  if (s.anyOf) {
    for (const x of s.anyOf) {
      const v = sample(x);
      if (v !== undefined) return v;
    }
    return undefined;
  }
  switch (s.type) {
    case 'string': {
      if (!s.pattern) return 'x'.repeat(Math.max(1, s.minLength ?? 1));
      const candidates = [randomUUID(), 'abc', 'abc-1', '10.0.0.1', '10.0.0.0/24', '52:54:00:12:34:56', '/tmp/x', 'http://example.com/x', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0 x', 'eth0', 'host1.example.com', '2026-01-01T00:00:00Z'];
      const re = new RegExp(s.pattern);
      return candidates.find((c) => re.test(c) && c.length >= (s.minLength ?? 0) && c.length <= (s.maxLength ?? Infinity));
    }
    case 'integer':
    case 'number':
      return s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : 1);
    case 'boolean':
      return true;
    case 'array': {
      const n = s.minItems ?? 0;
      if (n === 0) return [];
      const v = sample(s.items ?? {});
      return v === undefined ? undefined : s.uniqueItems && n > 1 ? undefined : Array.from({ length: n }, () => v);
    }
    case 'object': {
      const o: Record<string, unknown> = {};
      for (const k of s.required ?? []) {
        const v = sample(s.properties?.[k] ?? {});
        if (v === undefined) return undefined;
        o[k] = v;
      }
      return o;
    }
    default:
      return undefined;
  }
}

/** A value of the wrong JSON type for the schema. */
function wrongType(s: Schema): unknown {
  const types = new Set<string>();
  const collect = (x: Schema): void => {
    if (x.type) (Array.isArray(x.type) ? x.type : [x.type]).forEach((t: string) => types.add(t));
    if (x.const !== undefined) types.add(typeof x.const);
    (x.anyOf ?? []).forEach(collect);
  };
  collect(s);
  if (types.size === 0) return undefined;
  if (!types.has('object')) return { nested: true };
  if (!types.has('number') && !types.has('integer')) return 12345;
  return 'not-the-right-type';
}

interface Case {
  endpoint: string;
  method: string;
  path: string;
  body: unknown;
  field: string;
}

function casesFor(doc: any, endpoint: string, method: string, path: string, schemaIn: Schema, wrap?: string): Case[] {
  const s = resolve(doc, schemaIn);
  const base = (sample(s) ?? {}) as Record<string, unknown>;
  const w = (b: unknown): unknown => (wrap ? { [wrap]: b } : b);
  const f = (x: string): string => (wrap ? `${wrap}.${x}` : x);
  const out: Case[] = [];
  out.push({ endpoint, method, path, body: w({ ...base, bogusField: 1 }), field: f('bogusField') });
  if (!wrap) out.push({ endpoint, method, path, body: [base], field: '(body)' });
  else out.push({ endpoint, method, path, body: { [wrap]: 'not-an-object' }, field: wrap });
  for (const req of s.required ?? []) {
    const b = { ...base };
    delete b[req];
    out.push({ endpoint, method, path, body: w(b), field: f(req) });
  }
  for (const [k, ps] of Object.entries<Schema>(s.properties ?? {})) {
    const bad = wrongType(ps);
    if (bad !== undefined) out.push({ endpoint, method, path, body: w({ ...base, [k]: bad }), field: f(k) });
    if (ps.type === 'string' && (ps.pattern || ps.maxLength !== undefined)) {
      out.push({ endpoint, method, path, body: w({ ...base, [k]: ps.maxLength !== undefined ? 'y'.repeat(ps.maxLength + 1) : '\u0000\n;$(rm -rf /)' }), field: f(k) });
    }
    if ((ps.type === 'integer' || ps.type === 'number') && ps.minimum !== undefined) out.push({ endpoint, method, path, body: w({ ...base, [k]: ps.minimum - 1 }), field: f(k) });
    if (ps.anyOf?.every((x: Schema) => x.const !== undefined)) out.push({ endpoint, method, path, body: w({ ...base, [k]: 'NoSuchValue' }), field: f(k) });
  }
  return out;
}

describe('controller API: bad input is 400 naming the field (table-driven over the OpenAPI document)', function () {
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let doc: any;
  const registry = new ApiRegistry();

  before(async function () {
    // the real modules: what a controller serves (unhandled operations are not advertised)
    c = await testController(cleanup, { registry, modules: builtinModules() });
    admin = await c.login('admin', c.adminPassword);
    const r = await c.anon.get('/v1/openapi.json');
    assert.equal(r.status, 200);
    doc = r.body;
  });

  it('the OpenAPI document lists every collection with create/update/action schemas whose $refs resolve', function () {
    assert.equal(doc.openapi, '3.1.0');
    const cols = doc['x-tstack-collections'] as any[];
    for (const spec of registry.collections()) {
      const entry = cols.find((x) => x.collection === spec.collection);
      assert.ok(entry, spec.collection);
      assert.ok(doc.paths[`/v1/${spec.collection}`].get, `${spec.collection} list`);
      assert.equal(doc.paths[`/v1/${spec.collection}/{uuid}`].delete !== undefined, registry.canDelete(spec), `${spec.collection} delete`);
      assert.equal(doc.paths[`/v1/${spec.collection}`].post !== undefined, registry.canCreate(spec), `${spec.collection} create`);
      assert.equal(entry.actions.length, registry.actions(spec.collection).length);
    }
    const refs: string[] = [];
    const walk = (o: unknown): void => {
      if (Array.isArray(o)) o.forEach(walk);
      else if (o && typeof o === 'object') {
        for (const [k, v] of Object.entries(o)) {
          if (k === '$ref' && typeof v === 'string') refs.push(v);
          else walk(v);
        }
      }
    };
    walk(doc);
    assert.ok(refs.length > 50);
    for (const r of refs) assert.ok(resolve(doc, { $ref: r }), `unresolved ${r}`);
    assert.ok(doc.paths['/v1/sessions'].post);
    assert.ok(doc.paths['/v1/jobs/{uuid}'].get);
    assert.equal(doc.components.schemas.VmInstanceCreate.properties.l3NetworkUuids.type, 'array');
  });

  it('every create, update and action endpoint answers bad bodies with 400 + the field, never 500', async function () {
    this.timeout(300_000);
    const cols = doc['x-tstack-collections'] as any[];
    // a resource per collection to aim updates and actions at
    const targets = new Map<string, string>();
    for (const entry of cols) {
      if (entry.collection === 'accounts') {
        targets.set(entry.collection, (await admin.post('/v1/accounts', { name: `val-${randomUUID().slice(0, 8)}`, password: 'password-123' })).body.uuid);
        continue;
      }
      const now = new Date().toISOString();
      const r = await c.store.create({ uuid: randomUUID(), kind: entry.kind, name: `val-${entry.kind}`, ownerAccountUuid: c.auth.adminAccountUuid, tags: [], createDate: now, lastOpDate: now, state: 'Enabled' });
      targets.set(entry.collection, r.uuid);
    }
    const cases: Case[] = [];
    for (const entry of cols) {
      const u = targets.get(entry.collection)!;
      if (entry.create) cases.push(...casesFor(doc, `create ${entry.collection}`, 'POST', `/v1/${entry.collection}`, { $ref: entry.create.schema }));
      cases.push(...casesFor(doc, `update ${entry.collection}`, 'PUT', `/v1/${entry.collection}/${u}`, { $ref: entry.update.schema }));
      for (const a of entry.actions) cases.push(...casesFor(doc, `${entry.collection} ${a.name}`, 'POST', `/v1/${entry.collection}/${u}/actions`, { $ref: a.schema }, a.name));
    }
    const creates = new Set(cases.filter((x) => x.endpoint.startsWith('create ')).map((x) => x.endpoint));
    assert.ok(creates.size >= 14, `create endpoints covered: ${[...creates].join(', ')}`);
    const failures: string[] = [];
    for (const k of cases) {
      const r = await admin.req(k.method, k.path, k.body);
      if (r.status >= 500) failures.push(`${k.endpoint} ${JSON.stringify(k.body)} → ${r.status} ${JSON.stringify(r.body)}`);
      else if (r.status !== 400) failures.push(`${k.endpoint} ${JSON.stringify(k.body)} → ${r.status} (want 400) ${JSON.stringify(r.body)}`);
      else if (r.body.field !== k.field) failures.push(`${k.endpoint} ${JSON.stringify(k.body)} → field ${r.body.field} (want ${k.field}): ${r.body.message}`);
      else if (r.body.code !== 'INVALID_ARGUMENT' || (k.field !== '(body)' && !r.body.message.includes(k.field.split('.').pop()!))) failures.push(`${k.endpoint}: message does not name ${k.field}: ${r.body.message}`);
    }
    assert.ok(cases.length > 200, `only ${cases.length} cases`);
    assert.deepEqual(failures, [], `${failures.length} of ${cases.length} cases failed`);
  });

  it('non-JSON bodies are 415 and malformed ones 400, not 500', async function () {
    const bad = [
      { body: '{"name": ', type: 'application/json', status: 400 },
      { body: 'name=x', type: 'application/x-www-form-urlencoded', status: 415 },
      { body: 'null', type: 'application/json', status: 400 },
      { body: '"a string"', type: 'application/json', status: 400 },
      { body: '12', type: 'application/json', status: 400 },
    ];
    for (const b of bad) {
      const r = await admin.req('POST', '/v1/zones', b.body, { 'content-type': b.type });
      assert.equal(r.status, b.status, `${b.body}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.field, 'string');
    }
    const big = await admin.req('POST', '/v1/zones', JSON.stringify({ name: 'x'.repeat(9 * 1024 * 1024) }));
    assert.ok(big.status === 413 || big.status === 400, String(big.status));
  });
});
