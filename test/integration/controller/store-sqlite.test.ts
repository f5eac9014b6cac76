// The store suite on a real SQLite file (WAL), a peer being a second connection to the same file.
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { openStore } from '../../../controller/store/index.js';
import { tmpDir } from '../../harness/tmp.js';
import { useCleanup } from '../../harness/cleanup.js';
import { storeSuite } from './store.suite.js';

describe('controller store: SQLite', () => {
  const cleanup = useCleanup();
  let dir: string;
  let path = '';
  before(async () => {
    dir = await tmpDir('store-sqlite', cleanup);
  });

  storeSuite({
    open: async () => {
      path = join(dir, `inv-${randomUUID()}.db`);
      return openStore({ backend: 'sqlite', path });
    },
    openPeer: async () => openStore({ backend: 'sqlite', path }),
  });

  it('a page\'s total follows writes of this connection and of another one on the file (counts are reused only while nothing changed)', async () => {
    const p = join(dir, `counts-${randomUUID()}.db`);
    const a = await openStore({ backend: 'sqlite', path: p });
    const b = await openStore({ backend: 'sqlite', path: p });
    const zone = (name: string) => ({ uuid: randomUUID(), kind: 'zone', name, createDate: '', lastOpDate: '', ownerAccountUuid: 'x', tags: [], state: 'Enabled' });
    const page = async () => (await a.list({ kind: 'zone', filters: [{ field: 'state', op: '=', value: 'Enabled' }], limit: 1 })).total;
    await a.createMany([zone('z1'), zone('z2')]);
    assert.equal(await page(), 2);
    assert.equal(await page(), 2);
    const z3 = await a.create(zone('z3'));
    assert.equal(await page(), 3, 'a write of this connection');
    await b.create(zone('z4'));
    assert.equal(await page(), 4, 'a write of another connection');
    await b.update(z3.uuid, { state: 'Disabled' });
    assert.equal(await page(), 3, 'an update elsewhere that leaves the filter');
    await b.delete(z3.uuid);
    await a.close();
    await b.close();
  });

  it('persists across reopen, in WAL mode', async () => {
    const p = join(dir, 'persist.db');
    const a = await openStore({ backend: 'sqlite', path: p });
    await a.create({ uuid: randomUUID(), kind: 'zone', name: 'kept', createDate: '', lastOpDate: '', ownerAccountUuid: 'x', tags: [] });
    await a.close();
    assert.ok(existsSync(p));
    const b = await openStore({ backend: 'sqlite', path: p });
    const all = await b.list({ kind: 'zone' });
    assert.deepEqual(all.items.map((z) => z.name), ['kept']);
    await b.close();
  });
});
