// Background load and liveness probes for the hardening tests (issue 20):
//   const junk = junkLogins(c.url, 8);        // eight clients sending junk logins back to back
//   const health = watchHealth(c.url);        // GET /health every 100 ms, each timed
//   …
//   const j = await junk.stop(); const h = await health.stop();
//   assert.ok(h.maxMs < 1000); assert.deepEqual(h.failures, []); assert.equal(j.fiveXx, 0);
import { Worker } from 'node:worker_threads';

export interface JunkLoginStats {
  sent: number;
  /** Answers by status. */
  statuses: Record<number, number>;
  fiveXx: number;
}

const JUNK_BODIES: Array<() => { body: string; type: string }> = [
  () => ({ body: JSON.stringify({ accountName: `nobody-${Math.random().toString(36).slice(2)}`, password: 'wrong-password' }), type: 'application/json' }),
  () => ({ body: JSON.stringify({ accountName: 'admin', password: Math.random().toString(36) }), type: 'application/json' }),
  () => ({ body: '{"accountName": ', type: 'application/json' }),
  () => ({ body: JSON.stringify({ accountName: 'x'.repeat(70), password: 1 }), type: 'application/json' }),
  () => ({ body: 'accountName=admin&password=x', type: 'application/x-www-form-urlencoded' }),
];

/** `n` clients, each sending a junk login as soon as the previous one was answered. */
export function junkLogins(url: string, n = 8): { stop(): Promise<JunkLoginStats> } {
  const stats: JunkLoginStats = { sent: 0, statuses: {}, fiveXx: 0 };
  let stopped = false;
  const client = async (i: number): Promise<void> => {
    for (let k = i; !stopped; k++) {
      const { body, type } = JUNK_BODIES[k % JUNK_BODIES.length]!();
      try {
        const res = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': type }, body, signal: AbortSignal.timeout(30_000) });
        await res.arrayBuffer();
        stats.sent++;
        stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
        if (res.status >= 500) stats.fiveXx++;
      } catch {
        if (!stopped) stats.statuses[0] = (stats.statuses[0] ?? 0) + 1;
      }
    }
  };
  const all = Array.from({ length: n }, (_, i) => client(i));
  return {
    async stop() {
      stopped = true;
      await Promise.all(all);
      return stats;
    },
  };
}

export interface HealthStats {
  checks: number;
  maxMs: number;
  /** Median check, ms. */
  medianMs: number;
  /** Checks that did not answer 200 within the limit. */
  failures: string[];
}

// The watcher runs in a worker thread: its own event loop, so it measures the server and not
// the test building big bodies or fuzz cases on the main thread.
const WATCHER = `
const { parentPort, workerData } = require('node:worker_threads');
const { url, every, limit } = workerData;
const stats = { checks: 0, maxMs: 0, medianMs: NaN, failures: [] };
const times = [];
let stopped = false;
parentPort.on('message', () => { stopped = true; });
(async () => {
  while (!stopped) {
    const t0 = performance.now();
    try {
      const res = await fetch(url + '/health', { signal: AbortSignal.timeout(Math.ceil(limit * 5)) });
      await res.arrayBuffer();
      const ms = performance.now() - t0;
      stats.checks++;
      stats.maxMs = Math.max(stats.maxMs, ms);
      times.push(ms);
      if (res.status !== 200 || ms > limit) stats.failures.push(new Date().toISOString() + ' ' + res.status + ' in ' + Math.round(ms) + ' ms');
    } catch (e) {
      stats.failures.push(new Date().toISOString() + ' ' + e.message + ' after ' + Math.round(performance.now() - t0) + ' ms');
    }
    await new Promise((r) => setTimeout(r, every));
  }
  times.sort((a, b) => a - b);
  if (times.length) stats.medianMs = times[Math.floor(times.length / 2)];
  parentPort.postMessage(stats);
})();
`;

/** GET /health every `everyMs` from a worker thread; a check slower than `limitMs` or not 200 is a failure. */
export function watchHealth(url: string, o: { everyMs?: number; limitMs?: number } = {}): { stop(): Promise<HealthStats> } {
  const w = new Worker(WATCHER, { eval: true, workerData: { url, every: o.everyMs ?? 100, limit: o.limitMs ?? 1_000 } });
  const result = new Promise<HealthStats>((resolve, reject) => {
    w.once('message', (s: HealthStats) => resolve(s));
    w.once('error', reject);
  });
  let stopping: Promise<HealthStats> | undefined;
  return {
    stop() {
      stopping ??= (async () => {
        w.postMessage('stop');
        const s = await result;
        await w.terminate();
        return s;
      })();
      return stopping;
    },
  };
}

/**
 * How much slower than an idle machine this one runs right now (≥ 1): the best of three runs of
 * a fixed CPU loop against its time on an idle x86 core (~12 ms). Latency limits of the hardening tests are
 * the on an idle machine and stretch by this factor on a machine shared with other
 * load, so that they measure the server's algorithm, not the neighbours.
 */
export function cpuSlowdown(): number {
  let best = Infinity;
  for (let run = 0; run < 3; run++) {
    const t0 = performance.now();
    let x = 0;
    for (let i = 0; i < 20_000_000; i++) x = (x + i) % 1_000_003;
    if (x < 0) throw new Error('unreachable');
    best = Math.min(best, performance.now() - t0);
  }
  return Math.min(30, Math.max(1, best / 12));
}
