// The API fuzz, long: `npx tsx scripts/bench/fuzz.ts [requests=20000] [seed=random] [sqlite|redis]`.
// Hostile requests generated from /v1/openapi.json (test/fuzz/api-requests.ts) against a real
// controller process; prints requests/s and every finding (a 5xx, an answer over 2 s, /health
// over 1 s). Exit 1 when there is a finding. Last line `ratio: <findings per 1000 requests>`.
import fc from 'fast-check';
import { Cleanup } from '../../test/harness/cleanup.js';
import { startRedis } from '../../test/harness/redis.js';
import { runId } from '../../test/harness/tmp.js';
import { controllerProcess } from '../../test/harness/controller-process.js';
import { watchHealth } from '../../test/harness/load.js';
import { rawRequest } from '../../test/harness/raw-http.js';
import { requestArbitrary } from '../../test/fuzz/api-requests.js';

const runs = Number(process.argv[2] ?? 20_000);
const seed = Number(process.argv[3] ?? Math.floor(Math.random() * 2 ** 31));
const backend = process.argv[4] === 'redis' ? 'redis' : 'sqlite';
const cleanup = new Cleanup();
try {
  const c = await controllerProcess(cleanup, backend === 'redis' ? { store: (await startRedis(cleanup)).url, storePrefix: `${runId()}:fuzzb:` } : {});
  const admin = await c.login('admin', c.adminPassword);
  const user = await c.account('fuzzb');
  const tokens: Record<string, string | undefined> = { admin: admin.token, user: user.token };
  const z = await admin.post('/v1/zones', { name: 'fuzz-z' });
  const doc = (await c.anon.get('/v1/openapi.json')).body;
  const health = watchHealth(c.url, { limitMs: 1_000 });
  const findings: string[] = [];
  const statuses: Record<number, number> = {};
  const t0 = performance.now();
  await fc.assert(
    fc.asyncProperty(requestArbitrary(doc, [z.body.uuid, user.accountUuid]), async (r) => {
      const headers = { ...r.headers };
      if (r.as !== 'anon' && tokens[r.as]) headers.authorization = `Bearer ${tokens[r.as]}`;
      try {
        const res = await rawRequest(c.url, { method: r.method, path: r.path, headers, timeoutMs: 30_000, ...(r.body ? { body: r.body } : {}) });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status >= 500) findings.push(`${r.method} ${r.path.slice(0, 200)} → ${res.status} ${res.text.slice(0, 200)}`);
        else if (res.ms > 2_000) findings.push(`${r.method} ${r.path.slice(0, 200)} → ${res.status} after ${Math.round(res.ms)} ms`);
      } catch (e) {
        if (!/ECONNRESET|socket hang up|Invalid|Parse Error/.test((e as Error).message)) findings.push(`${r.method} ${r.path.slice(0, 200)}: ${(e as Error).message}`);
      }
      return true;
    }),
    { seed, numRuns: runs },
  );
  const secs = (performance.now() - t0) / 1000;
  const h = await health.stop();
  for (const f of h.failures) findings.push(`/health: ${f}`);
  console.log(`backend ${backend}, seed ${seed}: ${runs} requests in ${secs.toFixed(1)} s = ${(runs / secs).toFixed(0)} requests/s`);
  console.log(`answers by status: ${JSON.stringify(statuses)}; /health max ${Math.round(h.maxMs)} ms`);
  for (const f of findings) console.log(`finding: ${f}`);
  console.log(`ratio: ${((findings.length * 1000) / runs).toFixed(3)}`);
  process.exitCode = findings.length ? 1 : 0;
} finally {
  await cleanup.run();
}
