// heldIp (the address of a host's DHCP server on a flat L3, asked by every flat apply): one read
// of the L3's claims answers every host (a restarted controller's first reconcile pass asks for
// all of them at once: a read per host was hosts × claims rows), concurrent misses share the
// read, and a release is never answered from an older read.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { heldIp, ipNamespace, releaseIp } from '../../../controller/allocator/ip.js';

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

describe('heldIp: service addresses of an L3', () => {
  it('one read of the claims answers every host, concurrent or one after the other', async () => {
    const { store, reads } = await countingStore();
    for (let i = 1; i <= 50; i++) await store.claim(NS, `10.0.0.${i}`, `dhcp:host${i}`);
    for (let i = 51; i <= 60; i++) await store.claim(NS, `10.0.0.${i}`, `nic${i}`);
    const first = await Promise.all(Array.from({ length: 25 }, (_, i) => heldIp(store, L3, `dhcp:host${i + 1}`)));
    assert.deepEqual(first, Array.from({ length: 25 }, (_, i) => `10.0.0.${i + 1}`));
    for (let i = 26; i <= 50; i++) assert.equal(await heldIp(store, L3, `dhcp:host${i}`), `10.0.0.${i}`);
    assert.equal(reads(), 1, 'the claims were read once for 50 hosts');
    // an owner that holds nothing is asked of the store each time (a miss is not cached)
    assert.equal(await heldIp(store, L3, 'dhcp:host-new'), undefined);
    assert.equal(reads(), 2);
    await store.claim(NS, '10.0.0.99', 'dhcp:host-new');
    assert.equal(await heldIp(store, L3, 'dhcp:host-new'), '10.0.0.99');
    await store.close();
  });

  it('a released address is read again, and a read that overlapped a release keeps nothing', async () => {
    const { store, reads, hold } = await countingStore();
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
    await store.close();
  });
});
