// The API fuzz, long (issue 20): `scripts/bench/fuzz [requests=20000] [seed=random] [sqlite|redis] [clients=4]`.
// Hostile requests generated from /v1/openapi.json (test/fuzz/api-requests.ts) against a real
// controller process, while eight clients send junk logins and a watcher polls /health. Prints
// requests/s and every finding (a 5xx, an answer over 2 s, /health over 1 s); exit 1 when there
// is one. Last line `ratio: X`: the median fuzz-request latency ÷ the median /health latency of
// the same run (how much dearer a hostile request is than the cheapest request on that server
// under the same load; a regression that makes hostile input expensive moves it).
import { Cleanup } from '../../test/harness/cleanup.js';
import { startRedis } from '../../test/harness/redis.js';
import { runId } from '../../test/harness/tmp.js';
import { controllerProcess } from '../../test/harness/controller-process.js';
import { junkLogins, watchHealth } from '../../test/harness/load.js';
import { requestArbitrary, withCredentials } from '../../test/fuzz/api-requests.js';
import { fuzzRun, median } from '../../test/fuzz/run.js';

const runs = Number(process.argv[2] ?? 20_000);
const seed = Number(process.argv[3] ?? Math.floor(Math.random() * 2 ** 31));
const backend = process.argv[4] === 'redis' ? 'redis' : 'sqlite';
// fuzz clients sending at once (besides the eight junk-login clients)
const clients = Number(process.argv[5] ?? 4);
const cleanup = new Cleanup();
try {
  const c = await controllerProcess(cleanup, backend === 'redis' ? { store: (await startRedis(cleanup)).url, storePrefix: `${runId()}:fuzzb:` } : {});
  const admin = await c.login('admin', c.adminPassword);
  const user = await c.account('fuzzb');
  const z = await admin.post('/v1/zones', { name: 'fuzz-z' });
  const job = await admin.post(`/v1/zones/${z.body.uuid}/actions`, { touch: {} });
  const doc = (await c.anon.get('/v1/openapi.json')).body;
  const junk = junkLogins(c.url, 8);
  const health = watchHealth(c.url, { limitMs: 1_000 });
  cleanup.add(async () => void (await Promise.all([junk.stop(), health.stop()])));
  console.log(`backend ${backend}, seed ${seed}, ${clients} fuzz clients: ${runs} requests…`);
  const r = await fuzzRun({
    url: c.url,
    arbitrary: requestArbitrary(doc, [z.body.uuid, user.accountUuid, job.body?.jobUuid].filter(Boolean)),
    toRequest: withCredentials({ admin: admin.token, user: user.token }),
    seed,
    runs,
    answerMs: 2_000,
    concurrency: clients,
    onProgress: (n) => n % 2_000 === 0 && console.log(`  ${n} requests`),
  });
  const [j, h] = await Promise.all([junk.stop(), health.stop()]);
  const findings = [...r.findings, ...h.failures.map((f) => `/health: ${f}`)];
  if (j.fiveXx) findings.push(`junk logins: ${j.fiveXx} answers 5xx`);
  const med = median(r.latencies);
  console.log(`${r.requests} requests in ${r.seconds.toFixed(1)} s = ${(r.requests / r.seconds).toFixed(0)} requests/s (alongside ${j.sent} junk logins)`);
  console.log(`answers by status: ${JSON.stringify(r.statuses)}; slowest ${Math.round(Math.max(...r.latencies))} ms, median ${med.toFixed(1)} ms`);
  console.log(`/health: ${h.checks} checks, median ${h.medianMs.toFixed(1)} ms, max ${Math.round(h.maxMs)} ms`);
  console.log(`findings: ${findings.length}`);
  for (const f of findings) console.log(`finding: ${f}`);
  console.log(`ratio: ${(med / h.medianMs).toFixed(2)}`);
  process.exitCode = findings.length ? 1 : 0;
} finally {
  await cleanup.run();
}
