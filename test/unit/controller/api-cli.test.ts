// CLI helpers: typed conversion of --option values from the OpenAPI schemas, exit codes.
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { addCollectionCommands, convert, kebab, resolveRef, type CliContext } from '../../../controller/cli/commands.js';
import type { Api } from '../../../controller/cli/client.js';
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

  it('generates typed options from the API document; a field named like a global option gets the kind as prefix', async function () {
    const doc = {
      components: {
        schemas: {
          ImageCreate: { type: 'object', required: ['name', 'url'], properties: { name: { type: 'string' }, url: { type: 'string' }, size: { type: 'integer' }, backupStorageUuids: { type: 'array', items: { type: 'string' } } } },
          ImageUpdate: { type: 'object', properties: { name: { type: 'string' } } },
        },
      },
      'x-tstack-collections': [{ collection: 'images', kind: 'image', create: { schema: '#/components/schemas/ImageCreate', long: false }, update: { schema: '#/components/schemas/ImageUpdate', long: false }, delete: { long: false }, actions: [] }],
    };
    const calls: Array<[string, string, unknown]> = [];
    const printed: string[] = [];
    const api = { call: async (m: string, p: string, b?: unknown) => (calls.push([m, p, b]), { status: 201, body: { uuid: 'u1', name: 'img' } }) } as unknown as Api;
    const ctx: CliContext = { api: () => api, output: () => 'json', timeoutMs: () => undefined, print: (s) => printed.push(s) };
    const program = new Command('tstack').option('--url <url>').exitOverride();
    addCollectionCommands(program, doc, ctx);
    await program.parseAsync(['image', 'create', '--name', 'img', '--image-url', 'http://x/a.qcow2', '--size', '1G', '--backup-storage-uuids', 'b1,b2', '--backup-storage-uuids', 'b3'], { from: 'user' });
    assert.deepEqual(calls, [['POST', '/v1/images', { name: 'img', url: 'http://x/a.qcow2', size: 1024 ** 3, backupStorageUuids: ['b1', 'b2', 'b3'] }]]);
    assert.deepEqual(JSON.parse(printed[0]!), { uuid: 'u1', name: 'img' });
    await program.parseAsync(['image', 'delete', '00000000-0000-4000-8000-000000000001'], { from: 'user' });
    await program.parseAsync(['image', 'delete', '--cascade', '00000000-0000-4000-8000-000000000002'], { from: 'user' });
    assert.deepEqual(calls.slice(1).map(([m, p]) => [m, p]), [
      ['DELETE', '/v1/images/00000000-0000-4000-8000-000000000001'],
      ['DELETE', '/v1/images/00000000-0000-4000-8000-000000000002?cascade=true'],
    ]);
    const help = program.commands.find((c) => c.name() === 'images')!.commands.find((c) => c.name() === 'create')!.helpInformation();
    assert.match(help, /--image-url <value>/);
    assert.doesNotMatch(help, /^\s+--url/m);
  });
});
