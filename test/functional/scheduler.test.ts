// Scheduler jobs and triggers (manual 定时任务 / 定时器) on the fake cloud, driven by the test's
// own clock (the scheduler ticks only when told): a trigger stops and then starts a VM, and its
// runs are jobs of the account; a snapshot job snapshots the root volume on each slot of its
// grid; a controller restarted between two slots — even one that died after claiming a slot and
// before recording it — fires nothing twice and goes on with the grid; slots missed while the
// controller was down are skipped (one fire on return, not one per slot; none when too late); a
// cron trigger fires on its times; bad input is refused with 400 naming the field.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { schedulerModule, type SchedulerModule } from '../../controller/scheduler/module.js';

const field = (r: { body: any }): string | undefined => r.body?.details?.field ?? r.body?.field;

describe('functional: scheduler jobs and triggers on the fake cloud', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  let fc: FakeCloud;
  // the scheduler's clock: a minute boundary in the future, moved by the tests
  let clock = Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 86_400_000;
  let sched: SchedulerModule;
  const newModule = (): SchedulerModule => schedulerModule({ tickMs: 0, now: () => clock });
  let vm: any;

  const tick = (): Promise<void> => sched.scheduler!.tick();
  const post = async (path: string, body: unknown): Promise<any> => {
    const r = await fc.api.post(path, body);
    assert.ok(r.status < 300, `POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const get = async (path: string): Promise<any> => (await fc.api.get(path)).body;
  /** The scheduler job once its last run finished. */
  const settled = async (uuid: string): Promise<any> => {
    for (let i = 0; i < 200; i++) {
      const j = await get(`/v1/scheduler-jobs/${uuid}`);
      if (j.lastRunResult && j.lastRunResult !== 'Running') return j;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`scheduler job ${uuid} did not finish its run`);
  };
  const snapshots = async (): Promise<number> => (await fc.controller.store.list({ kind: 'volume-snapshot', filters: [{ field: 'volumeUuid', op: '=', value: vm.rootVolumeUuid }] })).items.length;

  before(async () => {
    sched = newModule();
    fc = await startFakeCloud(cleanup, { modules: [sched] });
    const r = await fc.createVm('sched-vm');
    assert.ok(r.status < 300, JSON.stringify(r.body));
    vm = r.body;
  });

  it('bad triggers and jobs: 400 naming the field', async () => {
    const bad = async (path: string, body: Record<string, unknown>, f: string): Promise<void> => {
      const r = await fc.api.post(path, { name: 'bad', ...body });
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(field(r), f, JSON.stringify(r.body));
    };
    await bad('/v1/scheduler-triggers', { schedulerType: 'cron', cron: '61 * * * *' }, 'cron');
    await bad('/v1/scheduler-triggers', { schedulerType: 'cron', cron: 'every day' }, 'cron');
    await bad('/v1/scheduler-triggers', { schedulerType: 'cron', cron: '* * * * * * * *' }, 'cron');
    await bad('/v1/scheduler-triggers', { schedulerType: 'cron', cron: `${'1,'.repeat(100)}1 * * * *` }, 'cron');
    await bad('/v1/scheduler-triggers', { schedulerType: 'cron' }, 'cron');
    await bad('/v1/scheduler-triggers', { schedulerType: 'simple' }, 'schedulerInterval');
    await bad('/v1/scheduler-triggers', { schedulerType: 'simple', schedulerInterval: 0 }, 'schedulerInterval');
    await bad('/v1/scheduler-triggers', { schedulerType: 'simple', schedulerInterval: 60, startTime: 'tomorrow' }, 'startTime');
    await bad('/v1/scheduler-triggers', { schedulerType: 'weekly', schedulerInterval: 60 }, 'schedulerType');
    await bad('/v1/scheduler-jobs', { type: 'stopVm', targetResourceUuid: vm.rootVolumeUuid }, 'targetResourceUuid');
    await bad('/v1/scheduler-jobs', { type: 'deleteVm', targetResourceUuid: vm.uuid }, 'type');
    await bad('/v1/scheduler-jobs', { type: 'stopVm', targetResourceUuid: vm.uuid, schedulerTriggerUuid: vm.uuid }, 'schedulerTriggerUuid');
    await bad('/v1/scheduler-jobs', { type: 'stopVm', targetResourceUuid: vm.uuid, parameters: { snapshotName: 'x' } }, 'parameters');
  });

  it('a trigger stops the VM, another starts it again: runs are jobs of the account', async () => {
    const t1 = await post('/v1/scheduler-triggers', { name: 'stop-at', schedulerType: 'simple', schedulerInterval: 3600, repeatCount: 1, startTime: (clock + 1000) / 1000 });
    assert.equal(t1.nextFireTime, new Date(clock + 1000).toISOString());
    const stop = await post('/v1/scheduler-jobs', { name: 'stop', type: 'stopVm', targetResourceUuid: vm.uuid, schedulerTriggerUuid: t1.uuid });
    const t2 = await post('/v1/scheduler-triggers', { name: 'start-at', schedulerType: 'simple', schedulerInterval: 3600, repeatCount: 1, startTime: new Date(clock + 2000).toISOString() });
    const start = await post('/v1/scheduler-jobs', { name: 'start', type: 'startVm', targetResourceUuid: vm.uuid });
    await post(`/v1/scheduler-jobs/${start.uuid}/actions`, { addSchedulerJobToSchedulerTrigger: { schedulerTriggerUuid: t2.uuid } });
    const twice = await fc.api.post(`/v1/scheduler-jobs/${start.uuid}/actions`, { addSchedulerJobToSchedulerTrigger: { schedulerTriggerUuid: t1.uuid } });
    assert.equal(twice.status, 409, 'a job is on one trigger at most');

    await tick();
    assert.equal((await get(`/v1/vm-instances/${vm.uuid}`)).state, 'Running', 'nothing is due yet');
    clock += 1000;
    await tick();
    const s = await settled(stop.uuid);
    assert.equal(s.lastRunResult, 'Succeeded', JSON.stringify(s));
    assert.equal((await get(`/v1/vm-instances/${vm.uuid}`)).state, 'Stopped');
    const job = await get(`/v1/jobs/${s.lastJobUuid}`);
    assert.equal(job.type, 'vm-instances.stop');
    assert.equal(job.accountUuid, fc.controller.auth.adminAccountUuid);
    assert.equal(job.resourceUuid, vm.uuid);
    const done = await get(`/v1/scheduler-triggers/${t1.uuid}`);
    assert.equal(done.status, 'Completed');
    assert.equal(done.fireCount, 1);
    assert.equal(done.nextFireTime, undefined);

    clock += 1000;
    await tick();
    assert.equal((await settled(start.uuid)).lastRunResult, 'Succeeded');
    assert.equal((await get(`/v1/vm-instances/${vm.uuid}`)).state, 'Running');
    // unloaded from its trigger
    await post(`/v1/scheduler-jobs/${start.uuid}/actions`, { removeSchedulerJobFromSchedulerTrigger: { schedulerTriggerUuid: t2.uuid } });
    assert.equal((await get(`/v1/scheduler-jobs/${start.uuid}`)).schedulerTriggerUuid, undefined);
  });

  it('snapshots on each slot; a restarted controller fires no slot twice (not even one claimed before a crash) and goes on', async () => {
    const t = await post('/v1/scheduler-triggers', { name: 'every-10s', schedulerType: 'simple', schedulerInterval: 10, repeatCount: 3, startTime: (clock + 10_000) / 1000 });
    const sj = await post('/v1/scheduler-jobs', { name: 'root-snap', type: 'volumeSnapshot', targetResourceUuid: vm.rootVolumeUuid, parameters: { snapshotName: 'nightly' }, schedulerTriggerUuid: t.uuid });
    const before = await snapshots();
    clock += 10_000;
    await tick();
    assert.equal((await settled(sj.uuid)).lastRunResult, 'Succeeded');
    clock += 10_000;
    await tick();
    await settled(sj.uuid);
    assert.equal(await snapshots(), before + 2);
    const names = (await fc.controller.store.list({ kind: 'volume-snapshot', filters: [{ field: 'volumeUuid', op: '=', value: vm.rootVolumeUuid }] })).items.map((x) => x.name);
    assert.ok(names.includes(`nightly-${new Date(clock).toISOString()}`), names.join(', '));

    // restart: a new controller on the same data dir, a new scheduler with the same clock
    sched = newModule();
    await fc.crashController([sched]);
    await tick();
    assert.equal(await snapshots(), before + 2, 'the restarted controller does not fire the last slot again');
    // a controller that died after claiming the slot and before recording it: the slot is not fired again
    await fc.controller.store.update(t.uuid, { nextFireTime: new Date(clock).toISOString() });
    await tick();
    assert.equal(await snapshots(), before + 2, 'a claimed slot never fires twice');
    assert.equal((await get(`/v1/scheduler-triggers/${t.uuid}`)).nextFireTime, new Date(clock + 10_000).toISOString());

    clock += 10_000;
    await tick();
    await settled(sj.uuid);
    assert.equal(await snapshots(), before + 3, 'the grid goes on after the restart');
    const tr = await get(`/v1/scheduler-triggers/${t.uuid}`);
    assert.equal(tr.status, 'Completed');
    assert.equal(tr.fireCount, 3);
    clock += 10_000;
    await tick();
    assert.equal(await snapshots(), before + 3, 'repeatCount reached');
  });

  it('slots missed while the controller was down: one fire on return if the last is recent, none if too late; cron fires on its times', async () => {
    const t = await post('/v1/scheduler-triggers', { name: 'often', schedulerType: 'simple', schedulerInterval: 10, startTime: (clock + 10_000) / 1000 });
    const sj = await post('/v1/scheduler-jobs', { name: 'often-snap', type: 'volumeSnapshot', targetResourceUuid: vm.rootVolumeUuid, schedulerTriggerUuid: t.uuid });
    const n0 = await snapshots();
    const start = clock + 10_000;
    clock += 125_000; // slots start+0 … start+110 passed, start+110 is 5 s ago (within grace)
    await tick();
    await settled(sj.uuid);
    assert.equal(await snapshots(), n0 + 1, 'one fire for twelve due slots');
    let tr = await get(`/v1/scheduler-triggers/${t.uuid}`);
    assert.equal(tr.missedFires, 11);
    assert.equal(tr.lastFireTime, new Date(start + 110_000).toISOString());
    assert.equal(tr.nextFireTime, new Date(start + 120_000).toISOString());
    await post(`/v1/scheduler-jobs/${sj.uuid}/actions`, { changeState: { stateEvent: 'disable' } });

    const hourly = await post('/v1/scheduler-triggers', { name: 'hourly', schedulerType: 'simple', schedulerInterval: 3600, startTime: (clock + 1000) / 1000 });
    const hj = await post('/v1/scheduler-jobs', { name: 'hourly-snap', type: 'volumeSnapshot', targetResourceUuid: vm.rootVolumeUuid, schedulerTriggerUuid: hourly.uuid });
    clock += 1000 + 2 * 3600_000 + 30 * 60_000; // the last slot is 30 min late: too late to run
    const n1 = await snapshots();
    await tick();
    assert.equal(await snapshots(), n1, 'expired slots do not run');
    tr = await get(`/v1/scheduler-triggers/${hourly.uuid}`);
    assert.equal(tr.missedFires, 3);
    assert.equal(tr.fireCount, 0);
    assert.equal(tr.nextFireTime, new Date(Date.parse(hourly.startTime) + 3 * 3600_000).toISOString());
    assert.equal((await get(`/v1/scheduler-jobs/${hj.uuid}`)).runCount, 0);

    // cron: every 5 minutes on the minute (UTC), with seconds as the first field
    const cron = await post('/v1/scheduler-triggers', { name: 'cron', schedulerType: 'cron', cron: '0 */5 * * * *', repeatCount: 2 });
    const first = Date.parse(cron.nextFireTime);
    assert.equal(first % 300_000, 0);
    const rj = await post('/v1/scheduler-jobs', { name: 'reboot', type: 'rebootVm', targetResourceUuid: vm.uuid, schedulerTriggerUuid: cron.uuid });
    clock = first + 1000;
    await tick();
    assert.equal((await settled(rj.uuid)).lastRunResult, 'Succeeded');
    assert.equal((await get(`/v1/scheduler-triggers/${cron.uuid}`)).nextFireTime, new Date(first + 300_000).toISOString());
    clock = first + 300_000;
    await tick();
    await settled(rj.uuid);
    const c = await get(`/v1/scheduler-triggers/${cron.uuid}`);
    assert.equal(c.fireCount, 2);
    assert.equal(c.status, 'Completed', 'repeatCount 2 reached');
  });

  it('deleting a trigger unloads its jobs; expunging the VM deletes its jobs', async () => {
    const t = await post('/v1/scheduler-triggers', { name: 'gone', schedulerType: 'simple', schedulerInterval: 60 });
    const j = await post('/v1/scheduler-jobs', { name: 'gone', type: 'rebootVm', targetResourceUuid: vm.uuid, schedulerTriggerUuid: t.uuid });
    assert.equal((await fc.api.del(`/v1/scheduler-triggers/${t.uuid}`)).status, 200);
    assert.equal((await get(`/v1/scheduler-jobs/${j.uuid}`)).schedulerTriggerUuid, undefined);
    const d = await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal((await get(`/v1/scheduler-jobs/${j.uuid}`)).uuid, j.uuid, 'a destroyed VM (recoverable) keeps its jobs');
    const x = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
    assert.equal(x.status, 200, JSON.stringify(x.body));
    for (let i = 0; i < 50 && (await fc.api.get(`/v1/scheduler-jobs/${j.uuid}`)).status !== 404; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await fc.api.get(`/v1/scheduler-jobs/${j.uuid}`)).status, 404);
  });
});
