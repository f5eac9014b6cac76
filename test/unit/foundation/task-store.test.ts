import assert from 'node:assert/strict';
import { TaskStore } from '../../../shared/agent/task-store.js';
import { SerialQueues } from '../../../shared/agent/serial-queue.js';
import { TStackError, httpStatusOf } from '../../../shared/errors.js';
import type { TaskResult } from '../../../shared/protocol/index.js';

const done = (taskId: string): TaskResult => ({ taskId, command: 'echo', state: 'succeeded', success: true, result: { ok: 1 }, startedAt: '', finishedAt: '' });

describe('foundation: task store, serial queues, errors', () => {
  it('keeps a finished result for the retention window, then forgets it', async () => {
    const s = new TaskStore(10 * 60_000);
    try {
      const e = s.start('a', 'echo', async () => done('a'));
      assert.equal(e.result.state, 'running');
      await e.done;
      assert.equal(s.get('a')!.result.state, 'succeeded');
      s.gc(Date.now() + 9 * 60_000);
      assert.ok(s.get('a'), 'still there after 9 minutes');
      s.gc(Date.now() + 10 * 60_000 + 1);
      assert.equal(s.get('a'), undefined);
    } finally {
      s.close();
    }
  });

  it('the default retention is at least 10 minutes', async () => {
    const s = new TaskStore();
    try {
      await s.start('b', 'echo', async () => done('b')).done;
      s.gc(Date.now() + 10 * 60_000);
      assert.ok(s.get('b'));
    } finally {
      s.close();
    }
  });

  it('never expires a task that is still running', async () => {
    const s = new TaskStore(1);
    try {
      let finish!: () => void;
      const e = s.start('c', 'echo', () => new Promise<TaskResult>((r) => (finish = () => r(done('c')))));
      s.gc(Date.now() + 3_600_000);
      assert.ok(s.get('c'));
      finish();
      await e.done;
      s.gc(Date.now() + 10);
      assert.equal(s.get('c'), undefined);
      assert.equal(s.size, 0);
    } finally {
      s.close();
    }
  });

  it('serial queues: one at a time per key in arrival order, failures do not block the queue', async () => {
    const q = new SerialQueues();
    const log: string[] = [];
    const op = (k: string, name: string, ms: number, fail = false) =>
      q.run(k, async () => {
        log.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`end ${name}`);
        if (fail) throw new Error(name);
        return name;
      });
    const results = await Promise.allSettled([op('k', 'a', 30, true), op('k', 'b', 5), op('j', 'x', 10)]);
    assert.equal(results[0].status, 'rejected');
    assert.deepEqual(results.slice(1).map((r) => (r as PromiseFulfilledResult<string>).value), ['b', 'x']);
    const ka = log.indexOf('end a');
    assert.ok(log.indexOf('start b') > ka, 'b started after a ended');
    assert.ok(log.indexOf('start x') < ka, 'x did not wait for a');
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(q.size, 0, 'idle keys are forgotten');
    assert.equal(await q.run(undefined, async () => 7), 7);
  });

  it('typed errors: JSON shape, from(), HTTP status', () => {
    const e = new TStackError('VM_NOT_FOUND', 'vm x not found', { uuid: 'x' });
    assert.deepEqual(JSON.parse(JSON.stringify(e)), { code: 'VM_NOT_FOUND', message: 'vm x not found', details: { uuid: 'x' } });
    assert.equal(TStackError.from(new Error('boom')).code, 'INTERNAL');
    assert.equal(TStackError.from(e), e);
    assert.equal(TStackError.fromBody({ code: 'TIMEOUT', message: 'm' }).code, 'TIMEOUT');
    assert.equal(httpStatusOf('INVALID_ARGUMENT'), 400);
    assert.equal(httpStatusOf('UNAUTHORIZED'), 401);
    assert.equal(httpStatusOf('VM_NOT_FOUND'), 404);
    assert.equal(httpStatusOf('CONFLICT'), 409);
    assert.equal(httpStatusOf('TIMEOUT'), 504);
    assert.equal(httpStatusOf('LIBVIRT_ERROR'), 500);
  });
});
