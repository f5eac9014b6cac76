// A primary storage's totals from what each host's agent reports at ps/init: local storage sums
// the hosts, shared kinds take the largest view; each host's figures live outside the storage
// record, and a record written with them inside (before the split) is migrated on the next init.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { initPsOnHost, forgetHostCapacity, forgetPsCapacity } from '../../../controller/storage/index.js';
import { attach } from '../../../controller/model/attachments.js';
import type { CloudDeps } from '../../../controller/cloud/common.js';

const GiB = 1024 ** 3;
const res = (kind: string, u: string, extra: Record<string, unknown>): Resource => ({ kind, uuid: u, name: `${kind}-${u}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra });

/** Deps whose storage agent on host `h` reports `caps[h]`. */
function deps(store: InventoryStore, caps: Record<string, { totalCapacity: number; availableCapacity: number }>): CloudDeps {
  const agentClient = {
    call: (_cmd: unknown, ep: { url: string }) => {
      const host = Object.keys(caps).find((h) => ep.url.includes(`//${h}:`));
      if (!host) throw new Error(`no agent at ${ep.url}`);
      return Promise.resolve(caps[host]);
    },
  };
  return { store, agentClient } as unknown as CloudDeps;
}

async function setup(type: string, psExtra: Record<string, unknown> = {}): Promise<{ store: InventoryStore; ps: Resource; hosts: Resource[] }> {
  const store = await openStore({ backend: 'sqlite', path: ':memory:' });
  const hosts: Resource[] = [];
  for (const h of ['h1', 'h2', 'h3']) hosts.push(await store.create(res('host', h, { parentUuid: 'c1', managementIp: h, status: 'Connected', _agents: { storageagent: { port: 1, token: 't' } } })));
  const ps = await store.create(res('primary-storage', 'ps', { type, url: '/ps', state: 'Enabled', ...psExtra }));
  return { store, ps, hosts };
}

