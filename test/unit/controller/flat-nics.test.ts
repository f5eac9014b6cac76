// The flat L3s' NIC cache (controller/network/flat-nics.ts) against the inventory it follows: after
// every change of a long random sequence (VMs and NICs created, renamed, moved between hosts,
// stopped, destroyed, deleted; NICs moved between L3s, created before their VM), what the cache
// serves equals a fresh read, and so does the desired state built from it. Also: a warm cache reads
// nothing from the inventory, and a load that an event overlapped is not kept.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Query, Resource } from '../../../controller/store/types.js';
import { EventBus } from '../../../controller/events/bus.js';
import { observedStore } from '../../../controller/events/observed-store.js';
import { FlatNicCache, storeNics } from '../../../controller/network/flat-nics.js';
import { desiredFlat } from '../../../controller/network/flat-reconcile.js';
import type { CloudDeps } from '../../../controller/cloud/common.js';
import { rng } from '../../harness/rng.js';

const uuid = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const HOSTS = [uuid(1), uuid(2)];
const L2 = uuid(3);
const L3S = [uuid(4), uuid(5)];

const res = (kind: string, u: string, extra: Record<string, unknown>): Resource => ({ kind, uuid: u, name: `${kind}-${u.slice(-4)}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra });

interface Counting {
  store: InventoryStore;
  lists: () => number;
  /** Every list query, in order. */
  queries: Query[];
  /** While set, list() waits for it (before reading, or after with readFirst). */
  gate?: Promise<void>;
  readFirst?: boolean;
}

/** The inventory with list() counted and optionally held (what the cache's loads call). */
function counting(inner: InventoryStore): Counting {
  let n = 0;
  const c: Counting = {
    store: {
      ...inner,
      get backend() {
        return inner.backend;
      },
      list: async <T extends Resource = Resource>(q: Query) => {
        n++;
        c.queries.push(q);
        if (c.readFirst && c.gate) {
          // what was read, answered after the changes made meanwhile
          const out = await inner.list<T>(q);
          await c.gate;
          return out;
        }
        if (c.gate) await c.gate;
        return inner.list<T>(q);
      },
    },
    lists: () => n,
    queries: [],
  };
  return c;
}

/** `n` Running VMs on the first host, each with one NIC on the first L3 (10.0.0.<ipBase + i>); their uuids. */
async function runningVms(store: InventoryStore, o: { n: number; vmBase: number; nicBase: number; name: string; ipBase: number; macByte: string }): Promise<string[]> {
  const vms: string[] = [];
  for (let i = 0; i < o.n; i++) {
    const v = uuid(o.vmBase + i);
    vms.push(v);
    await store.create(res('vm-instance', v, { name: `${o.name}-${i}`, state: 'Running', hostUuid: HOSTS[0], l3NetworkUuids: [L3S[0]] }));
    await store.create(res('vm-nic', uuid(o.nicBase + i), { parentUuid: v, l3NetworkUuid: L3S[0], ip: `10.0.0.${o.ipBase + i}`, mac: `fa:16:3e:00:${o.macByte}:${(o.ipBase + i).toString(16)}`, deviceId: 0 }));
  }
  return vms;
}

async function setup(): Promise<{ store: InventoryStore; bus: EventBus; cache: FlatNicCache; c: Counting; d: CloudDeps }> {
  const bus = new EventBus();
  const store = observedStore(await openStore({ backend: 'sqlite', path: ':memory:' }), bus);
  for (const h of HOSTS) await store.create(res('host', h, { status: 'Connected' }));
  await store.create(res('l2-network', L2, { bridgeName: 'br-test' }));
  for (const [i, l3] of L3S.entries()) {
    await store.create(res('l3-network', l3, { parentUuid: L2, provider: 'Flat', networkServices: ['DHCP', 'DNS', 'UserData'], dnsDomain: 'test.local' }));
    await store.create(res('ip-range', uuid(100 + i), { parentUuid: l3, startIp: `10.${i}.0.2`, endIp: `10.${i}.0.250`, netmask: '255.255.255.0', gateway: `10.${i}.0.1`, networkCidr: `10.${i}.0.0/24` }));
  }
  const c = counting(store);
  const cache = new FlatNicCache(c.store);
  cache.watch(bus);
  return { store, bus, cache, c, d: { store } as unknown as CloudDeps };
}

describe('flat NIC cache', () => {
  it('serves what a fresh read of the inventory gives, after every change of a random sequence', async function () {
    this.timeout(60_000);
    const { store, cache, d, c } = await setup();
    const fresh = storeNics(store);
    const rand = rng(20261205);
    const vms: string[] = [];
    const nics: Array<{ uuid: string; vm: string }> = [];
    let next = 1000;
    const states = ['Running', 'Stopped', 'Starting', 'Destroying', 'Destroyed', 'Running'];
    const ops = 400;
    for (let step = 0; step < ops; step++) {
      const op = rand(12);
      // now and then the step's change lands while a read of the cache waits on the inventory
      // (a load, or a read of missing VMs): what it read is replayed on, or overridden by, the change
      let held: { open: () => void; read: Promise<unknown> } | undefined;
      if (rand(4) === 0) {
        if (rand(2) === 0) cache.refresh();
        let open!: () => void;
        c.gate = new Promise((r) => (open = r));
        c.readFirst = rand(2) === 0;
        held = { open, read: cache.liveNics(L3S[rand(2)]!) };
      }
      const vm = vms.length ? vms[rand(vms.length)]! : undefined;
      if (op <= 2 || !vm) {
        // a VM and its NICs (sometimes the NIC first, as a flow could write them)
        const v = uuid(next++);
        const l3 = L3S[rand(2)]!;
        const nic = uuid(next++);
        const nicRes = res('vm-nic', nic, { parentUuid: v, l3NetworkUuid: l3, ip: `10.${L3S.indexOf(l3)}.0.${10 + (next % 200)}`, mac: `fa:16:3e:00:${(next >> 8) & 0xff}:${(next & 0xff).toString(16).padStart(2, '0')}`, deviceId: 0 });
        const vmRes = res('vm-instance', v, { name: `vm-${rand(40)}`, state: 'Running', hostUuid: HOSTS[rand(2)], l3NetworkUuids: [l3], userData: `#cloud-config ${step}` });
        if (rand(4) === 0) {
          await store.create(nicRes);
          await store.create(vmRes);
        } else {
          await store.create(vmRes);
          await store.create(nicRes);
        }
        vms.push(v);
        nics.push({ uuid: nic, vm: v });
      } else if (op <= 6) {
        const patch: Record<string, unknown> = [
          { name: `vm-${rand(40)}` },
          { hostname: rand(2) ? `h${rand(30)}.test.local` : undefined },
          { state: states[rand(states.length)] },
          { hostUuid: rand(3) ? HOSTS[rand(2)] : undefined, lastHostUuid: HOSTS[rand(2)] },
          { userData: rand(2) ? `#!/bin/sh\necho ${step}` : undefined, sshKey: rand(2) ? `ssh-ed25519 AAAA${step}` : '' },
        ][rand(5)]!;
        await store.update(vm, patch);
      } else if (op === 7 && nics.length) {
        const n = nics.splice(rand(nics.length), 1)[0]!;
        await store.delete(n.uuid);
      } else if (op === 8) {
        await store.delete(vm);
        vms.splice(vms.indexOf(vm), 1);
      } else if (op === 9 && nics.length) {
        // a NIC moved to the other L3
        const n = nics[rand(nics.length)]!;
        const cur = await store.get(n.uuid);
        if (cur) await store.update(n.uuid, { l3NetworkUuid: cur.l3NetworkUuid === L3S[0] ? L3S[1] : L3S[0] });
      } else if (op === 10) {
        // a second NIC of a VM
        const nic = uuid(next++);
        await store.create(res('vm-nic', nic, { parentUuid: vm, l3NetworkUuid: L3S[rand(2)], ip: `10.9.0.${next % 250}`, mac: `fa:16:3e:01:00:${(next & 0xff).toString(16).padStart(2, '0')}`, deviceId: 1 }));
        nics.push({ uuid: nic, vm });
      } else {
        cache.refresh();
      }
      if (held) {
        delete c.gate;
        held.open();
        await held.read;
      }
      for (const l3 of L3S) {
        assert.deepEqual(await cache.liveNics(l3), await fresh.liveNics(l3), `step ${step} (op ${op}), L3 ${l3}`);
      }
      if (step % 25 === 0) {
        for (const l3 of L3S) {
          const l3r = (await store.get(l3))!;
          for (const h of HOSTS) assert.deepEqual(await desiredFlat(d, h, l3r, cache), await desiredFlat(d, h, l3r), `desired state, step ${step}, host ${h}, L3 ${l3}`);
        }
      }
    }
    assert.ok(vms.length > 20, `the sequence built an inventory (${vms.length} VMs)`);
  });

  it('a warm cache follows VM changes without reading the inventory', async () => {
    const { store, cache, c } = await setup();
    const vms = await runningVms(store, { n: 20, vmBase: 2000, nicBase: 3000, name: 'vm', ipBase: 10, macByte: '00' });
    assert.equal((await cache.liveNics(L3S[0]!)).length, 20);
    const loads = c.lists();
    for (const [i, v] of vms.entries()) await store.update(v, { name: `renamed-${i}` });
    await store.update(vms[0]!, { state: 'Destroyed' });
    const live = await cache.liveNics(L3S[0]!);
    assert.equal(c.lists(), loads, 'no inventory read');
    assert.equal(live.length, 19);
    assert.ok(live.every((x) => x.hostname.startsWith('renamed-')));
    // a NIC whose VM the cache has not seen: that VM alone is read (one list by uuid), not the L3
    const w = uuid(4999);
    await store.create(res('vm-instance', w, { name: 'late', state: 'Running', hostUuid: HOSTS[1], l3NetworkUuids: [L3S[1]] }));
    await store.create(res('vm-nic', uuid(3999), { parentUuid: w, l3NetworkUuid: L3S[0], ip: '10.0.0.99', mac: 'fa:16:3e:00:00:99', deviceId: 0 }));
    const withLate = await cache.liveNics(L3S[0]!);
    assert.equal(c.lists(), loads + 1, 'one read');
    assert.deepEqual(c.queries.at(-1)!.filters, [{ field: 'uuid', op: '?=', value: [w] }]);
    assert.deepEqual(withLate.at(-1), { nicUuid: uuid(3999), ip: '10.0.0.99', mac: 'fa:16:3e:00:00:99', vmUuid: w, host: HOSTS[1], hostname: 'late' });
    // that VM's changes follow without a read (it has a NIC here though it names another L3)
    await store.update(w, { name: 'late-renamed' });
    assert.equal((await cache.liveNics(L3S[0]!)).at(-1)!.hostname, 'late-renamed');
    assert.equal(c.lists(), loads + 1);
  });

  it('a rename patches the kept list: the other NICs stay the same objects, nothing is joined or sorted again', async () => {
    const { store, cache } = await setup();
    const vms = await runningVms(store, { n: 5, vmBase: 5000, nicBase: 6000, name: 'p', ipBase: 30, macByte: '01' });
    const before = await cache.liveNics(L3S[0]!);
    await store.update(vms[2]!, { lastOpDate: 'now' }); // nothing a NIC shows: the same list
    assert.equal(await cache.liveNics(L3S[0]!), before);
    await store.update(vms[2]!, { name: 'p-renamed', hostUuid: HOSTS[1] });
    const after = await cache.liveNics(L3S[0]!);
    assert.notEqual(after, before, 'a new list (an apply in flight keeps the old one)');
    assert.deepEqual(after.map((x) => x.vmUuid), vms);
    after.forEach((x, i) => (i === 2 ? assert.notEqual(x, before[i]) : assert.equal(x, before[i], `NIC ${i} rebuilt`)));
    assert.deepEqual([after[2]!.hostname, after[2]!.host, before[2]!.hostname], ['p-renamed', HOSTS[1], 'p-2']);
  });

  it("a NIC added joins the list again with the other NICs' objects, and their DNS records and text are reused", async () => {
    const { store, cache, d } = await setup();
    const vms = await runningVms(store, { n: 4, vmBase: 5000, nicBase: 6000, name: 'j', ipBase: 30, macByte: '02' });
    // the second host serves one VM: its whole set is the first host's records
    const w = uuid(5050);
    await store.create(res('vm-instance', w, { name: 'j-h1', state: 'Running', hostUuid: HOSTS[1], l3NetworkUuids: [L3S[0]] }));
    await store.create(res('vm-nic', uuid(6050), { parentUuid: w, l3NetworkUuid: L3S[0], ip: '10.0.0.98', mac: 'fa:16:3e:00:02:98', deviceId: 0 }));
    const before = await cache.liveNics(L3S[0]!);
    const reqBefore = (await desiredFlat(d, HOSTS[1]!, (await store.get(L3S[0]!))!, cache))!;
    // a create: the VM (not yet placed), its NIC, then its placement
    const v = uuid(5100);
    await store.create(res('vm-instance', v, { name: 'j-new', state: 'Starting', l3NetworkUuids: [L3S[0]] }));
    await store.create(res('vm-nic', uuid(6100), { parentUuid: v, l3NetworkUuid: L3S[0], ip: '10.0.0.99', mac: 'fa:16:3e:00:02:99', deviceId: 0 }));
    await store.update(v, { hostUuid: HOSTS[0], state: 'Running' });
    const after = await cache.liveNics(L3S[0]!);
    assert.deepEqual(after.map((x) => x.vmUuid), [...vms, w, v]);
    after.slice(0, 5).forEach((x, i) => assert.equal(x, before[i], `NIC ${i} rebuilt`));
    const reqAfter = (await desiredFlat(d, HOSTS[1]!, (await store.get(L3S[0]!))!, cache))!;
    assert.equal(reqAfter.dns.records.length, 5);
    reqBefore.dns.records.forEach((r, i) => assert.equal(reqAfter.dns.records[i], r, `record ${i} made again`));
    assert.deepEqual(reqAfter.dns.records[4], { name: 'j-new', ip: '10.0.0.99' });
  });

  it('a load replays the changes that came while it read, and is kept; refresh() during a load keeps nothing', async () => {
    const { store, cache, c } = await setup();
    const v = uuid(5000);
    await store.create(res('vm-instance', v, { name: 'before', state: 'Running', hostUuid: HOSTS[0], l3NetworkUuids: [L3S[0]] }));
    await store.create(res('vm-nic', uuid(5001), { parentUuid: v, l3NetworkUuid: L3S[0], ip: '10.0.0.50', mac: 'fa:16:3e:00:00:50', deviceId: 0 }));
    const gone = uuid(5006);
    await store.create(res('vm-instance', gone, { name: 'gone', state: 'Running', hostUuid: HOSTS[0], l3NetworkUuids: [L3S[0]] }));
    await store.create(res('vm-nic', uuid(5007), { parentUuid: gone, l3NetworkUuid: L3S[0], ip: '10.0.0.60', mac: 'fa:16:3e:00:00:60', deviceId: 0 }));
    let open!: () => void;
    c.gate = new Promise((r) => (open = r));
    c.readFirst = true;
    const loading = cache.liveNics(L3S[0]!);
    // while the load's answer is on its way (it read before these: each is replayed on what it read)
    await store.update(v, { name: 'after' });
    const w = uuid(5002);
    await store.create(res('vm-instance', w, { name: 'new', state: 'Running', hostUuid: HOSTS[1], l3NetworkUuids: [L3S[0]] }));
    await store.create(res('vm-nic', uuid(5003), { parentUuid: w, l3NetworkUuid: L3S[0], ip: '10.0.0.51', mac: 'fa:16:3e:00:00:51', deviceId: 0 }));
    await store.delete(uuid(5007)); // a NIC the load read
    const second = cache.liveNics(L3S[0]!); // shares the load
    delete c.gate;
    open();
    const [a, b] = await Promise.all([loading, second]);
    assert.equal(a, b, 'one load for both');
    assert.deepEqual(a.map((x) => x.hostname), ['after', 'new']);
    assert.equal(cache.size, 1, 'kept');
    const n = c.lists();
    await store.update(w, { name: 'newer' });
    assert.deepEqual((await cache.liveNics(L3S[0]!)).map((x) => x.hostname), ['after', 'newer']);
    assert.equal(c.lists(), n, 'served from memory');
    // a NIC whose VM is read while that VM changes: the change wins over what the read saw
    const x = uuid(5004);
    await store.create(res('vm-instance', x, { name: 'x-old', state: 'Running', hostUuid: HOSTS[1], l3NetworkUuids: [L3S[1]] }));
    await store.create(res('vm-nic', uuid(5005), { parentUuid: x, l3NetworkUuid: L3S[0], ip: '10.0.0.52', mac: 'fa:16:3e:00:00:52', deviceId: 0 }));
    c.gate = new Promise((r) => (open = r));
    const filling = cache.liveNics(L3S[0]!);
    await store.update(x, { name: 'x-new' });
    delete c.gate;
    open();
    assert.deepEqual((await filling).map((y) => y.hostname), ['after', 'newer', 'x-new']);
    assert.deepEqual(c.queries.at(-1)!.filters, [{ field: 'uuid', op: '?=', value: [x] }]);
    await store.delete(uuid(5005));
    // refresh() while a load reads: used once, not kept
    cache.refresh();
    c.readFirst = false;
    c.gate = new Promise((r) => (open = r));
    const again = cache.liveNics(L3S[0]!);
    cache.refresh();
    delete c.gate;
    open();
    assert.equal((await again).length, 2);
    assert.equal(cache.size, 0);
  });

  it('keeps L3s, L2s and ip-ranges until an event of their kinds; a read overlapped by one is used once but not kept', async () => {
    // the inventory without its bus: the events this cache sees are the test's
    const store = await openStore({ backend: 'sqlite', path: ':memory:' });
    await store.create(res('host', HOSTS[0]!, { status: 'Connected' }));
    await store.create(res('l2-network', L2, { bridgeName: 'br-test' }));
    await store.create(res('l3-network', L3S[0]!, { parentUuid: L2, provider: 'Flat', networkServices: ['DHCP'] }));
    await store.create(res('ip-range', uuid(100), { parentUuid: L3S[0], startIp: '10.0.0.2', endIp: '10.0.0.250', netmask: '255.255.255.0', gateway: '10.0.0.1', networkCidr: '10.0.0.0/24' }));
    const reads: string[] = [];
    let gate: Promise<void> | undefined;
    const counted = new FlatNicCache({
      ...store,
      get backend() {
        return store.backend;
      },
      get: async <T extends Resource = Resource>(u: string) => {
        reads.push(`get ${u}`);
        if (gate) await gate;
        return store.get<T>(u);
      },
      byParent: async <T extends Resource = Resource>(kind: string, parent: string) => {
        reads.push(`byParent ${parent}`);
        if (gate) await gate;
        return store.byParent<T>(kind, parent);
      },
    } as InventoryStore);
    const events = new EventBus();
    counted.watch(events);
    const l3 = L3S[0]!;
    assert.equal((await counted.network(l3))!.uuid, l3);
    assert.equal((await counted.ranges(l3)).length, 1);
    assert.equal((await counted.network(L2))!.kind, 'l2-network');
    const n = reads.length;
    await counted.network(l3);
    await counted.ranges(l3);
    await counted.network(L2);
    assert.equal(reads.length, n, 'kept: no second read');
    // a change of another kind keeps them; one of these kinds drops them all
    events.publish({ type: 'resource.updated', kind: 'host', resource: (await store.get(HOSTS[0]!))! } as never);
    await counted.ranges(l3);
    assert.equal(reads.length, n);
    const range = (await store.byParent('ip-range', l3))[0]!;
    const moved = await store.update(range.uuid, { endIp: '10.0.0.200' });
    events.publish({ type: 'resource.updated', kind: 'ip-range', resource: moved } as never);
    assert.equal((await counted.ranges(l3))[0]!.endIp, '10.0.0.200');
    assert.equal(reads.length, n + 1, 'read again after the event');
    const l2 = await store.update(L2, { bridgeName: 'br-other' });
    events.publish({ type: 'resource.updated', kind: 'l2-network', resource: l2 } as never);
    assert.equal((await counted.network(L2))!.bridgeName, 'br-other');
    // a read that an event overlapped answers, but the next one reads again
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    const reading = counted.network(l3);
    const l3r = await store.update(l3, { dnsDomain: 'changed.local' });
    events.publish({ type: 'resource.updated', kind: 'l3-network', resource: l3r } as never);
    gate = undefined;
    open();
    await reading;
    const m = reads.length;
    assert.equal((await counted.network(l3))!.dnsDomain, 'changed.local');
    assert.equal(reads.length, m + 1, 'the overlapped read was not kept');
    await counted.network(l3);
    assert.equal(reads.length, m + 1);
    // the periodic pass's refresh() reads everything again
    counted.refresh();
    await counted.ranges(l3);
    assert.equal(reads.length, m + 2);
  });
});
