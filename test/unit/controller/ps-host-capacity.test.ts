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
});
