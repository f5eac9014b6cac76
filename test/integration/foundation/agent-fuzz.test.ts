// The agent-side fuzz (issue 20): each agent's protocol endpoints (its real command
// registrations on shared/agent/server.ts, in a child process with back ends that cannot touch
// the host: test/harness/fuzz-agents-child.ts) get generated hostile requests from the command
// schemas (test/fuzz/agent-requests.ts), with the token, a wrong one and none. No 5xx, every
// answer within 2 s, a command without the right token is always 401, a body the schema refuses
// always 4xx, /health within 1 s throughout (limits stretched by the measured CPU slowdown);
// then the same limits as the controller: body size (413) and in-flight requests (503 +
// Retry-After, /health still served).
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startProcess } from '../../../shared/exec.js';
import * as common from '../../../shared/protocol/common.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import * as storage from '../../../shared/protocol/storage.js';
import * as vrouter from '../../../shared/protocol/vrouter.js';
import * as secgroup from '../../../shared/protocol/secgroup.js';
import type { CommandDef } from '../../../shared/protocol/command.js';
import { useCleanup } from '../../harness/cleanup.js';
import { REPO_ROOT } from '../../harness/guest.js';
import { tmpDir } from '../../harness/tmp.js';
import { cpuSlowdown, watchHealth } from '../../harness/load.js';
import { rawRequest } from '../../harness/raw-http.js';
import { agentRequestArbitrary, commandsOf, withAgentToken, type AgentFuzzRequest } from '../../fuzz/agent-requests.js';
import { fuzzRun } from '../../fuzz/run.js';

const RUNS = Number(process.env.TSTACK_FUZZ_RUNS ?? 300);
const SEED = Number(process.env.TSTACK_FUZZ_SEED ?? 20);
const SLOWDOWN = cpuSlowdown();
const BODY_LIMIT = 1024 * 1024;
const MAX_IN_FLIGHT = 4;

const AGENTS: Record<string, CommandDef[]> = {
  kvmagent: [...commandsOf(common), ...commandsOf(kvm), ...commandsOf(secgroup)],
  storageagent: [...commandsOf(common), ...commandsOf(storage)],
  vrouteragent: [...commandsOf(common), ...commandsOf(vrouter)],
};

describe('agent fuzz: protocol endpoints of kvmagent, storageagent, vrouteragent (issue 20)', function () {
  this.timeout(600_000);
  const cleanup = useCleanup();
  let urls: Record<string, string>;
  const token = randomBytes(24).toString('hex');

  before(async function () {
    const dataDir = await tmpDir('agfz', cleanup);
    const opts = { dataDir, token, nsPrefix: `fz${randomBytes(3).toString('hex')}`, maxInFlight: MAX_IN_FLIGHT, bodyLimit: BODY_LIMIT };
    const p = await startProcess(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/harness/fuzz-agents-child.ts'), JSON.stringify(opts)], {
      cwd: REPO_ROOT,
      logFile: join(dataDir, 'agents.log'),
      env: { TSTACK_LOG_LEVEL: process.env.TSTACK_LOG_LEVEL ?? 'warn' },
    });
    cleanup.add(() => p.stop(10_000), `fuzz agents pid ${p.pid}`);
    const file = join(dataDir, 'urls.json');
    const deadline = Date.now() + 120_000;
    while (!existsSync(file)) {
      if (!p.running || Date.now() > deadline) throw new Error(`fuzz agents did not start:\n${readFileSync(join(dataDir, 'agents.log'), 'utf8').slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    urls = JSON.parse(readFileSync(file, 'utf8'));
  });

  for (const [agent, commands] of Object.entries(AGENTS)) {
    it(`${agent}: ${RUNS} generated requests (seed ${SEED}): no 5xx, none over 2 s, 401 without the token, 4xx for refused bodies`, async function () {
      const url = urls[agent]!;
      const paths = new Set(commands.map((c) => c.path));
      const health = watchHealth(url, { limitMs: 1_000 * SLOWDOWN });
      cleanup.add(async () => void (await health.stop()), `${agent} /health watcher`);
      const r = await fuzzRun({
        url,
        arbitrary: agentRequestArbitrary(commands),
        toRequest: withAgentToken(token),
        seed: SEED,
        runs: RUNS,
        answerMs: 2_000 * SLOWDOWN,
        check: (x: AgentFuzzRequest, _t, a) => {
          const command = x.method === 'POST' && paths.has(x.path);
          if (command && x.as !== 'token' && a.status !== 401 && a.status !== 404) return 'expected 401 without the right token';
          // `null` is no arguments: the read-only commands that take none answer 200
          if (command && x.as === 'token' && a.status < 400 && x.body?.toString() !== 'null') return 'a body the schema refuses was accepted';
          return undefined;
        },
      });
      const h = await health.stop();
      console.log(`      ${r.requests} requests in ${r.seconds.toFixed(1)} s; answers by status: ${JSON.stringify(r.statuses)}; /health max ${Math.round(h.maxMs)} ms`);
      assert.ok((r.statuses[401] ?? 0) > 0 && (r.statuses[400] ?? 0) > 0 && Object.keys(r.statuses).length >= 5, `varied answers: ${JSON.stringify(r.statuses)}`);
      assert.deepEqual(r.findings, []);
      assert.deepEqual(h.failures, [], `/health (max ${Math.round(h.maxMs)} ms)`);
    });
  }

  it('every agent: a body over the limit is 413 unread, beyond the in-flight limit 503 + Retry-After, /health still 200', async function () {
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    // the agents are separate processes: saturate them all at once (the wait is the same for one)
    await Promise.all(Object.entries(urls).map(async ([agent, url]) => {
      const big = await rawRequest(url, { method: 'POST', path: '/echo', headers: auth, body: JSON.stringify({ message: 'x'.repeat(BODY_LIMIT) }) });
      assert.equal(big.status, 413, `${agent}: ${big.text}`);
      // MAX_IN_FLIGHT + 4 slow echoes at once: the surplus is refused at once, /health answers
      // meanwhile. delayMs is an integer in the protocol: a fractional slowdown (3.73…) made every
      // echo a 400 under load
      const slow = Array.from({ length: MAX_IN_FLIGHT + 4 }, (_, i) => rawRequest(url, { method: 'POST', path: '/echo', headers: auth, body: JSON.stringify({ message: `slow ${i}`, delayMs: Math.round(3_000 * Math.min(SLOWDOWN, 5)) }), timeoutMs: 120_000 }));
      await new Promise((r) => setTimeout(r, 1_000 * Math.min(SLOWDOWN, 5)));
      const h = await rawRequest(url, { method: 'GET', path: '/health' });
      assert.equal(h.status, 200, `${agent} /health while saturated`);
      const answers = await Promise.all(slow);
      const busy = answers.filter((a) => a.status === 503);
      assert.ok(busy.length >= 1, `${agent}: ${JSON.stringify(answers.map((a) => a.status))}`);
      assert.ok(busy.every((a) => Number(a.headers['retry-after']) >= 1), `${agent}: Retry-After`);
      assert.ok(answers.filter((a) => a.status === 200).length >= 1, `${agent}: some echoes served`);
    }));
  });
});
