// The permanent API fuzz (issue 20): hostile requests generated from /v1/openapi.json for every
// operation (test/fuzz/api-requests.ts) against a real controller process on each store, with
// a fixed seed. No answer may be a 5xx or slower than 2 s, and /health must keep answering
// within 1 s (both stretched by the measured CPU slowdown on a shared machine).
// A longer run: `npx tsx scripts/bench/fuzz.ts [requests]`.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { runId } from '../../harness/tmp.js';
import { controllerProcess, type ControllerProcess } from '../../harness/controller-process.js';
import { cpuSlowdown, watchHealth } from '../../harness/load.js';
import { rawRequest } from '../../harness/raw-http.js';
import { requestArbitrary, type FuzzRequest } from '../../fuzz/api-requests.js';

const RUNS = Number(process.env.TSTACK_FUZZ_RUNS ?? 1500);
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

    it(`${RUNS} generated requests (seed ${SEED}): no 5xx, none slower than 2 s, /health within 1 s`, async function () {
      const health = watchHealth(c.url, { limitMs: 1_000 * SLOWDOWN });
      const findings: string[] = [];
      const statuses: Record<number, number> = {};
      const send = async (r: FuzzRequest): Promise<void> => {
        const headers = { ...r.headers };
        if (r.as !== 'anon' && tokens[r.as]) headers.authorization = `Bearer ${tokens[r.as]}`;
        let res;
        try {
          const o: Parameters<typeof rawRequest>[1] = { method: r.method, path: r.path, headers, timeoutMs: 30_000 };
          if (r.body) o.body = r.body;
          res = await rawRequest(c.url, o);
        } catch (e) {
          // Node's own parser refusing a malformed request line closes the connection: fine
          if (/ECONNRESET|socket hang up|Invalid|Parse Error/.test((e as Error).message)) return;
          findings.push(`${r.method} ${r.path.slice(0, 200)}: ${(e as Error).message}`);
          return;
        }
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status >= 500) findings.push(`${r.method} ${r.path.slice(0, 200)} → ${res.status} ${res.text.slice(0, 300)}`);
        else if (res.ms > 2_000 * SLOWDOWN) findings.push(`${r.method} ${r.path.slice(0, 200)} → ${res.status} after ${Math.round(res.ms)} ms`);
      };
      await fc.assert(fc.asyncProperty(requestArbitrary(doc, uuids), async (r) => {
        await send(r);
        return true;
      }), { seed: SEED, numRuns: RUNS, endOnFailure: true });
      const h = await health.stop();
      console.log(`      answers by status: ${JSON.stringify(statuses)}`);
      // the generator must reach past validation too, not only bounce off it
      assert.ok(Object.keys(statuses).some((st) => Number(st) < 300), 'some requests succeeded');
      assert.ok(Object.keys(statuses).length >= 4, 'varied answers');
      assert.deepEqual(findings, [], `${findings.length} findings; controller log:\n${c.logTail(20)}`);
      assert.deepEqual(h.failures, [], `/health (max ${Math.round(h.maxMs)} ms)`);
    });
  });
}
