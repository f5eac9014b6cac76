// MAC allocator: locally administered-looking KVM addresses 52:54:00:xx:xx:xx, unique across
// the inventory through a store claim (namespace 'mac'), so two NICs never share one even
// when several controllers allocate at once. 2^24 addresses: random picks collide rarely; a
// collision just tries another.
import { randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore } from '../store/types.js';

export const MAC_NAMESPACE = 'mac';

export function randomKvmMac(): string {
  const b = randomBytes(3);
  return ['52', '54', '00', ...[...b].map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

/** A unique MAC held by `owner` (the NIC uuid). Record it in the flow's data and release it on rollback. */
export async function allocateMac(store: InventoryStore, owner: string, gen: () => string = randomKvmMac): Promise<string> {
  for (let i = 0; i < 64; i++) {
    const mac = gen();
    if (await store.claim(MAC_NAMESPACE, mac, owner)) return mac;
  }
  throw new TStackError('CAPACITY_EXCEEDED', 'could not find a free MAC address after 64 tries', { owner });
}

/** Reserve a given MAC (imported VM, recovered NIC); CONFLICT if another owner holds it. */
export async function claimMac(store: InventoryStore, mac: string, owner: string): Promise<void> {
  const m = mac.toLowerCase();
  if (!(await store.claim(MAC_NAMESPACE, m, owner))) throw new TStackError('CONFLICT', `MAC ${m} is already used by another NIC`, { field: 'mac', mac: m });
}

export async function releaseMac(store: InventoryStore, mac: string, owner?: string): Promise<void> {
  await store.release(MAC_NAMESPACE, mac.toLowerCase(), owner);
}

/** Give back every MAC `owner` holds (a rollback that never learnt which one; scans all MACs). */
export async function releaseMacsOf(store: InventoryStore, owner: string): Promise<void> {
  for (const c of await store.claims(MAC_NAMESPACE)) if (c.owner === owner) await store.release(MAC_NAMESPACE, c.key, owner);
}
