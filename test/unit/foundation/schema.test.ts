import assert from 'node:assert/strict';
import { Obj, Type, check, validate, jsonSchema, Uuid, SafeName, AbsPath, Ipv4, Mac } from '../../../shared/protocol/schema.js';
import { common, defineCommand, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { TStackError } from '../../../shared/errors.js';

describe('foundation: protocol schemas', () => {
  const S = Obj({
    name: SafeName(),
    size: Type.Integer({ minimum: 0 }),
    spec: Obj({ nics: Type.Array(Obj({ mac: Mac(), ip: Type.Optional(Ipv4()) })) }),
    path: Type.Optional(AbsPath()),
    uuid: Type.Optional(Uuid()),
  });
  const good = { name: 'vm-1', size: 1, spec: { nics: [{ mac: '52:54:00:00:00:01', ip: '10.0.0.2' }] } };

  it('accepts a valid object', () => {
    assert.deepEqual(check(S, good), []);
    assert.equal(validate(S, good), good);
  });

  it('rejects unknown fields, naming the field itself (also nested)', () => {
    assert.deepEqual(check(S, { ...good, extra: 1 })[0], { field: 'extra', reason: 'unknown field' });
    const nested = { ...good, spec: { nics: [{ mac: '52:54:00:00:00:01', bogus: true }] } };
    assert.equal(check(S, nested)[0]!.field, 'spec.nics.0.bogus');
  });

  it('names wrong-typed and missing fields with dotted paths', () => {
    assert.equal(check(S, { ...good, size: 'big' })[0]!.field, 'size');
    const { size: _s, ...noSize } = good;
    assert.equal(check(S, noSize)[0]!.field, 'size');
    assert.equal(check(S, { ...good, spec: { nics: [{ mac: 'zz' }] } })[0]!.field, 'spec.nics.0.mac');
    assert.equal(check(S, 'not an object')[0]!.field, '(body)');
  });

  it('validate throws INVALID_ARGUMENT with the field in details', () => {
    try {
      validate(S, { ...good, size: -1 }, 'vm/create');
      assert.fail('should throw');
    } catch (e) {
      assert.ok(e instanceof TStackError);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.equal(e.details?.field, 'size');
      assert.match(e.message, /^vm\/create: field 'size'/);
    }
  });

  it('string formats: SafeName, AbsPath (no ..), Uuid, Ipv4, Mac', () => {
    const ok = (s: Parameters<typeof check>[0], v: unknown) => check(s, v).length === 0;
    assert.ok(ok(SafeName(), 'a.b_c-1:2'));
    for (const bad of ['', '-x', 'a b', 'a/b', '../x', 'x'.repeat(129)]) assert.ok(!ok(SafeName(), bad), bad);
    assert.ok(ok(AbsPath(), '/var/lib/tstack/x.qcow2'));
    for (const bad of ['relative', '/a/../b', '/..', '/a/..', '/a\nb']) assert.ok(!ok(AbsPath(), bad), JSON.stringify(bad));
    assert.ok(ok(Uuid(), '3f2504e0-4f89-11d3-9a0c-0305e82c3301'));
    assert.ok(ok(Uuid(), '3f2504e04f8911d39a0c0305e82c3301'));
    assert.ok(!ok(Uuid(), 'not-a-uuid'));
    assert.ok(ok(Ipv4(), '192.168.0.255'));
    for (const bad of ['256.1.1.1', '1.2.3', '01.2.3.4x']) assert.ok(!ok(Ipv4(), bad), bad);
    assert.ok(!ok(Mac(), '52:54:00:00:00'));
  });

  it('jsonSchema gives plain JSON Schema with additionalProperties false', () => {
    const js = jsonSchema(common.Echo.request);
    assert.equal(js.type, 'object');
    assert.equal(js.additionalProperties, false);
    assert.deepEqual(js.required, ['message']);
    assert.ok(JSON.stringify(js).length > 10);
  });

  it('defineCommand fills path, mode and timeout; common commands are declared', () => {
    const c = defineCommand({ name: 'x/do-it', agent: 'kvm', request: Obj({}), response: Obj({}) });
    assert.equal(c.path, '/x/do-it');
    assert.equal(c.mode, 'async');
    assert.equal(c.timeoutMs, 300_000);
    assert.equal(common.Ping.mode, 'sync');
    assert.equal(common.Ping.path, '/ping');
    assert.equal(typeof PROTOCOL_VERSION, 'number');
  });
});
