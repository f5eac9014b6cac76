// List-query parsing (?q=, limit, start, sort, count, fields) → store Query.
import assert from 'node:assert/strict';
import { Obj, Type } from '../../../shared/protocol/schema.js';
import { parseCondition, parseListQuery, project, fieldTypeOf, DEFAULT_LIMIT } from '../../../controller/api/query.js';
import { TStackError } from '../../../shared/errors.js';

const schema = Obj({
  name: Type.String(),
  cpuNum: Type.Integer(),
  memorySize: Type.Optional(Type.Number()),
  enabled: Type.Boolean(),
  state: Type.Union([Type.Literal('Enabled'), Type.Literal('Disabled')]),
  l3NetworkUuids: Type.Array(Type.String()),
});

const fieldOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TStackError, String(e));
    assert.equal(e.code, 'INVALID_ARGUMENT');
    return String(e.details?.field);
  }
  throw new Error('did not throw');
};

describe('controller api: query parsing', function () {
  it('parses every operator, longest first', function () {
    assert.deepEqual(parseCondition('name=a'), { field: 'name', op: '=', value: 'a' });
    assert.deepEqual(parseCondition('name!=a'), { field: 'name', op: '!=', value: 'a' });
    assert.deepEqual(parseCondition('cpuNum>=2', schema), { field: 'cpuNum', op: '>=', value: 2 });
    assert.deepEqual(parseCondition('cpuNum<=2', schema), { field: 'cpuNum', op: '<=', value: 2 });
    assert.deepEqual(parseCondition('cpuNum>2', schema), { field: 'cpuNum', op: '>', value: 2 });
    assert.deepEqual(parseCondition('cpuNum<2', schema), { field: 'cpuNum', op: '<', value: 2 });
    assert.deepEqual(parseCondition('name~=web-%'), { field: 'name', op: '~=', value: 'web-%' });
    assert.deepEqual(parseCondition('state?=Enabled,Disabled', schema), { field: 'state', op: '?=', value: ['Enabled', 'Disabled'] });
    assert.deepEqual(parseCondition('vmNics.ip=10.0.0.5'), { field: 'vmNics.ip', op: '=', value: '10.0.0.5' });
  });

  it('values after the operator may contain operator characters', function () {
    assert.deepEqual(parseCondition('description=a=b'), { field: 'description', op: '=', value: 'a=b' });
    assert.deepEqual(parseCondition('name=>x'), { field: 'name', op: '=', value: '>x' });
    assert.deepEqual(parseCondition('name='), { field: 'name', op: '=', value: '' });
  });

  it('coerces values from the schema: numbers, booleans, strings that look like numbers', function () {
    assert.deepEqual(parseCondition('name=123', schema).value, '123');
    assert.deepEqual(parseCondition('cpuNum=4', schema).value, 4);
    assert.deepEqual(parseCondition('memorySize>1.5', schema).value, 1.5);
    assert.deepEqual(parseCondition('enabled=true', schema).value, true);
    assert.deepEqual(parseCondition('cpuNum?=1,2', schema).value, [1, 2]);
    assert.deepEqual(parseCondition('l3NetworkUuids=abc', schema).value, 'abc');
    // unknown field: numbers look like numbers
    assert.deepEqual(parseCondition('other=12').value, 12);
    assert.deepEqual(parseCondition('other=null').value, null);
    assert.equal(fieldOf(() => parseCondition('cpuNum=four', schema)), 'q.cpuNum');
    assert.equal(fieldOf(() => parseCondition('enabled=yes', schema)), 'q.enabled');
    assert.equal(fieldTypeOf(schema, 'state'), 'string');
    assert.equal(fieldTypeOf(schema, 'memorySize'), 'number');
    assert.equal(fieldTypeOf(undefined, 'x'), 'unknown');
  });

  it('rejects malformed conditions naming q', function () {
    assert.equal(fieldOf(() => parseCondition('name')), 'q');
    assert.equal(fieldOf(() => parseCondition('=x')), 'q');
    assert.equal(fieldOf(() => parseCondition('na me=x')), 'q');
    assert.equal(fieldOf(() => parseCondition("name';drop=x")), 'q');
    assert.equal(fieldOf(() => parseCondition('cpuNum>', schema)), 'q.cpuNum');
    assert.equal(fieldOf(() => parseCondition('state?=', schema)), 'q.state');
  });

  it('builds a store Query with defaults, paging, sort and count', function () {
    const p = parseListQuery('zone', {});
    assert.deepEqual(p, { query: { kind: 'zone', filters: [], limit: DEFAULT_LIMIT, start: 0 }, count: false });
    const q = parseListQuery('vm-instance', { q: ['name~=a%', 'cpuNum>1'], limit: '10', start: '20', sort: '-createDate', count: 'true', fields: 'uuid,name' }, schema);
    assert.equal(q.query.filters!.length, 2);
    assert.equal(q.query.limit, 10);
    assert.equal(q.query.start, 20);
    assert.deepEqual(q.query.sort, { field: 'createDate', dir: 'desc' });
    assert.equal(q.count, true);
    assert.deepEqual(q.fields, ['uuid', 'name']);
    assert.deepEqual(parseListQuery('x', { sort: '+name' }).query.sort, { field: 'name', dir: 'asc' });
    assert.deepEqual(parseListQuery('x', { sort: ' name' }).query.sort, { field: 'name', dir: 'asc' }, "'+' decoded to a space");
    assert.deepEqual(parseListQuery('x', { sort: 'name' }).query.sort, { field: 'name', dir: 'asc' });
    assert.deepEqual(parseListQuery('x', { q: 'name=a' }).query.filters, [{ field: 'name', op: '=', value: 'a' }]);
  });

  it('replyWithCount=false skips the total of a collection page (not of a count)', function () {
    assert.equal(parseListQuery('x', { replyWithCount: 'false' }, undefined, undefined, { cursors: true }).query.skipTotal, true);
    assert.equal(parseListQuery('x', { replyWithCount: 'true' }, undefined, undefined, { cursors: true }).query.skipTotal, undefined);
    assert.equal(parseListQuery('x', { replyWithCount: 'false', count: 'true' }, undefined, undefined, { cursors: true }).query.skipTotal, undefined);
    assert.equal(fieldOf(() => parseListQuery('x', { replyWithCount: 'no' }, undefined, undefined, { cursors: true })), 'replyWithCount');
  });

  it('rejects bad paging, sort, count, fields and unknown parameters naming them', function () {
    assert.equal(fieldOf(() => parseListQuery('x', { limit: 'ten' })), 'limit');
    assert.equal(fieldOf(() => parseListQuery('x', { limit: '1.5' })), 'limit');
    assert.equal(fieldOf(() => parseListQuery('x', { limit: '10001' })), 'limit');
    assert.equal(fieldOf(() => parseListQuery('x', { limit: ['1', '2'] })), 'limit');
    assert.equal(fieldOf(() => parseListQuery('x', { start: '-1' })), 'start');
    assert.equal(fieldOf(() => parseListQuery('x', { sort: '-' })), 'sort');
    assert.equal(fieldOf(() => parseListQuery('x', { count: '1' })), 'count');
    assert.equal(fieldOf(() => parseListQuery('x', { fields: ',' })), 'fields');
    assert.equal(fieldOf(() => parseListQuery('x', { fields: 'a,b c' })), 'fields');
    assert.equal(fieldOf(() => parseListQuery('x', { filter: 'a=b' })), 'filter');
  });

  it('projects fields', function () {
    assert.deepEqual(project({ uuid: 'u', name: 'n', x: 1 }, ['name', 'missing']), { name: 'n' });
    assert.deepEqual(project({ uuid: 'u' }, undefined), { uuid: 'u' });
  });
});
