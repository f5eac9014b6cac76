import assert from 'node:assert/strict';
import { pino } from 'pino';
import { backoffMs, ReconcileQueue, type ReconcileArea } from '../../../controller/reconcile/queue.js';
import { setRootLogger } from '../../../shared/log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An area whose applies are recorded and can be held open or made to fail. */
class FakeArea implements ReconcileArea {
  applied: string[] = [];
  hostOf?: (key: string) => string | undefined;
  active = new Map<string, number>();
  maxPerKey = 0;
  maxTotal = 0;
  failures = new Map<string, number>();
  holds = new Map<string, Promise<void>>();
  keyList: string[] = [];
  constructor(public name = 'flat') {}
  keys(): Promise<string[]> {
    return Promise.resolve([...this.keyList]);
  }
  async apply(key: string): Promise<void> {
    this.active.set(key, (this.active.get(key) ?? 0) + 1);
    this.maxPerKey = Math.max(this.maxPerKey, this.active.get(key)!);
    this.maxTotal = Math.max(this.maxTotal, [...this.active.values()].reduce((a, b) => a + b, 0));
    try {
      await sleep(5);
      await this.holds.get(key);
      const f = this.failures.get(key) ?? 0;
      if (f > 0) {
        this.failures.set(key, f - 1);
        throw new Error(`apply ${key} failed`);
      }
      this.applied.push(key);
    } finally {
      this.active.set(key, this.active.get(key)! - 1);
    }
  }
}

