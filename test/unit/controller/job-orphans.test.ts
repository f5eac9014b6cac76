// Jobs of a controller that stopped beating are taken over by a live one on a shared store
// (issue 19: the heartbeat round read every job doc, finished ones included, every 15 s; now the
// job docs are read only when a controller's heartbeat has gone stale since the last look).
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { JobManager, JOB_DOCS, type JobDoc } from '../../../controller/jobs/jobs.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('jobs of a stopped controller on a shared store', () => {
  it('are resumed by a live controller, whose later rounds read no job docs', async function () {
    this.timeout(20_000);
    const store = await openStore({ backend: 'sqlite', path: ':memory:' });
    let jobReads = 0;
    const counted = new Proxy(store, {
      get(t, k, r) {
        if (k === 'listDocs') return (c: string) => ((c === JOB_DOCS && jobReads++), t.listDocs(c));
        const v = Reflect.get(t, k, r) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    }) as InventoryStore;
    // staleMs 300: a round every second (the floor), a controller stale 300 ms after its last beat
    const o = { exclusive: false, staleMs: 300 };
    const b = new JobManager(store, undefined, o);
    await b.init();
    // finished jobs are what the rounds used to parse as well
    for (let i = 0; i < 20; i++) await b.wait((await b.start({ type: 'done', accountUuid: 'acc' }, () => Promise.resolve(i))).uuid);
    const orphan = await b.start({ type: 'resumable', accountUuid: 'acc' }, () => new Promise(() => undefined));
    const a = new JobManager(counted, undefined, o);
    const resumed: string[] = [];
    a.registerResumer('resumable', (job) => {
      resumed.push(job.uuid);
      return Promise.resolve('resumed');
    });
    await a.init();
    try {
      assert.deepEqual(resumed, [], 'B beats: its job is not an orphan yet');
      b.close(); // B stops beating (as if killed): its job stays Running in the store
      const deadline = Date.now() + 5_000;
      while (resumed.length === 0 && Date.now() < deadline) await sleep(100);
      assert.deepEqual(resumed, [orphan.uuid], 'A resumes the job of the stopped controller');
      const done = await a.wait(orphan.uuid, 5_000);
      assert.equal(done?.state, 'Succeeded');
      assert.equal(done?.result, 'resumed');
      assert.equal((await store.getDoc<JobDoc>(JOB_DOCS, orphan.uuid))?.state, 'Succeeded');
      // no controller goes stale any more: the next rounds read the heartbeats, no job doc
      jobReads = 0;
      await sleep(2_600);
      assert.equal(jobReads, 0, 'rounds with no newly stale controller read no job doc');
      // a controller that beats again and then stops is looked for again
      const c = new JobManager(store, undefined, o);
      await c.init();
      const orphan2 = await c.start({ type: 'resumable', accountUuid: 'acc' }, () => new Promise(() => undefined));
      c.close();
      const deadline2 = Date.now() + 5_000;
      while (resumed.length < 2 && Date.now() < deadline2) await sleep(100);
      assert.deepEqual(resumed, [orphan.uuid, orphan2.uuid]);
      assert.ok(jobReads >= 1);
    } finally {
      a.close();
      await store.close();
    }
  });
});
