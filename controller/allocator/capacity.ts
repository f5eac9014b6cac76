// Capacity reservations kept as store claims, so they are atomic on both backends, survive a
// controller restart and are released by the flow that took them (rollback) or by the
// resource's deletion:
//   namespace  '<what>-capacity:<resourceUuid>'   e.g. host-capacity:<hostUuid>
//   key        the consumer (VM uuid, volume uuid)
//   owner      JSON of the amounts {"cpu":2,"memory":536870912}
// Reserving is optimistic: claim, re-read the total, and if a concurrent reservation (another
// process) pushed it over the limit, give the claim back and report a lost race; callers retry.
import type { InventoryStore } from '../store/types.js';
import { ResourceQueues } from '../workflow/queues.js';

export type Amounts = Record<string, number>;

export const capacityNamespace = (what: string, uuid: string): string => `${what}-capacity:${uuid}`;

/** Sum of all reservations in a namespace (and the consumers). */
export async function reserved(store: InventoryStore, ns: string): Promise<{ total: Amounts; consumers: string[] }> {
  const total: Amounts = {};
  const consumers: string[] = [];
  for (const c of await store.claims(ns)) {
    consumers.push(c.key);
    let a: Amounts;
    try {
      a = JSON.parse(c.owner) as Amounts;
    } catch {
      continue;
    }
    for (const [k, v] of Object.entries(a)) if (typeof v === 'number') total[k] = (total[k] ?? 0) + v;
  }
  return { total, consumers };
}

export type ReserveResult = 'reserved' | 'full' | 'race';

/**
 * Reserve `amounts` for `consumer` if `fits(totalAfter)` holds. Idempotent for the same
 * consumer and amounts (a resumed flow may reserve again).
 */
export async function reserve(store: InventoryStore, ns: string, consumer: string, amounts: Amounts, fits: (totalAfter: Amounts) => boolean): Promise<ReserveResult> {
  const owner = JSON.stringify(amounts);
  const before = await reserved(store, ns);
  const mine = before.consumers.includes(consumer);
  if (!mine) {
    const after = { ...before.total };
    for (const [k, v] of Object.entries(amounts)) after[k] = (after[k] ?? 0) + v;
    if (!fits(after)) return 'full';
  }
  if (!(await store.claim(ns, consumer, owner))) return 'race'; // same consumer, other amounts
  if (mine) return 'reserved';
  const now = await reserved(store, ns);
  if (!fits(now.total)) {
    await store.release(ns, consumer, owner);
    return 'race';
  }
  return 'reserved';
}

export async function unreserve(store: InventoryStore, ns: string, consumer: string): Promise<void> {
  await store.release(ns, consumer);
}

/** In-process serialisation of allocators (one decision at a time per allocator kind). */
export const allocatorQueues = new ResourceQueues();

export const jitter = (attempt: number): Promise<void> => new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