function gate(): { p: Promise<void>; open: () => void } {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe('controller reconcile queue', () => {
  let q: ReconcileQueue | undefined;
  before(() => setRootLogger(pino({ level: 'silent' })));
  afterEach(async () => {
    await q?.stop();
    q = undefined;
  });

  it('coalesces marks of a queued key into one apply', async () => {
    const a = new FakeArea();
    q = new ReconcileQueue({ periodMs: 0 });
    q.register(a);
    for (let i = 0; i < 10; i++) q.mark('flat', 'h1/l3');
    q.mark('flat', 'h2/l3');
    q.start();
    await q.idle();
    assert.deepEqual(a.applied.sort(), ['h1/l3', 'h2/l3']);
  });

  it('never runs one key twice at once; a mark during a run applies once more afterwards', async () => {
    const a = new FakeArea();
    const g = gate();
    a.holds.set('k', g.p);
    q = new ReconcileQueue({ periodMs: 0 });
    q.register(a);
    q.start();
    q.mark('flat', 'k');
    await sleep(20);
    assert.equal(a.active.get('k'), 1);
    q.mark('flat', 'k');
    q.mark('flat', 'k');
    await sleep(20);
    assert.equal(a.active.get('k'), 1, 'the second mark waits for the running apply');
    a.holds.delete('k');
    g.open();
    await q.idle();
    assert.deepEqual(a.applied, ['k', 'k'], 'marks during the run coalesce into exactly one more apply');
    assert.equal(a.maxPerKey, 1);
  });

  it('limits concurrency over all keys', async () => {
    const a = new FakeArea();
    q = new ReconcileQueue({ periodMs: 0, concurrency: 2 });
    q.register(a);
    q.start();
    for (let i = 0; i < 8; i++) q.mark('flat', `k${i}`);
    await q.idle();
    assert.equal(a.applied.length, 8);
    assert.equal(a.maxTotal, 2);
  });

  it('retries a failing key with exponential backoff and reports the error meanwhile', async () => {
    const a = new FakeArea();
    a.failures.set('k', 3);
    const times: number[] = [];
    const orig = a.apply.bind(a);
    a.apply = async (key) => {
      times.push(Date.now());
      return orig(key);
    };
    q = new ReconcileQueue({ periodMs: 0, baseBackoffMs: 100, maxBackoffMs: 250 });
    q.register(a);
    q.start();
    q.mark('flat', 'k');
    await q.idle();
    const s = q.status().find((x) => x.key === 'k')!;
    assert.equal(s.attempts, 1);
    assert.equal(s.lastError, 'apply k failed');
    assert.equal(s.lastAppliedAt, undefined);
    // a mark while the key backs off does not bypass the backoff
    q.mark('flat', 'k');
    await sleep(5);
    assert.equal(times.length, 1);
    const t0 = Date.now();
    while (a.applied.length === 0 && Date.now() - t0 < 3000) await sleep(10);
    assert.deepEqual(a.applied, ['k']);
    assert.equal(times.length, 4);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // at least 100, 200, 250 (capped) ms; upper bounds mean nothing on a loaded machine, the
    // doubling and the cap are checked on backoffMs itself
    assert.ok(gaps[0]! >= 95, `first gap ${gaps[0]}`);
    assert.ok(gaps[1]! >= 195, `second gap ${gaps[1]}`);
    assert.ok(gaps[2]! >= 245, `third gap ${gaps[2]}`);
    assert.deepEqual([1, 2, 3, 4, 10].map((n) => backoffMs(n, 100, 250)), [100, 200, 250, 250, 250]);
    assert.deepEqual([1, 2, 3, 7].map((n) => backoffMs(n, 1_000, 60_000)), [1_000, 2_000, 4_000, 60_000].map((x, i) => (i === 3 ? Math.min(60_000, 64_000) : x)));
    const ok = q.status().find((x) => x.key === 'k')!;
    assert.equal(ok.attempts, 0);
    assert.equal(ok.lastError, undefined);
    assert.ok(ok.lastAppliedAt !== undefined);
  });

  it('the periodic pass applies every key of every area and forgets keys that went away', async () => {
    const a = new FakeArea('flat');
    const b = new FakeArea('secgroup');
    a.keyList = ['h1/n1', 'h1/n2'];
    b.keyList = ['h1'];
    q = new ReconcileQueue({ periodMs: 60 });
    q.register(a);
    q.register(b);
    q.start(); // first pass at once
    await sleep(1);
    await q.idle();
    assert.deepEqual(a.applied.sort(), ['h1/n1', 'h1/n2']);
    assert.deepEqual(b.applied, ['h1']);
    a.keyList = ['h1/n2'];
    await sleep(150);
    await q.idle();
    assert.ok(a.applied.filter((k) => k === 'h1/n2').length >= 2, 'the pass repeats');
    assert.equal(a.applied.filter((k) => k === 'h1/n1').length, 1);
    assert.deepEqual(q.status().filter((s) => s.area === 'flat').map((s) => s.key), ['h1/n2']);
  });

  it('marks before start() wait; unknown areas are ignored; a duplicate area is refused', async () => {
    const a = new FakeArea();
    q = new ReconcileQueue({ periodMs: 0 });
    q.register(a);
    assert.throws(() => q!.register(new FakeArea()), /already registered/);
    q.mark('flat', 'k');
    q.mark('nope', 'k');
    await sleep(20);
    assert.deepEqual(a.applied, []);
    q.start();
    await q.idle();
    assert.deepEqual(a.applied, ['k']);
    assert.deepEqual(q.status().map((s) => s.area), ['flat']);
  });

  it('stop() waits for running applies and starts no more', async () => {
    const a = new FakeArea();
    const g = gate();
    a.holds.set('k1', g.p);
    q = new ReconcileQueue({ periodMs: 0, concurrency: 1 });
    q.register(a);
    q.start();
    q.mark('flat', 'k1');
    q.mark('flat', 'k2');
    await sleep(20);
    let stopped = false;
    const s = q.stop().then(() => (stopped = true));
    await sleep(20);
    assert.equal(stopped, false, 'stop waits for the running apply');
    g.open();
    await s;
    assert.deepEqual(a.applied, ['k1'], 'k2 was never started');
    q.mark('flat', 'k3');
    await sleep(20);
    assert.deepEqual(a.applied, ['k1']);
  });

  it('sync() waits for an apply that starts after the call, and rejects with its error', async () => {
    const a = new FakeArea();
    const g = gate();
    a.holds.set('k', g.p);
    q = new ReconcileQueue({ periodMs: 0, baseBackoffMs: 10_000 });
    q.register(a);
    q.start();
    q.mark('flat', 'k');
    await sleep(20); // an apply of the old state runs
    let done = false;
    const s = q.sync('flat', 'k').then(() => (done = true));
    g.open();
    await sleep(30);
    assert.equal(a.applied.length, 2, 'a second apply ran for the sync');
    assert.equal(done, true);
    await s;
    a.failures.set('k', 1);
    await assert.rejects(q.sync('flat', 'k'), /apply k failed/);
    // a key backing off (10 s here) is applied at once by sync()
    const t0 = Date.now();
    await q.sync('flat', 'k');
    assert.ok(Date.now() - t0 < 1_000);
    await assert.rejects(q.sync('nope', 'k'), /not registered/);
  });

  it('with an owner, applies only the keys of hosts it owns unless synced; a host gained has its keys applied', async () => {
    const a = new FakeArea();
    a.hostOf = (k: string): string => k.split('/')[0]!;
    a.keyList = ['h1/l3', 'h2/l3', 'h3/l3'];
    const other = new FakeArea('router'); // an area without hosts: every key is this controller's
    other.keyList = ['r1'];
    const owned = new Set(['h1']);
    q = new ReconcileQueue({ periodMs: 0, baseBackoffMs: 20 });
    q.register(a);
    q.register(other);
    q.setOwner({ owns: (h) => owned.has(h) });
    q.start();
    await q.idle();
    assert.deepEqual(a.applied, ['h1/l3'], "the first pass applies this controller's keys only");
    assert.deepEqual(other.applied, ['r1']);
    a.applied = [];
    q.mark('flat', 'h2/l3');
    q.mark('flat', 'h1/l3');
    await q.idle();
    assert.deepEqual(a.applied, ['h1/l3'], "another controller's key is not marked");
    // a flow that needs a key applied gets it wherever it runs
    await q.sync('flat', 'h3/l3');
    assert.deepEqual(a.applied, ['h1/l3', 'h3/l3']);
    // a key failing on a host this controller then loses is not retried here
    a.applied = [];
    a.failures.set('h1/l3', 1);
    q.mark('flat', 'h1/l3');
    await sleep(10);
    owned.delete('h1');
    await sleep(60);
    await q.idle();
    assert.deepEqual(a.applied, [], 'the retry was left to the new owner');
    assert.equal(q.status().find((x) => x.key === 'h1/l3')?.attempts, 0);
    // hosts gained: their keys are applied (keys() filtered by host when the area has no keysOn)
    owned.add('h2');
    await q.hostsGained(new Set(['h2']));
    await q.idle();
    assert.deepEqual(a.applied, ['h2/l3']);
    // without an owner (one controller) every key is applied
    a.applied = [];
    q.setOwner(undefined);
    q.mark('flat', 'h3/l3');
    await q.idle();
    assert.deepEqual(a.applied, ['h3/l3']);
  });
});
