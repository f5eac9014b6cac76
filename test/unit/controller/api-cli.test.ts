// CLI helpers: typed conversion of --option values from the OpenAPI schemas, exit codes.
import assert from 'node:assert/strict';
import { convert, kebab, resolveRef } from '../../../controller/cli/commands.js';
import { CliError, Exit, exitCodeOfStatus } from '../../../controller/cli/exit.js';

const usage = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CliError);
    assert.equal(e.exitCode, Exit.USAGE);
    return e.message;
  }
  throw new Error('did not throw');
};

describe('tstack CLI: option conversion and exit codes', function () {
  it('kebab-cases field names', function () {
    assert.equal(kebab('l3NetworkUuids'), 'l3-network-uuids');
    assert.equal(kebab('primaryStorageUuidForRootVolume'), 'primary-storage-uuid-for-root-volume');
    assert.equal(kebab('name'), 'name');
  });

  it('converts numbers (with size suffixes), booleans, lists, objects and enums from their schema', function () {
    assert.equal(convert('cpu-num', { type: 'integer' }, '4'), 4);
    assert.equal(convert('memory-size', { type: 'integer' }, '512M'), 512 * 1024 ** 2);
    assert.equal(convert('memory-size', { type: 'integer' }, '2GiB'), 2 * 1024 ** 3);
    assert.equal(convert('disk-size', { type: 'integer' }, '1.5G'), 1.5 * 1024 ** 3);
    assert.equal(convert('ratio', { type: 'number' }, '1.25'), 1.25);
    assert.equal(convert('flag', { type: 'boolean' }, 'yes'), true);
    assert.equal(convert('flag', { type: 'boolean' }, 'false'), false);
    assert.deepEqual(convert('l3-network-uuids', { type: 'array', items: { type: 'string' } }, 'a,b'), ['a', 'b']);
    assert.deepEqual(convert('ports', { type: 'array', items: { type: 'integer' } }, '22, 80'), [22, 80]);
    assert.deepEqual(convert('static-ips', { type: 'array', items: { type: 'object' } }, '[{"ip":"10.0.0.2"}]'), [{ ip: '10.0.0.2' }]);
    assert.deepEqual(convert('spec', { type: 'object' }, '{"a":1}'), { a: 1 });
    assert.equal(convert('type', { anyOf: [{ const: 'grace' }, { const: 'cold' }] }, 'cold'), 'cold');
    assert.equal(convert('name', { type: 'string' }, '007'), '007');
  });

  it('rejects values of the wrong type as usage errors naming the option', function () {
    assert.match(usage(() => convert('cpu-num', { type: 'integer' }, 'many')), /--cpu-num/);
    assert.match(usage(() => convert('flag', { type: 'boolean' }, 'maybe')), /--flag/);
    assert.match(usage(() => convert('spec', { type: 'object' }, '{bad')), /--spec/);
    assert.match(usage(() => convert('cpu-num', { type: 'integer' }, '')), /--cpu-num/);
  });

  it('resolves $refs of the OpenAPI document', function () {
    const doc = { components: { schemas: { ZoneCreate: { type: 'object' } } } };
    assert.deepEqual(resolveRef(doc, '#/components/schemas/ZoneCreate'), { type: 'object' });
    assert.throws(() => resolveRef(doc, '#/components/schemas/Nope'), CliError);
  });

  it('maps HTTP statuses to exit codes', function () {
    assert.equal(exitCodeOfStatus(400), Exit.USAGE);
    assert.equal(exitCodeOfStatus(401), Exit.AUTH);
    assert.equal(exitCodeOfStatus(403), Exit.AUTH);
    assert.equal(exitCodeOfStatus(404), Exit.NOT_FOUND);
    assert.equal(exitCodeOfStatus(409), Exit.CONFLICT);
    assert.equal(exitCodeOfStatus(500), Exit.API_ERROR);
    assert.equal(exitCodeOfStatus(501), Exit.API_ERROR);
  });
});
