// A job's request key (StartOptions.requestKey, a VM create's resourceUuid): a start with a key a
// job holds writes nothing and answers that job, with or without audit writes riding along; the
// key is freed when the job doc is pruned, and a later start with it is a new job.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { EventBus } from '../../../controller/events/bus.js';
import { JobManager, JOB_DOCS } from '../../../controller/jobs/jobs.js';

describe('job request keys', () => {
  let store: InventoryStore;
  let jobs: JobManager;
  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    jobs = new JobManager(store, new EventBus(), { retentionMs: 0 });
  });
  afterEach(async () => {
    jobs.close();
    await store.close();
  });

  it('a repeat answers the first job and writes nothing; pruning the job frees the key', async () => {
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fn = async (): Promise<unknown> => {
      runs++;
      await gate;
      return { ok: true };
    };
    const first = await jobs.start({ type: 't.create', accountUuid: 'a', requestKey: 'a/t/k1' }, fn);
    assert.equal(first.repeated, undefined);
    const again = await jobs.start({ type: 't.create', accountUuid: 'a', requestKey: 'a/t/k1', writes: () => [{ op: 'putDoc', collection: 'x', id: 'should-not-exist', doc: {} }] }, fn);
    assert.equal(again.uuid, first.uuid);
    assert.equal(again.repeated, true);
    assert.equal((await jobs.forRequest('a/t/k1'))?.uuid, first.uuid);
    assert.equal(await store.getDoc('x', 'should-not-exist'), undefined, "the repeat's writes were not made");
    assert.equal((await store.listDocs(JOB_DOCS)).length, 1);
    // another key is another job
    const other = await jobs.start({ type: 't.create', accountUuid: 'a', requestKey: 'a/t/k2' }, fn);
    assert.notEqual(other.uuid, first.uuid);
    release();
    await jobs.wait(first.uuid);
    await jobs.wait(other.uuid);
    assert.equal(runs, 2);
    assert.equal((await jobs.start({ type: 't.create', accountUuid: 'a', requestKey: 'a/t/k1' }, fn)).uuid, first.uuid, 'a finished job still answers');
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(await jobs.gc(), 2);
    assert.equal(await jobs.forRequest('a/t/k1'), undefined);
    const fresh = await jobs.start({ type: 't.create', accountUuid: 'a', requestKey: 'a/t/k1' }, fn);
    assert.notEqual(fresh.uuid, first.uuid);
    assert.equal(fresh.repeated, undefined);
    await jobs.wait(fresh.uuid);
    assert.equal(runs, 3);
  });
});
