// The audit record of a call answered with a job rides on the job's commits (issue 19): written
// Accepted with the job's first doc, completed with the job's end, each one batch; the
// job.finished event then writes nothing more; a record gone by then does not keep the job's
// end from being written.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { EventBus } from '../../../controller/events/bus.js';
import { observedStore, storeOpCounts } from '../../../controller/events/observed-store.js';
import { JobManager, JOB_DOCS, type JobDoc } from '../../../controller/jobs/jobs.js';
import { AUDIT_KIND, AuditLog, type AuditRecord } from '../../../controller/audit/index.js';

describe('audit records with their job\'s commits', () => {
  let raw: InventoryStore;
  let store: InventoryStore;
  let jobs: JobManager;
  let audit: AuditLog;
  const counts = (): Record<string, number> => storeOpCounts(store)!;

  beforeEach(async () => {
    raw = await openStore({ backend: 'sqlite', path: ':memory:' });
    const bus = new EventBus();
    store = observedStore(raw, bus);
    jobs = new JobManager(store, bus);
    audit = new AuditLog(store, jobs, bus);
    jobs.onFinishWrites((j) => audit.finishWrites(j));
    audit.start();
  });
  afterEach(async () => {
    audit.stop();
    jobs.close();
    await raw.close();
  });

  const input = { apiName: 'vm-instances.create', method: 'POST', path: '/v1/vm-instances', accountUuid: 'acc', clientIp: '127.0.0.1', startTime: new Date().toISOString(), duration: 1, result: 'Accepted' as const, httpStatus: 202, resourceType: 'vm-instances' };
  const recordOf = async (jobUuid: string): Promise<AuditRecord | undefined> =>
    (await store.list<AuditRecord>({ kind: AUDIT_KIND, filters: [{ field: 'jobUuid', op: '=', value: jobUuid }] })).items[0];

  it('is created with the job\'s first doc and completed with its end: two commits in all', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const job = await jobs.start({ type: 'vm-instances.create', accountUuid: 'acc', writes: (jobUuid) => [{ op: 'create', resource: audit.accept({ ...input, jobUuid }) }] }, async () => {
      await gate;
      return { uuid: 'vm-1' };
    });
    // stored before the job is acknowledged, in the job doc's commit
    assert.equal((await recordOf(job.uuid))?.result, 'Accepted');
    assert.deepEqual([counts().batch, counts()['create:audit'], counts()['putDoc:jobs']], [1, 1, 1]);
    const lists = counts().list;
    release();
    assert.equal((await jobs.wait(job.uuid, 5000))?.state, 'Succeeded');
    await new Promise((r) => setTimeout(r, 50)); // the job.finished listener
    assert.equal(counts().list, lists, 'the completion looked nothing up');
    const rec = await recordOf(job.uuid);
    assert.equal(rec?.result, 'Succeeded');
    assert.equal(rec?.resourceUuid, 'vm-1');
    const c = counts();
    assert.deepEqual([c.batch, c['update:audit'], c['putDoc:jobs']], [2, 1, 2], JSON.stringify(c));
    const writes = ['create', 'update', 'putDoc', 'deleteDoc'].reduce((n, k) => n + (c[k] ?? 0), 0);
    assert.equal(writes - c.batched! + c.batch!, 2, 'commits');
  });

  it('a record gone by the job\'s end: the end is written without it', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const job = await jobs.start({ type: 'vm-instances.create', accountUuid: 'acc', writes: (jobUuid) => [{ op: 'create', resource: audit.accept({ ...input, jobUuid }) }] }, async () => {
      await gate;
      return { uuid: 'vm-2' };
    });
    const rec = await recordOf(job.uuid);
    assert.ok(rec);
    await store.delete(rec.uuid); // e.g. retention
    release();
    assert.equal((await jobs.wait(job.uuid, 5000))?.state, 'Succeeded');
    assert.equal((await store.getDoc<JobDoc>(JOB_DOCS, job.uuid))?.state, 'Succeeded');
    assert.equal(await recordOf(job.uuid), undefined);
  });
});
