// The observed store's batch: each write counted as its single call, the batch and its size
// besides, and each resource write's event published after the commit, in order.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import { EventBus } from '../../../controller/events/bus.js';
import { observedStore, storeOpCounts } from '../../../controller/events/observed-store.js';

describe('observed store: batch', () => {
  it('counts each write, the batch and its writes, and publishes the resource events in order', async () => {
    const raw = await openStore({ backend: 'sqlite', path: ':memory:' });
    try {
      const bus = new EventBus();
      const seen: string[] = [];
      bus.subscribe((e) => {
        if (e.type === 'resource.created' || e.type === 'resource.updated') seen.push(`${e.type} ${e.uuid} ${String(e.resource?.state)}`);
      });
      const store = observedStore(raw, bus);
      const r = { uuid: 'v1', kind: 'vm-instance', name: 'v1', createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], state: 'Starting' };
      await store.batch([
        { op: 'putDoc', collection: 'flow-journals', id: 'j', doc: {} },
        { op: 'create', resource: r },
        { op: 'update', uuid: 'v1', patch: { state: 'Running' } },
        { op: 'deleteDoc', collection: 'flow-journals', id: 'j' },
        { op: 'claim', namespace: 'ip:l3a', key: '10.0.0.2', owner: 'n1' },
        { op: 'release', namespace: 'mac', key: 'fa:00' },
      ]);
      assert.deepEqual(seen, ['resource.created v1 Starting', 'resource.updated v1 Running']);
      const c = storeOpCounts(store)!;
      assert.equal(c['putDoc:flow-journals'], 1);
      assert.equal(c['create:vm-instance'], 1);
      assert.equal(c['update:vm-instance'], 1);
      assert.equal(c['deleteDoc:flow-journals'], 1);
      assert.equal(c['claim:ip'], 1, 'a claim by its namespace without the L3, as store.claim counts');
      assert.equal(c['release:mac'], 1);
      assert.equal(c.batch, 1);
      assert.equal(c['batch:6'], 1);
      assert.equal(c.batched, 6);
      // a refused batch publishes and counts nothing
      await assert.rejects(store.batch([{ op: 'update', uuid: 'v1', patch: { x: 1 } }, { op: 'create', resource: r }]));
      assert.equal(seen.length, 2);
      assert.equal(storeOpCounts(store)!.batch, 1);
    } finally {
      await raw.close();
    }
  });
});
