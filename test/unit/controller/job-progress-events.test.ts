// A job's progress events are coalesced (issue 19): a burst of reports publishes its first one
// and, at the window's end, the last; a report still waiting when the job ends is not published
// (job.finished follows). The job itself shows every report.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { EventBus, type NumberedEvent } from '../../../controller/events/bus.js';
import { JobManager, PROGRESS_EVENT_MS } from '../../../controller/jobs/jobs.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('job progress events', () => {
  let store: InventoryStore;
  let jobs: JobManager;
  let bus: EventBus;
  const seen: NumberedEvent[] = [];

  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    bus = new EventBus();
    bus.subscribe((e) => void seen.push(e));
    jobs = new JobManager(store, bus);
    seen.length = 0;
  });
  afterEach(async () => {
    jobs.close();
    await store.close();
  });

  const jobEvents = (uuid: string): string[] =>
    seen.flatMap((e) => ('job' in e && e.job.uuid === uuid ? [`${e.type}${e.type === 'job.progress' ? ` ${e.job.progress} ${e.job.message}` : ''}`] : []));

  it('a burst: its first report at once, its last at the window end; one pending at the end is left to job.finished', async () => {
    const live: Array<number | undefined> = [];
    const job = await jobs.start({ type: 't', accountUuid: 'acc' }, async (jc) => {
      jc.progress(10, 'a');
      jc.progress(20, 'b');
      jc.progress(30, 'c');
      jc.progress(40, 'd');
      // the job shows every report (its live copy: once start() has returned)
      await sleep(0);
      live.push((await jobs.get(jc.jobUuid))?.progress);
      await sleep(PROGRESS_EVENT_MS + 150);
      jc.progress(50, 'e');
      live.push((await jobs.get(jc.jobUuid))?.progress);
      return 'ok';
    });
    const done = await jobs.wait(job.uuid, 5_000);
    assert.equal(done?.state, 'Succeeded');
    await sleep(PROGRESS_EVENT_MS + 50);
    assert.deepEqual(jobEvents(job.uuid), ['job.created', 'job.progress 10 a', 'job.progress 40 d', 'job.finished']);
    assert.deepEqual(live, [40, 50]);
  });

  it('reports further apart than the window are each published', async () => {
    const job = await jobs.start({ type: 't', accountUuid: 'acc' }, async (jc) => {
      jc.progress(10, 'a');
      await sleep(PROGRESS_EVENT_MS + 30);
      jc.progress(60, 'b');
      await sleep(PROGRESS_EVENT_MS + 30);
    });
    await jobs.wait(job.uuid, 5_000);
    assert.deepEqual(jobEvents(job.uuid), ['job.created', 'job.progress 10 a', 'job.progress 60 b', 'job.finished']);
  });
});
