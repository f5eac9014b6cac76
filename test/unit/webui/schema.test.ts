// The web console's form and query logic (ui/src/lib): fields from a schema, bodies from form
// values, where an API error's field lands, list queries; and the SSE parser.
import assert from 'node:assert/strict';
import { fieldsOf, formFieldOf, listQuery, nextSort, refKindOf, toBody, isDestructive } from '../../../ui/src/lib/schema.js';
import { SseParser } from '../../../ui/src/lib/sse.js';
import { buildOpenApi } from '../../../controller/api/openapi.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { registerCollections } from '../../../controller/api/collections.js';

describe('web console: schema-driven forms', () => {
  const reg = new ApiRegistry();
  registerCollections(reg);
  // OpenAPI lists a create only when a handler serves it (the compute module's, in a controller)
  reg.setCreate('vm-instances', { long: true, run: async () => ({}) as never });
  const doc = buildOpenApi(reg, 'test') as any;
  const cols = doc['x-tstack-collections'] as Array<{ kind: string; collection: string; create?: { schema: string } }>;
  const kinds = cols.map((c) => c.kind);
  const vm = cols.find((c) => c.kind === 'vm-instance')!;

  it('finds the kind a reference field names', () => {
    assert.equal(refKindOf('l3NetworkUuids', kinds), 'l3-network');
    assert.equal(refKindOf('defaultL3NetworkUuid', kinds), 'l3-network');
    assert.equal(refKindOf('imageUuid', kinds), 'image');
    assert.equal(refKindOf('name', kinds), undefined);
    assert.equal(refKindOf('primaryStorageUuidForRootVolume', kinds), undefined);
  });

  it('builds the VM create form from the OpenAPI document', () => {
    const f = fieldsOf(doc, { $ref: vm.create!.schema }, kinds);
    const by = Object.fromEntries(f.map((x) => [x.name, x]));
    assert.equal(by.name!.required, true);
    assert.equal(by.imageUuid!.input, 'ref');
    assert.equal(by.imageUuid!.refKind, 'image');
    assert.equal(by.l3NetworkUuids!.input, 'refs');
    assert.equal(by.cpuNum!.input, 'integer');
    assert.equal(by.strategy!.input, 'enum');
    assert.deepEqual(by.strategy!.options, ['InstantStart', 'CreateStopped']);
    assert.equal(by.userData!.input, 'textarea');
    assert.equal(by.consolePassword!.input, 'password');
  });

  it('turns form values into a body, and bad values into field errors before sending', () => {
    const f = fieldsOf(doc, { $ref: vm.create!.schema }, kinds);
    const ok = toBody(f, { name: 'vm1', imageUuid: 'u1', l3NetworkUuids: ['n1'], cpuNum: '2', hostname: '' });
    assert.deepEqual(ok.errors, {});
    assert.deepEqual(ok.body, { name: 'vm1', imageUuid: 'u1', l3NetworkUuids: ['n1'], cpuNum: 2 });
    const bad = toBody(f, { imageUuid: 'u1', l3NetworkUuids: [], cpuNum: '1.5' });
    assert.equal(bad.errors.name, 'required');
    assert.equal(bad.errors.l3NetworkUuids, 'required');
    assert.match(bad.errors.cpuNum!, /integer/);
  });

  it('puts an API error at the field it names', () => {
    const f = fieldsOf(doc, { $ref: vm.create!.schema }, kinds);
    assert.equal(formFieldOf('l3NetworkUuids.0', f), 'l3NetworkUuids');
    assert.equal(formFieldOf('name', f), 'name');
    assert.equal(formFieldOf('(body)', f), undefined);
    assert.equal(formFieldOf('stop.type', [{ name: 'type', label: 'Type', input: 'enum', required: false, schema: {} }], 'stop'), 'type');
  });

  it('writes list queries: q repeated, sort, paging', () => {
    const q = listQuery({ filters: ['state=Running', ' name~=web% ', ''], sort: '+name', start: 20, limit: 10 });
    const p = new URLSearchParams(q);
    assert.deepEqual(p.getAll('q'), ['state=Running', 'name~=web%']);
    assert.equal(p.get('sort'), '+name');
    assert.ok(q.includes('sort=%2Bname'), q);
    assert.equal(p.get('start'), '20');
    assert.equal(nextSort('+name', 'name'), '-name');
    assert.equal(nextSort('-name', 'name'), '+name');
    assert.equal(nextSort('-name', 'state'), '+state');
    assert.ok(isDestructive('stop') && isDestructive('expunge') && !isDestructive('start'));
  });
});

describe('web console: SSE parser', () => {
  it('parses events split anywhere, with ids, comments and multi-line data', () => {
    const p = new SseParser();
    const text = ': tstack event stream\nretry: 2000\n\nid: a.1\nevent: resource.updated\ndata: {"kind":"vm-instance",\ndata: "uuid":"x"}\n\nid: a.2\r\nevent: job.finished\r\ndata: {}\r\n\r\n';
    const out = [];
    for (let i = 0; i < text.length; i += 7) out.push(...p.push(text.slice(i, i + 7)));
    assert.equal(out.length, 2);
    assert.deepEqual(out[0], { event: 'resource.updated', data: '{"kind":"vm-instance",\n"uuid":"x"}', id: 'a.1' });
    assert.deepEqual(out[1], { event: 'job.finished', data: '{}', id: 'a.2' });
  });
});