describe('primary storage capacity per host (ps/init)', () => {
  it('local storage: the totals are the sum over the hosts; a host reporting again replaces its share', async () => {
    const { store, ps, hosts } = await setup('LocalStorage');
    const caps = { h1: { totalCapacity: 100 * GiB, availableCapacity: 90 * GiB }, h2: { totalCapacity: 50 * GiB, availableCapacity: 10 * GiB }, h3: { totalCapacity: 7 * GiB, availableCapacity: 7 * GiB } };
    const d = deps(store, caps);
    await Promise.all(hosts.map((h) => initPsOnHost(d, ps, h)));
    let r = (await store.get(ps.uuid))!;
    assert.equal(r.status, 'Connected');
    assert.equal(r.totalCapacity, 157 * GiB);
    assert.equal(r.availableCapacity, 107 * GiB);
    assert.equal(r.availablePhysicalCapacity, 107 * GiB);
    assert.equal(r._hostCapacity, undefined, 'the record does not carry the hosts');
    caps.h2 = { totalCapacity: 50 * GiB, availableCapacity: 40 * GiB };
    await initPsOnHost(d, ps, hosts[1]!);
    r = (await store.get(ps.uuid))!;
    assert.equal(r.totalCapacity, 157 * GiB);
    assert.equal(r.availableCapacity, 137 * GiB);
  });

  it('shared storage: the largest view of any host', async () => {
    const { store, ps, hosts } = await setup('SharedMountPoint');
    const d = deps(store, { h1: { totalCapacity: 100 * GiB, availableCapacity: 60 * GiB }, h2: { totalCapacity: 100 * GiB, availableCapacity: 70 * GiB }, h3: { totalCapacity: 90 * GiB, availableCapacity: 50 * GiB } });
    for (const h of hosts) await initPsOnHost(d, ps, h);
    const r = (await store.get(ps.uuid))!;
    assert.equal(r.totalCapacity, 100 * GiB);
    assert.equal(r.availableCapacity, 70 * GiB);
  });

  it('a record with the hosts inside (written before the split) keeps their shares and loses the field', async () => {
    const legacy = { h1: { total: 100 * GiB, available: 90 * GiB }, h2: { total: 50 * GiB, available: 10 * GiB } };
    const { store, ps, hosts } = await setup('LocalStorage', { _hostCapacity: legacy, totalCapacity: 150 * GiB, availableCapacity: 100 * GiB });
    // h2 reports new figures, h3 is new; h1 is only in the old field
    const d = deps(store, { h2: { totalCapacity: 50 * GiB, availableCapacity: 20 * GiB }, h3: { totalCapacity: 8 * GiB, availableCapacity: 8 * GiB } });
    await initPsOnHost(d, (await store.get(ps.uuid))!, hosts[1]!);
    let r = (await store.get(ps.uuid))!;
    assert.equal(r._hostCapacity, undefined);
    assert.equal(r.totalCapacity, 150 * GiB);
    assert.equal(r.availableCapacity, 110 * GiB, 'h1 from the old field, h2 as it reports now');
    await initPsOnHost(d, r, hosts[2]!);
    r = (await store.get(ps.uuid))!;
    assert.equal(r.totalCapacity, 158 * GiB);
    assert.equal(r.availableCapacity, 118 * GiB);
  });

  it('a deleted host leaves the totals of its cluster\'s storages; a deleted storage leaves no per-host docs', async () => {
    const { store, ps, hosts } = await setup('LocalStorage');
    await store.create(res('cluster', 'c1', {}));
    await attach(store, 'cluster-primary-storage', 'c1', ps.uuid, 'admin');
    const d = deps(store, { h1: { totalCapacity: 100 * GiB, availableCapacity: 90 * GiB }, h2: { totalCapacity: 50 * GiB, availableCapacity: 10 * GiB }, h3: { totalCapacity: 7 * GiB, availableCapacity: 7 * GiB } });
    for (const h of hosts) await initPsOnHost(d, ps, h);
    await store.delete(hosts[1]!.uuid);
    await forgetHostCapacity(d, hosts[1]!);
    let r = (await store.get(ps.uuid))!;
    assert.equal(r.totalCapacity, 107 * GiB);
    assert.equal(r.availableCapacity, 97 * GiB);
    await forgetHostCapacity(d, hosts[1]!); // again (every controller sees the event): no change
    await forgetHostCapacity(d, hosts[0]!);
    await forgetHostCapacity(d, hosts[2]!);
    r = (await store.get(ps.uuid))!;
    assert.equal(r.totalCapacity, 0, 'no host left');
    assert.equal(r.availableCapacity, 0);
    await initPsOnHost(d, ps, hosts[0]!);
    assert.equal((await store.listDocs(`ps-host-capacity:${ps.uuid}`)).length, 1);
    await forgetPsCapacity(d, ps.uuid);
    assert.deepEqual(await store.listDocs(`ps-host-capacity:${ps.uuid}`), []);
  });

  // issue 19: each joining host recomputed the totals from every host's doc (quadratic at 1,000)
  for (const type of ['LocalStorage', 'SharedMountPoint']) {
    it(`${type}: hosts joining, leaving and reporting new figures at once leave exact totals, for a few recomputations`, async function () {
      this.timeout(30_000);
      const store = await openStore({ backend: 'sqlite', path: ':memory:' });
      const col = 'ps-host-capacity:ps';
      let recomputes = 0;
      // the recomputations are the reads of every host's doc
      const counted = new Proxy(store, {
        get(t, k, r) {
          if (k === 'listDocs') return (c: string) => ((c === col && recomputes++), t.listDocs(c));
          const v = Reflect.get(t, k, r) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
        },
      });
      await store.create(res('cluster', 'c1', {}));
      const ps = await store.create(res('primary-storage', 'ps', { type, url: '/ps', state: 'Enabled' }));
      await attach(store, 'cluster-primary-storage', 'c1', ps.uuid, 'admin');
      let seed = 7;
      const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
      const caps = new Map<string, { totalCapacity: number; availableCapacity: number }>();
      const report = (h: string): void => {
        const total = (1 + rnd(1000)) * GiB;
        caps.set(h, { totalCapacity: total, availableCapacity: total - rnd(total / GiB) * GiB });
      };
      // each agent answers after 0-300 ms: the reports spread over more than one recomputation gap
      const agentClient = {
        call: async (_cmd: unknown, ep: { url: string }) => {
          const h = /\/\/([^:]+):/.exec(ep.url)![1]!;
          const cap = caps.get(h)!;
          await new Promise((r) => setTimeout(r, rnd(300)));
          return cap;
        },
      };
      const d = { store: counted, agentClient } as unknown as CloudDeps;
      const hosts = new Map<string, Resource>();
      const join = async (h: string): Promise<void> => {
        report(h);
        const host = await store.create(res('host', h, { parentUuid: 'c1', managementIp: h, status: 'Connected', _agents: { storageagent: { port: 1, token: 't' } } }));
        hosts.set(h, host);
        await initPsOnHost(d, ps, host);
      };
      const expect = async (what: string): Promise<void> => {
        const vals = [...hosts.keys()].map((h) => caps.get(h)!);
        const agg = (f: (v: { totalCapacity: number; availableCapacity: number }) => number): number => (type === 'LocalStorage' ? vals.reduce((a, v) => a + f(v), 0) : Math.max(0, ...vals.map(f)));
        const r = (await store.get(ps.uuid))!;
        assert.equal(r.totalCapacity, agg((v) => v.totalCapacity), `${what}: total`);
        assert.equal(r.availableCapacity, agg((v) => v.availableCapacity), `${what}: available`);
        assert.equal(r.availablePhysicalCapacity, agg((v) => v.availableCapacity), `${what}: available physical`);
        assert.equal((await store.listDocs(col)).length, hosts.size, `${what}: one doc per host`);
      };

      await Promise.all(Array.from({ length: 300 }, (_, i) => join(`h${i}`)));
      await expect('300 hosts joined');
      assert.equal((await store.get(ps.uuid))!.status, 'Connected');
      assert.ok(recomputes <= 8, `300 hosts joining within ~300 ms: ${recomputes} recomputations (at most one per 200 ms, plus the first)`);

      // 100 leave, 100 report new figures and 50 join, all at once
      recomputes = 0;
      const names = [...hosts.keys()];
      const leave = async (h: string): Promise<void> => {
        const host = hosts.get(h)!;
        hosts.delete(h);
        await store.delete(h);
        await forgetHostCapacity(d, host);
      };
      const again = async (h: string): Promise<void> => {
        report(h);
        await initPsOnHost(d, ps, hosts.get(h)!);
      };
      await Promise.all([...names.slice(0, 100).map(leave), ...names.slice(100, 200).map(again), ...Array.from({ length: 50 }, (_, i) => join(`n${i}`))]);
      await expect('after 100 left, 100 reported again and 50 joined');
      assert.ok(recomputes <= 8, `${recomputes} recomputations`);

      // every host leaves
      await Promise.all([...hosts.keys()].map(leave));
      await expect('every host left');
      assert.equal((await store.get(ps.uuid))!.totalCapacity, 0);
      await store.close();
    });
  }
});
