// MAC allocator: locally administered-looking KVM addresses 52:54:00:xx:xx:xx, unique across
// the inventory through a store claim (namespace 'mac'), so two NICs never share one even
// when several controllers allocate at once. 2^24 addresses: random picks collide rarely; a
// collision just tries another.
import { randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { ClaimWrite, InventoryStore } from '../store/types.js';

export const MAC_NAMESPACE = 'mac';
const TRIES = 64;

/** A MAC's claim for `owner`, for a caller writing it with other writes (a batch): refused → pick another (macExhausted after MAC_TRIES). */
export const macClaim = (mac: string, owner: string): ClaimWrite => ({ op: 'claim', namespace: MAC_NAMESPACE, key: mac.toLowerCase(), owner });
export const MAC_TRIES = TRIES;
export const macExhausted = (owner: string): TStackError => new TStackError('CAPACITY_EXCEEDED', `could not find a free MAC address after ${TRIES} tries`, { owner });

export function randomKvmMac(): string {
  const b = randomBytes(3);
  return ['52', '54', '00', ...[...b].map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

/** A unique MAC held by `owner` (the NIC uuid). Record it in the flow's data and release it on rollback. */
export async function allocateMac(store: InventoryStore, owner: string, gen: () => string = randomKvmMac): Promise<string> {
  for (let i = 0; i < TRIES; i++) {
    const mac = gen();
    if (await store.claim(MAC_NAMESPACE, mac, owner)) return mac;
  }
  throw macExhausted(owner);
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
