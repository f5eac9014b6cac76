// The API view of a resource and the SQLite store's text of it (controller/store/view.ts): the
// stored text parses back to the whole resource, and its view part is exactly the JSON of the
// view the API shapes (no internal field), whatever the fields and values.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isInternalField, storedText, viewOf, viewText } from '../../../controller/store/view.js';

/** JSON.parse(JSON.stringify(x)): what a resource is once stored and read. */
const roundTrip = (x: unknown): unknown => JSON.parse(JSON.stringify(x));

describe('controller store: resource views', function () {
  it('the view drops internal and hidden fields and puts the common fields first and last', function () {
    const r = { tags: ['t'], _sharing: { public: true }, memorySize: 1, uuid: 'u', lastOpDate: 'l', kind: 'vm-instance', password: 'p', name: 'n', createDate: 'c', ownerAccountUuid: 'o', state: 'Running', description: undefined, cpuNum: 2 };
    assert.deepEqual(Object.keys(viewOf(r)), ['uuid', 'name', 'kind', 'state', 'memorySize', 'password', 'cpuNum', 'ownerAccountUuid', 'tags', 'createDate', 'lastOpDate']);
    assert.deepEqual(Object.keys(viewOf(r, ['password', 'tags'])), ['uuid', 'name', 'kind', 'state', 'memorySize', 'cpuNum', 'ownerAccountUuid', 'createDate', 'lastOpDate']);
  });

  it('stored text: the whole resource, its view part the view\'s JSON (hand-picked edge cases)', function () {
    const cases: Array<Record<string, unknown>> = [
      { uuid: 'a', kind: 'zone', name: 'plain' },
      { uuid: 'b', kind: 'zone', name: 'with internals', _x: 1, _y: { deep: ['v'] } },
      { _only: 'internal' },
      { _gone: undefined, uuid: 'c', kind: 'zone', name: 'an undefined internal is no field' },
      { uuid: 'd', kind: 'zone', name: '😀 ünïcödé "quoted" \\ \u0000 \ud800', _note: '😀,"_x":1}' },
      { uuid: 'e', kind: 'zone', name: ',"_fake":"}', tags: [',"_in":1'] },
      JSON.parse('{"uuid":"f","kind":"zone","__proto__":{"polluted":true},"_a":2}') as Record<string, unknown>,
      { 10: 'integer key', uuid: 'g', kind: 'zone', _z: 0 },
      {},
    ];
    for (const r of cases) {
      const { text, viewLen } = storedText(r);
      assert.deepEqual(JSON.parse(text), roundTrip(r), `whole: ${text}`);
      assert.equal(viewText(text, viewLen), JSON.stringify(viewOf(r)), `view: ${text}`);
      const view = JSON.parse(viewText(text, viewLen)) as Record<string, unknown>;
      assert.deepEqual(Object.keys(view).filter(isInternalField), [], `no internal field in ${text}`);
    }
    // an own __proto__ field stays a field (never the prototype of what is stored)
    const p = JSON.parse(storedText(cases[6]!).text) as Record<string, unknown>;
    assert.ok(Object.hasOwn(p, '__proto__'));
    assert.equal((p as { polluted?: unknown }).polluted, undefined);
  });

  it('stored text: the whole resource, its view part the view of what is read back (any fields and values)', function () {
    const key = fc.oneof(fc.constantFrom('uuid', 'name', 'kind', 'state', 'tags', 'createDate', 'lastOpDate', 'ownerAccountUuid', 'parentUuid', 'description', 'status'), fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }).map((s) => `_${s}`));
    fc.assert(
      fc.property(fc.dictionary(key, fc.jsonValue({ maxDepth: 2 })), (r) => {
        const { text, viewLen } = storedText(r);
        const back = JSON.parse(text) as Record<string, unknown>;
        assert.deepEqual(back, roundTrip(r));
        // the API shapes what it reads back from the store: the stored view is byte for byte that
        assert.equal(viewText(text, viewLen), JSON.stringify(viewOf(back)));
      }),
      { numRuns: 2000 },
    );
  });
});
