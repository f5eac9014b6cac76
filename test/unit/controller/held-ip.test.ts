// heldIp (the address of a host's DHCP server on a flat L3, asked by every flat apply): one read
// of the L3's claims answers every host (a restarted controller's first reconcile pass asks for
// all of them at once: a read per host was hosts × claims rows), concurrent misses share the
// read, a release is never answered from an older read, and on SQLite a recent whole read
// answers a miss too (each host's first flat apply read every claim of the L3).
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { allocateIp, heldIp, ipNamespace, releaseIp } from '../../../controller/allocator/ip.js';

const L3 = '00000000-0000-4000-8000-000000000004';
const NS = ipNamespace(L3);

/** A store whose claims() reads are counted, and can be held back until `release()`. */
async function countingStore(): Promise<{ store: InventoryStore; reads: () => number; hold: () => () => void }> {
  const store = await openStore({ backend: 'sqlite', path: ':memory:' });
  let reads = 0;
  let gate: Promise<void> | undefined;
  const claims = store.claims.bind(store);
  store.claims = async (ns) => {
    reads++;
    const r = await claims(ns);
    await gate;
    return r;
  };
  const hold = (): (() => void) => {
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    return () => {
      gate = undefined;
      open();
    };
  };
  return { store, reads: () => reads, hold };
}

/** The same store seen as a shared one (Redis): another controller may give an owner an address. */
const asShared = (store: InventoryStore): InventoryStore => new Proxy(store, { get: (t, k) => (k === 'backend' ? 'redis' : (Reflect.get(t, k) as unknown)) });

describe('heldIp: service addresses of an L3', () => {
  it('one read of the claims answers every host, concurrent or one after the other', async () => {
    const { store, reads } = await countingStore();
    for (let i = 1; i <= 50; i++) await store.claim(NS, `10.0.0.${i}`, `dhcp:host${i}`);
    for (let i = 51; i <= 60; i++) await store.claim(NS, `10.0.0.${i}`, `nic${i}`);
    const first = await Promise.all(Array.from({ length: 25 }, (_, i) => heldIp(store, L3, `dhcp:host${i + 1}`)));
    assert.deepEqual(first, Array.from({ length: 25 }, (_, i) => `10.0.0.${i + 1}`));
    for (let i = 26; i <= 50; i++) assert.equal(await heldIp(store, L3, `dhcp:host${i}`), `10.0.0.${i}`);
    assert.equal(reads(), 1, 'the claims were read once for 50 hosts');
    // SQLite (one controller): an owner that held nothing at that read, and was given nothing
    // by this process since, holds nothing: no read
    assert.equal(await heldIp(store, L3, 'dhcp:host-new'), undefined);
    assert.equal(reads(), 1);
    await store.create({ kind: 'l3-network', uuid: L3, name: 'l3', createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [] });
    await store.create({ kind: 'ip-range', uuid: `${L3.slice(0, -1)}5`, parentUuid: L3, name: 'r', createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], startIp: '10.0.0.1', endIp: '10.0.0.200', netmask: '255.255.255.0', gateway: '10.0.0.254', networkCidr: '10.0.0.0/24' });
    const given = await allocateIp(store, { l3NetworkUuid: L3, owner: 'dhcp:host-new', newOwner: true });
    assert.ok(!['10.0.0.1', '10.0.0.50', '10.0.0.51', '10.0.0.60'].includes(given.ip) && given.ip.startsWith('10.0.0.'), given.ip);
    assert.equal(await heldIp(store, L3, 'dhcp:host-new'), given.ip, 'the address this process gave is known');
    await store.close();
  });

  it('another backend (several controllers): a miss is asked of the store each time', async () => {
    const { store: sqlite, reads } = await countingStore();
    const store = asShared(sqlite);
    await store.claim(NS, '10.0.0.1', 'dhcp:a');
    assert.equal(await heldIp(store, L3, 'dhcp:a'), '10.0.0.1');
    assert.equal(await heldIp(store, L3, 'dhcp:b'), undefined);
    assert.equal(reads(), 2);
    await store.claim(NS, '10.0.0.2', 'dhcp:b');
    assert.equal(await heldIp(store, L3, 'dhcp:b'), '10.0.0.2');
    assert.equal(reads(), 3);
    await sqlite.close();
  });

  it('a released address is read again, and a read that overlapped a release keeps nothing', async () => {
    const { store: sqlite, reads, hold } = await countingStore();
    // as several controllers see it (c's address comes from elsewhere)
    const store = asShared(sqlite);
    await store.claim(NS, '10.0.0.1', 'dhcp:a');
    await store.claim(NS, '10.0.0.2', 'dhcp:b');
    assert.equal(await heldIp(store, L3, 'dhcp:a'), '10.0.0.1');
    await releaseIp(store, L3, '10.0.0.1', 'dhcp:a');
    assert.equal(await heldIp(store, L3, 'dhcp:a'), undefined, 'released: not answered from memory');
    assert.equal(reads(), 2);
    // a read in progress (it saw b's claim) while b's address is released
    await store.claim(NS, '10.0.0.3', 'dhcp:c');
    const open = hold();
    const during = heldIp(store, L3, 'dhcp:c');
    await new Promise((r) => setTimeout(r, 10));
    await releaseIp(store, L3, '10.0.0.2', 'dhcp:b');
    open();
    assert.equal(await during, '10.0.0.3');
    const before = reads();
    assert.equal(await heldIp(store, L3, 'dhcp:b'), undefined, 'the overlapping read did not bring b back');
    assert.equal(reads(), before + 1);
    await sqlite.close();
  });
});
