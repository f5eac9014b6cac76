// The permanent API fuzz (issue 20): hostile requests generated from /v1/openapi.json for every
// operation (test/fuzz/api-requests.ts) against a real controller process on each store, with
// a fixed seed, while eight clients send junk logins at once. No answer may be a 5xx or slower
// than 2 s, and /health must keep answering within 1 s (both stretched by the measured CPU
// slowdown on a shared machine). A longer run: `scripts/bench/fuzz [requests]`.
import assert from 'node:assert/strict';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { runId } from '../../harness/tmp.js';
import { controllerProcess, type ControllerProcess } from '../../harness/controller-process.js';
import { cpuSlowdown, junkLogins, watchHealth } from '../../harness/load.js';
import { requestArbitrary, withCredentials } from '../../fuzz/api-requests.js';
import { fuzzRun } from '../../fuzz/run.js';

const RUNS = Number(process.env.TSTACK_FUZZ_RUNS ?? 800);
const SEED = Number(process.env.TSTACK_FUZZ_SEED ?? 20);
const SLOWDOWN = cpuSlowdown();

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`API fuzz from the OpenAPI document (${backend})`, function () {
    this.timeout(600_000);
    const cleanup = useCleanup();
    let c: ControllerProcess;
    const tokens: Record<string, string | undefined> = {};
    let doc: any;
    const uuids: string[] = [];

    before(async function () {
      c = await controllerProcess(cleanup, backend === 'redis' ? { store: (await startRedis(cleanup)).url, storePrefix: `${runId()}:fuzz:` } : {});
      const admin = await c.login('admin', c.adminPassword);
      const user = await c.account('fuzz');
      tokens.admin = admin.token;
      tokens.user = user.token;
      const z = await admin.post('/v1/zones', { name: 'fuzz-z' });
      uuids.push(z.body.uuid, user.accountUuid);
      const a = await admin.post(`/v1/zones/${z.body.uuid}/actions`, { touch: {} });
      if (a.body?.jobUuid) uuids.push(a.body.jobUuid);
      doc = (await c.anon.get('/v1/openapi.json')).body;
    });

    it(`${RUNS} generated requests (seed ${SEED}) among junk logins: no 5xx, none slower than 2 s, /health within 1 s`, async function () {
      const junk = junkLogins(c.url, 8);
      const health = watchHealth(c.url, { limitMs: 1_000 * SLOWDOWN });
      cleanup.add(async () => void (await Promise.all([junk.stop(), health.stop()])), 'junk logins, /health watcher');
      const r = await fuzzRun({ url: c.url, arbitrary: requestArbitrary(doc, uuids), toRequest: withCredentials(tokens), seed: SEED, runs: RUNS, answerMs: 2_000 * SLOWDOWN });
      const [j, h] = await Promise.all([junk.stop(), health.stop()]);
      console.log(`      ${r.requests} requests in ${r.seconds.toFixed(1)} s; answers by status: ${JSON.stringify(r.statuses)}; junk logins ${j.sent} ${JSON.stringify(j.statuses)}; /health max ${Math.round(h.maxMs)} ms`);
      // the generator must reach past validation too, not only bounce off it
      assert.ok(Object.keys(r.statuses).some((st) => Number(st) >= 200 && Number(st) < 300), 'some requests succeeded');
      assert.ok(Object.keys(r.statuses).length >= 6, 'varied answers');
      assert.deepEqual(r.findings, [], `${r.findings.length} findings; controller log:\n${c.logTail(20)}`);
      assert.equal(j.fiveXx, 0, `junk logins: ${JSON.stringify(j.statuses)}`);
      assert.deepEqual(h.failures, [], `/health (max ${Math.round(h.maxMs)} ms)`);
    });
  });
}
