// Jobs: long actions answer 202 + location; ?wait=true answers with the result or the error;
// jobs are persisted and survive a restart (Running ones become Failed unless resumed).
import assert from 'node:assert/strict';
import { useCleanup } from '../../harness/cleanup.js';
import { ApiClient, testController, type TestController } from '../../harness/controller.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { TStackError } from '../../../shared/errors.js';
import { Obj, Type } from '../../../shared/protocol/schema.js';

function testRegistry(gate: { release?: () => void; promise?: Promise<void> }): ApiRegistry {
  const reg = new ApiRegistry();
  // the fallback zones/clusters are added by startController; actions need the collection first
  reg.registerCollection({ collection: 'zones', kind: 'zone', createSchema: Obj({ name: Type.String(), description: Type.Optional(Type.String()) }), updateSchema: Obj({ name: Type.Optional(Type.String()), description: Type.Optional(Type.String()) }), initialState: 'Enabled' });
  reg.registerAction('zones', 'rename', {
    schema: Obj({ name: Type.String({ minLength: 1 }) }),
    run: async (z, p, ctx) => ctx.store.update(z.uuid, { name: p.name as string }),
  });
  reg.registerAction('zones', 'slowCount', {
    long: true,
    schema: Obj({ to: Type.Integer({ minimum: 1, maximum: 10 }), stepMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
    run: async (z, p, ctx) => {
      const to = p.to as number;
      for (let i = 1; i <= to; i++) {
        await new Promise((r) => setTimeout(r, (p.stepMs as number | undefined) ?? 50));
        ctx.job?.progress((i * 100) / to, `step ${i} of ${to}`);
      }
      return { counted: to, zoneUuid: z.uuid };
    },
  });
  reg.registerAction('zones', 'failLater', {
    long: true,
    schema: Obj({}),
    run: async () => {
      await new Promise((r) => setTimeout(r, 30));
      throw new TStackError('CONFLICT', 'zone is busy: try again later', { field: 'zoneUuid' });
    },
  });
  reg.registerAction('zones', 'hang', {
    long: true,
    schema: Obj({}),
    run: async () => {
      await gate.promise;
      return { released: true };
    },
  });
  reg.setCreate('zones', {
    long: true,
    run: async (body, ctx) => {
      ctx.job?.progress(50, 'creating');
      const now = new Date().toISOString();
      return ctx.store.create({ uuid: crypto.randomUUID(), kind: 'zone', name: body.name as string, ownerAccountUuid: ctx.principal.accountUuid, tags: [], createDate: now, lastOpDate: now, state: 'Enabled' });
    },
  });
  return reg;
}

describe('controller API: jobs', function () {
  const cleanup = useCleanup();
  const gate: { release?: () => void; promise?: Promise<void> } = {};
  gate.promise = new Promise<void>((r) => (gate.release = r));
  let c: TestController;
  let admin: ApiClient;
  let zone: any;

  before(async function () {
    c = await testController(cleanup, { registry: testRegistry(gate) });
    admin = await c.login('admin', c.adminPassword);
    const r = await admin.post('/v1/zones?wait=true', { name: 'jobs-z' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    zone = r.body;
  });

  it('a long create answers 202 {jobUuid, location}; the job ends Succeeded with the resource as result', async function () {
    const r = await admin.post('/v1/zones', { name: 'jobs-z2' });
    assert.equal(r.status, 202);
    assert.match(r.body.jobUuid, /^[0-9a-f-]{36}$/);
    assert.equal(r.body.location, `/v1/jobs/${r.body.jobUuid}`);
    assert.equal(r.headers.get('location'), r.body.location);
    let job: any;
    for (let i = 0; i < 200; i++) {
      job = (await admin.get(r.body.location)).body;
      if (job.state !== 'Running') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(job.state, 'Succeeded');
    assert.equal(job.progress, 100);
    assert.equal(job.result.name, 'jobs-z2');
    assert.equal(job.result.kind, 'zone');
    assert.equal((await admin.get(`/v1/zones/${job.result.uuid}`)).status, 200);
  });

  it('?wait=true: 200 with the result; progress is reported while running', async function () {
    const r = await admin.post(`/v1/zones/${zone.uuid}/actions`, { slowCount: { to: 10, stepMs: 200 } });
    assert.equal(r.status, 202);
    let mid: any;
    for (let i = 0; i < 100; i++) {
      mid = (await admin.get(r.body.location)).body;
      if (mid.progress > 0) break;
      await new Promise((res) => setTimeout(res, 30));
    }
    assert.equal(mid.state, 'Running');
    assert.ok(mid.progress > 0 && mid.progress < 100, `progress ${mid.progress}`);
    assert.match(mid.message, /^step \d+ of 10$/);
    const w = await admin.post(`/v1/zones/${zone.uuid}/actions?wait=true`, { slowCount: { to: 2 } });
    assert.equal(w.status, 200);
    assert.deepEqual(w.body, { counted: 2, zoneUuid: zone.uuid });
  });

  it('?wait=true on a failing job answers the error with its status; the job shows it too', async function () {
    const w = await admin.post(`/v1/zones/${zone.uuid}/actions?wait=true`, { failLater: {} });
    assert.equal(w.status, 409);
    assert.equal(w.body.code, 'CONFLICT');
    assert.equal(w.body.message, 'zone is busy: try again later');
    assert.equal(w.body.field, 'zoneUuid');
    const j = (await admin.get(`/v1/jobs/${w.body.jobUuid}`)).body;
    assert.equal(j.state, 'Failed');
    assert.equal(j.error.code, 'CONFLICT');
  });

  it('sync actions answer 200 at once; bad action bodies are 400 naming the field', async function () {
    const r = await admin.post(`/v1/zones/${zone.uuid}/actions`, { rename: { name: 'jobs-z-renamed' } });
    assert.equal(r.status, 200);
    assert.equal(r.body.name, 'jobs-z-renamed');
    const cases: Array<[unknown, string]> = [
      [{}, '(body)'],
      [{ rename: { name: 'a' }, slowCount: { to: 1 } }, '(body)'],
      [{ explode: {} }, 'explode'],
      [{ rename: {} }, 'rename.name'],
      [{ rename: { name: 5 } }, 'rename.name'],
      [{ rename: { name: 'x', extra: 1 } }, 'rename.extra'],
      [{ slowCount: { to: 11 } }, 'slowCount.to'],
      [{ rename: 'x' }, 'rename'],
    ];
    for (const [body, field] of cases) {
      const b = await admin.post(`/v1/zones/${zone.uuid}/actions`, body);
      assert.equal(b.status, 400, JSON.stringify(body));
      assert.equal(b.body.field, field, JSON.stringify(body));
    }
    assert.equal((await admin.post('/v1/zones/00000000-0000-4000-8000-000000000000/actions', { rename: { name: 'x' } })).status, 404);
  });

  it('GET /v1/jobs lists the caller\'s jobs with the query language (q, sort, limit, count, fields); unknown job → 404', async function () {
    const l = await admin.get('/v1/jobs');
    assert.equal(l.status, 200);
    assert.ok(l.body.total >= 4);
    assert.ok(l.body.inventories.every((j: any) => ['Running', 'Succeeded', 'Failed'].includes(j.state)));
    assert.equal((await admin.get('/v1/jobs/00000000-0000-4000-8000-000000000000')).status, 404);
    const failed = await admin.get('/v1/jobs?q=state=Failed&sort=-createDate&fields=uuid,state,type');
    assert.equal(failed.status, 200, JSON.stringify(failed.body));
    assert.ok(failed.body.total >= 1);
    assert.ok(failed.body.inventories.every((j: any) => j.state === 'Failed' && Object.keys(j).length === 3));
    const n = (await admin.get('/v1/jobs?q=type=zones.slowCount&count=true')).body.total;
    assert.ok(n >= 2);
    assert.equal((await admin.get('/v1/jobs?limit=1')).body.inventories.length, 1);
    assert.equal((await admin.get('/v1/jobs?limit=x')).status, 400);
  });

  it('a job Running when the controller stops is Failed (INTERRUPTED) after a restart; finished jobs are kept', async function () {
    const hang = await admin.post(`/v1/zones/${zone.uuid}/actions`, { hang: {} });
    assert.equal(hang.status, 202);
    const done = await admin.post(`/v1/zones/${zone.uuid}/actions?wait=true`, { slowCount: { to: 1 } });
    assert.equal(done.status, 200);
    const doneJobs = (await admin.get('/v1/jobs')).body.inventories.filter((j: any) => j.state === 'Succeeded').map((j: any) => j.uuid);
    await c.stop();
    const c2 = await testController(cleanup, { dataDir: c.dataDir, registry: testRegistry({ promise: new Promise(() => undefined) }) });
    const a2 = await c2.login('admin', c2.adminPassword);
    const j = (await a2.get(hang.body.location)).body;
    assert.equal(j.state, 'Failed');
    assert.equal(j.error.code, 'INTERRUPTED');
    assert.match(j.error.message, /restarted/);
    assert.match(j.error.message, new RegExp(zone.uuid));
    for (const u of doneJobs) assert.equal((await a2.get(`/v1/jobs/${u}`)).body.state, 'Succeeded');
    gate.release!();
  });

  it('a registered resumer takes over a Running job after a restart', async function () {
    const gate2: { release?: () => void; promise?: Promise<void> } = {};
    gate2.promise = new Promise<void>((r) => (gate2.release = r));
    const c3 = await testController(cleanup, { registry: testRegistry(gate2) });
    const a3 = await c3.login('admin', c3.adminPassword);
    const z = (await a3.post('/v1/zones?wait=true', { name: 'resume-z' })).body;
    const hang = await a3.post(`/v1/zones/${z.uuid}/actions`, { hang: {} });
    await c3.stop();
    const c4 = await testController(cleanup, {
      dataDir: c3.dataDir,
      registry: testRegistry({ promise: new Promise(() => undefined) }),
      beforeListen: (s) => s.jobs.registerResumer('zones.hang', async (job, jc) => {
        jc.progress(90, 'resumed');
        return { resumed: job.uuid };
      }),
    });
    const a4 = await c4.login('admin', c4.adminPassword);
    let j: any;
    for (let i = 0; i < 200; i++) {
      j = (await a4.get(hang.body.location)).body;
      if (j.state !== 'Running') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(j.state, 'Succeeded');
    assert.deepEqual(j.result, { resumed: hang.body.jobUuid });
    gate2.release!();
  });
});
