// Two controllers sharing one inventory in a real redis-server: sessions, resources and jobs
// are seen by both; a job of a controller that stops is taken over (Failed INTERRUPTED) by the
// surviving one only after its heartbeat goes stale — never while it is alive.
import assert from 'node:assert/strict';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { runId } from '../../harness/tmp.js';
import { ApiClient, testController, type TestController } from '../../harness/controller.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { Obj } from '../../../shared/protocol/schema.js';

function registry(): ApiRegistry {
  const reg = new ApiRegistry();
  reg.registerAction('zones', 'hang', { long: true, schema: Obj({}), run: () => new Promise(() => undefined) });
  return reg;
}

describe('controller API on a shared Redis inventory (two controllers)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c1: TestController;
  let c2: TestController;
  let redis: Awaited<ReturnType<typeof startRedis>>;

  before(async function () {
    redis = await startRedis(cleanup);
    const o = { store: redis.url, storePrefix: `${runId()}:api:`, registry: registry(), jobStaleMs: 3000 };
    c1 = await testController(cleanup, o);
    c2 = await testController(cleanup, { ...o, registry: registry() });
  });

  it('one admin account; a session made on one controller works on the other; resources are shared', async function () {
    const s1 = await c1.login('admin', c1.adminPassword);
    const on2 = new ApiClient(c2.url, s1.token);
    const z = await s1.post('/v1/zones', { name: 'redis-z' });
    assert.equal(z.status, 201);
    const g = await on2.get(`/v1/zones/${z.body.uuid}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.name, 'redis-z');
    assert.equal((await on2.get('/v1/accounts?q=name=admin')).body.total, 1);
    const l = await on2.get('/v1/zones?q=name=redis-z&count=true');
    assert.deepEqual(l.body, { total: 1 });
    assert.equal((await on2.del('/v1/sessions/current')).status, 204);
    assert.equal((await s1.get('/v1/zones')).status, 401, 'logout on one controller ends the session on both');
  });

  it('events are shared: an SSE client of one controller sees changes made through the other (once)', async function () {
    const s1 = await c1.login('admin', c1.adminPassword);
    const ac = new AbortController();
    cleanup.add(() => ac.abort());
    const res = await fetch(`${c2.url}/v1/events?kinds=zone`, { headers: { authorization: `Bearer ${s1.token}` }, signal: ac.signal });
    assert.equal(res.status, 200);
    const got: any[] = [];
    void (async () => {
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const data = /^data: (.*)$/m.exec(buf.slice(0, i))?.[1];
            buf = buf.slice(i + 2);
            if (data) got.push(JSON.parse(data));
          }
        }
      } catch {
        /* aborted */
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const z = (await s1.post('/v1/zones', { name: 'redis-relayed' })).body;
    for (let i = 0; i < 50 && !got.some((e) => e.uuid === z.uuid); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.filter((e) => e.uuid === z.uuid && e.type === 'resource.created').length, 1, 'seen once on the other controller');
    ac.abort();
  });

  it('a live controller\'s running job is left alone; once it stops, the other takes it over as INTERRUPTED', async function () {
    const s1 = await c1.login('admin', c1.adminPassword);
    const z = (await s1.post('/v1/zones', { name: 'redis-hang' })).body;
    const started = await s1.post(`/v1/zones/${z.uuid}/actions`, { hang: {} });
    assert.equal(started.status, 202);
    const on2 = new ApiClient(c2.url, s1.token);
    await new Promise((r) => setTimeout(r, 4000)); // > a stale period: c1's heartbeat keeps it fresh
    assert.equal((await on2.get(started.body.location)).body.state, 'Running', 'taken over while its controller lives');
    await c1.stop();
    let j: any;
    for (let i = 0; i < 100; i++) {
      j = (await on2.get(started.body.location)).body;
      if (j.state !== 'Running') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(j.state, 'Failed');
    assert.equal(j.error.code, 'INTERRUPTED');
  });

  it('GET /health answers 503 when the shared inventory is gone', async function () {
    assert.equal((await c2.anon.get('/health')).status, 200);
    await redis.stop();
    const t0 = Date.now();
    const r = await c2.anon.get('/health');
    assert.equal(r.status, 503);
    assert.equal(r.body.status, 'store unavailable');
    assert.ok(Date.now() - t0 < 5_000, 'answers within a few seconds');
  });
});
