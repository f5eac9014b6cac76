// Several controllers on one inventory: store leases serialise flows on a resource across
// engines, and a controller whose heartbeat expired has its unfinished flows taken over.
// On a real SQLite file (two connections) and a real redis-server.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { FlowEngine } from '../../../controller/workflow/engine.js';
import { JOURNALS, type FlowDef, type FlowJournal } from '../../../controller/workflow/flow.js';
import { Leases, RENEW_CHUNK, leaseUuid } from '../../../controller/workflow/lease.js';
import { setRootLogger } from '../../../shared/log.js';
import { startRedis } from '../../harness/redis.js';
import { tmpDir } from '../../harness/tmp.js';
import { useCleanup } from '../../harness/cleanup.js';

type Opener = () => Promise<[InventoryStore, InventoryStore]>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function suite(name: string, setup: (cleanup: ReturnType<typeof useCleanup>) => Promise<Opener>): void {
  describe(`controller workflow leases: ${name}`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let open: Opener;
    let a: InventoryStore;
    let b: InventoryStore;
    before(async () => {
      setRootLogger(pino({ level: 'silent' }));
      open = await setup(cleanup);
    });
    beforeEach(async () => {
      [a, b] = await open();
    });
    afterEach(async () => {
      await a.close();
      await b.close();
    });

    it('acquire, renew, expiry, release; a renewed lease cannot be stolen', async () => {
      let now = 1_000_000;
      const la = new Leases(a, () => now);
      const lb = new Leases(b, () => now);
      assert.equal(await la.tryAcquire('k', 'A', 1000), true);
      assert.equal(await lb.tryAcquire('k', 'B', 1000), false);
      assert.equal(await la.tryAcquire('k', 'A', 1000), true, 'holder renews');
      now += 1500;
      assert.equal(await la.renew('k', 'A', 1000), true, 'renewal of an expired but untaken lease');
      now += 1500;
      assert.equal(await lb.tryAcquire('k', 'B', 1000), true, 'expired: taken over');
      assert.equal(await la.renew('k', 'A', 1000), false, 'the old holder cannot renew');
      assert.deepEqual(await la.info('k'), { key: 'k', holder: 'B', expiresAt: now + 1000 });
      await la.release('k', 'A');
      assert.equal((await la.info('k')).holder, 'B', 'release by a non-holder does nothing');
      await lb.release('k', 'B');
      assert.equal((await la.info('k')).holder, undefined);
      assert.equal(await la.tryAcquire('k', 'A', 1000), true, 'free again');
      // 10 contenders at once on an expired lease: one winner
      now += 5000;
      const won = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? la : lb).tryAcquire('k', `C${i}`, 1000)));
      assert.equal(won.filter(Boolean).length, 1);
    });

    it('tryAcquireMany: takes free ones, renews its own in one batch, skips live foreign ones, takes expired ones', async () => {
      let now = 2_000_000;
      const la = new Leases(a, () => now);
      const lb = new Leases(b, () => now);
      const keys = Array.from({ length: 7 }, (_, i) => `m${i}`);
      assert.equal(await lb.tryAcquire('m0', 'B', 1000), true);
      assert.deepEqual([...(await la.tryAcquireMany(keys, 'A', 1000))].sort(), keys.slice(1), 'all but the one B holds');
      const epoch = async (k: string): Promise<string | undefined> => (await a.get(leaseUuid(k)))?.state;
      assert.equal(await epoch('m1'), 'A#1');
      const batches: number[] = [];
      const counted: typeof a = Object.create(a, { batch: { value: (ws: Parameters<typeof a.batch>[0]) => (batches.push(ws.length), a.batch(ws)) } });
      now += 500;
      assert.deepEqual([...(await new Leases(counted, () => now).tryAcquireMany(keys, 'A', 1000))].sort(), keys.slice(1), 'renewed');
      assert.deepEqual(batches, [6], 'the six renewals in one batch');
      assert.equal(await epoch('m1'), 'A#2');
      assert.equal((await la.info('m1')).expiresAt, now + 1000);
      assert.equal(await lb.tryAcquire('m1', 'B', 1000), false, 'a renewed lease is not takeable');
      // B's lease expires: A takes it; one of A's moved meanwhile (B took it after expiry): A's batch conflicts, key by key
      now += 1500;
      assert.equal(await lb.tryAcquire('m2', 'B', 1000), true, "A's expired lease taken by B");
      const got = await la.tryAcquireMany(keys, 'A', 1000);
      assert.deepEqual([...got].sort(), ['m0', 'm1', 'm3', 'm4', 'm5', 'm6']);
      assert.equal((await la.info('m2')).holder, 'B');
      assert.equal((await la.info('m0')).holder, 'A');
    });

    it('tryAcquireMany: another controller takes one of our leases between the read and the renewal batch: that chunk is refused whole, then key by key', async () => {
      let now = 3_000_000;
      const lb = new Leases(b, () => now);
      // two renewal chunks; the stolen key is in the first
      const keys = Array.from({ length: RENEW_CHUNK + 3 }, (_, i) => `c${i}`);
      const stolen = keys[5]!;
      const batches: Array<{ n: number; err?: string }> = [];
      let steal = false;
      const spied: typeof a = Object.create(a, {
        batch: {
          value: async (ws: Parameters<typeof a.batch>[0]) => {
            if (steal) {
              steal = false;
              assert.equal(await lb.tryAcquire(stolen, 'B', 1000), true, 'B takes the expired lease');
            }
            try {
              const out = await a.batch(ws);
              batches.push({ n: ws.length });
              return out;
            } catch (e) {
              batches.push({ n: ws.length, err: (e as { code?: string }).code });
              throw e;
            }
          },
        },
      });
      const la = new Leases(spied, () => now);
      assert.equal((await la.tryAcquireMany(keys, 'A', 1000)).size, keys.length, 'all free: taken one by one');
      assert.deepEqual(batches, [], 'nothing to renew yet');
      // A's leases expired but untaken: A's next round renews them; B takes one after A read it
      now += 1500;
      steal = true;
      const got = await la.tryAcquireMany(keys, 'A', 1000);
      assert.deepEqual(batches, [{ n: RENEW_CHUNK, err: 'CONFLICT' }, { n: 3 }], 'the chunk with the moved lease refused, the other renewed');
      assert.deepEqual([...got].sort(), keys.filter((k) => k !== stolen).sort());
      const states = await Promise.all(keys.map(async (k) => (await b.get(leaseUuid(k)))?.state));
      // epoch 2 everywhere: the refused batch wrote none of its 99 others (they were renewed once, key by key)
      assert.deepEqual(states, keys.map((k) => (k === stolen ? 'B#2' : 'A#2')));
      // each holds exactly its own: neither takes the other's live leases
      assert.deepEqual([...(await lb.tryAcquireMany(keys, 'B', 1000))], [stolen]);
      batches.length = 0;
      assert.deepEqual([...(await la.tryAcquireMany(keys, 'A', 1000))].sort(), keys.filter((k) => k !== stolen).sort());
      assert.deepEqual(batches, [{ n: RENEW_CHUNK }, { n: 2 }], 'the next round renews in batches again');
      for (const k of keys) assert.equal((await lb.info(k)).holder, k === stolen ? 'B' : 'A', k);
    });

    it('two controllers never run flows on the same resource at once', async () => {
      const ea = new FlowEngine({ store: a, controllerId: 'ctl-a', leases: { ttlMs: 300, waitMs: 20_000 } });
      const eb = new FlowEngine({ store: b, controllerId: 'ctl-b', leases: { ttlMs: 300, waitMs: 20_000 } });
      let inside = 0;
      let overlap = 0;
      let ran = 0;
      const key = `vm-${randomUUID()}`;
      const flow: FlowDef = {
        name: 'exclusive',
        onResume: 'rollback',
        steps: [
          {
            name: 'work',
            async run() {
              inside++;
              if (inside > 1) overlap++;
              await sleep(40);
              inside--;
              ran++;
            },
          },
        ],
      };
      await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? eb : ea).run(flow, {}, { lockKeys: [key] })));
      assert.equal(ran, 8);
      assert.equal(overlap, 0);
      assert.equal((await new Leases(a).info(`resource:${key}`)).holder, undefined, 'released after the flows');
    });

    it('takes over the flows of a controller whose heartbeat expired, not of a live one', async () => {
      const ttl = 300;
      const acquired: string[] = [];
      const flow: FlowDef<{ got: string[] }> = {
        name: 'takeover',
        onResume: 'rollback',
        steps: [
          { name: 's1', run: async () => undefined, rollback: async () => void acquired.push('rb s1') },
          { name: 's2', run: async () => undefined, rollback: async () => void acquired.push('rb s2') },
        ],
      };
      const journal = (id: string, controllerId: string, key: string): FlowJournal => ({ id, flow: 'takeover', controllerId, state: 'running', completed: 1, current: 1, rolledBack: [], data: { got: [] }, lockKeys: [key], startedAt: '', updatedAt: '' });
      // "dead" held its heartbeat and the resource lease, then stopped renewing
      const dead = new FlowEngine({ store: a, controllerId: 'ctl-dead', leases: { ttlMs: ttl } });
      await dead.start();
      await dead.leases!.tryAcquire('resource:vm-x', 'ctl-dead', ttl);
      await a.putDoc(JOURNALS, 'j-dead', journal('j-dead', 'ctl-dead', 'vm-x'));
      dead.halt();
      // "alive" keeps renewing
      const alive = new FlowEngine({ store: a, controllerId: 'ctl-alive', leases: { ttlMs: ttl } });
      await alive.start();
      await a.putDoc(JOURNALS, 'j-alive', journal('j-alive', 'ctl-alive', 'vm-y'));

      const me = new FlowEngine({ store: b, controllerId: 'ctl-me', leases: { ttlMs: ttl, waitMs: 10_000 } });
      me.register(flow);
      await me.start();
      await sleep(ttl + 100);
      const rep = await me.resume();
      assert.deepEqual(rep.map((r) => [r.id, r.action]).sort(), [
        ['j-alive', 'skipped'],
        ['j-dead', 'rolled-back'],
      ]);
      assert.deepEqual(acquired, ['rb s2', 'rb s1']);
      assert.equal(await b.getDoc(JOURNALS, 'j-dead'), undefined);
      assert.equal((await b.getDoc<FlowJournal>(JOURNALS, 'j-alive'))?.controllerId, 'ctl-alive');
      await alive.stop();
      await me.stop();
      await b.deleteDoc(JOURNALS, 'j-alive');
    });

    it('while running, takes over (only) the flows of a controller that dies later (startTakeover)', async () => {
      const ttl = 300;
      const ran: string[] = [];
      const flow: FlowDef<Record<string, never>> = {
        name: 'takeover-live',
        onResume: 'complete',
        steps: [{ name: 's1', run: async (ctx) => void ran.push(`run ${ctx.flowId}`) }],
      };
      const journal = (id: string, controllerId: string): FlowJournal => ({ id, flow: 'takeover-live', controllerId, state: 'running', completed: 0, current: 0, rolledBack: [], data: {}, lockKeys: [id], startedAt: '', updatedAt: '' });
      const me = new FlowEngine({ store: b, controllerId: 'ctl-me2', leases: { ttlMs: ttl, waitMs: 10_000, perResource: false } });
      me.register(flow);
      await me.start();
      // a journal of my own (a flow of this process in progress) is never resumed by the takeover
      await b.putDoc(JOURNALS, 'j-mine', journal('j-mine', 'ctl-me2'));
      me.startTakeover(100);
      const dying = new FlowEngine({ store: a, controllerId: 'ctl-dying', leases: { ttlMs: ttl } });
      await dying.start();
      await a.putDoc(JOURNALS, 'j-dying', journal('j-dying', 'ctl-dying'));
      await sleep(ttl);
      assert.deepEqual(ran, [], 'nothing taken while its controller renews its heartbeat');
      dying.halt();
      for (let t = Date.now(); ran.length === 0 && Date.now() - t < 10_000; ) await sleep(50);
      assert.deepEqual(ran, ['run j-dying']);
      assert.equal(await b.getDoc(JOURNALS, 'j-dying'), undefined, 'finished and gone');
      assert.equal((await b.getDoc<FlowJournal>(JOURNALS, 'j-mine'))?.controllerId, 'ctl-me2', 'my own flow left alone');
      await me.stop();
      await b.deleteDoc(JOURNALS, 'j-mine');
    });
  });
}

suite('SQLite', async (cleanup) => {
  const dir = await tmpDir('wf-leases', cleanup);
  return async () => {
    const path = join(dir, `${randomUUID()}.db`);
    const a = await openStore({ backend: 'sqlite', path });
    return [a, await openStore({ backend: 'sqlite', path })];
  };
});

suite('Redis', async (cleanup) => {
  const redis = await startRedis(cleanup);
  return async () => {
    const prefix = `lease-${randomUUID().slice(0, 8)}:`;
    return [await openStore({ backend: 'redis', url: redis.url, prefix }), await openStore({ backend: 'redis', url: redis.url, prefix })];
  };
});
