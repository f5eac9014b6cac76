// Capacity reservations kept as store claims, so they are atomic on both backends, survive a
// controller restart and are released by the flow that took them (rollback) or by the
// resource's deletion:
//   namespace  '<what>-capacity:<resourceUuid>'   e.g. host-capacity:<hostUuid>
//   key        the consumer (VM uuid, volume uuid)
//   owner      JSON of the amounts {"cpu":2,"memory":536870912}
// Reserving is optimistic: claim, re-read the total, and if a concurrent reservation (another
// process) pushed it over the limit, give the claim back and report a lost race; callers retry.
// Every claim and release of these namespaces goes through this module (its view follows them).
import type { ClaimWrite, InventoryStore } from '../store/types.js';
import { claimRefused } from '../store/claim-conflict.js';
import { ResourceQueues } from '../workflow/queues.js';

export type Amounts = Record<string, number>;

export const capacityNamespace = (what: string, uuid: string): string => `${what}-capacity:${uuid}`;

// What this process knows of each namespace (issue 19: ranking 1,000 hosts read 1,000
// namespaces per VM, and a local primary storage's namespace holds every volume). The view
// ranks candidates and answers the fit check; it follows this process's reservations and
// releases, and is re-read after 30 s. The claim is still the store's; after it the namespace
// is re-read to catch a concurrent reservation of another connection — except a big namespace
// on SQLite (one controller per file, its allocator queue already serialises the decisions).
interface Ledger {
  total: Amounts;
  consumers: Map<string, Amounts>;
  loadedAt: number;
  /** Bumped by every change of this process: a read that overlapped one is not kept. */
  gen: number;
}

export const LEDGER_MAX_AGE_MS = 30_000;
/** Above this many consumers, a SQLite namespace is not re-read after a claim. */
const POST_CHECK_MAX = 256;
const ledgers = new WeakMap<InventoryStore, Map<string, Ledger>>();

/**
 * Called with a namespace whenever this process's view of it changes (a change of its own, a
 * re-read, a view dropped): the host ranking (host-snapshot.ts) updates only those hosts.
 */
type Watcher = (ns: string) => void;
const watchers = new WeakMap<InventoryStore, Watcher[]>();

export function watchLedgers(store: InventoryStore, w: Watcher): void {
  const ws = watchers.get(store);
  if (ws) ws.push(w);
  else watchers.set(store, [w]);
}

function changed(store: InventoryStore, ns: string): void {
  for (const w of watchers.get(store) ?? []) w(ns);
}

function ledgersOf(store: InventoryStore): Map<string, Ledger> {
  let m = ledgers.get(store);
  if (!m) ledgers.set(store, (m = new Map()));
  return m;
}

const parseAmounts = (owner: string): Amounts | undefined => {
  try {
    const a = JSON.parse(owner) as unknown;
    return a && typeof a === 'object' ? (a as Amounts) : undefined;
  } catch {
    return undefined;
  }
};

function add(total: Amounts, a: Amounts, sign: 1 | -1): void {
  for (const [k, v] of Object.entries(a)) if (typeof v === 'number') total[k] = (total[k] ?? 0) + sign * v;
}

const view = (l: Ledger): { total: Amounts; consumers: string[] } => ({ total: { ...l.total }, consumers: [...l.consumers.keys()] });

/** Sum of all reservations in a namespace (and the consumers), read from the store. */
export async function reserved(store: InventoryStore, ns: string): Promise<{ total: Amounts; consumers: string[] }> {
  const m = ledgersOf(store);
  const gen = m.get(ns)?.gen ?? 0;
  const l: Ledger = { total: {}, consumers: new Map(), loadedAt: Date.now(), gen };
  for (const c of await store.claims(ns)) {
    const a = parseAmounts(c.owner) ?? {};
    l.consumers.set(c.key, a);
    add(l.total, a, 1);
  }
  if ((m.get(ns)?.gen ?? 0) === gen) m.set(ns, l);
  else m.delete(ns);
  changed(store, ns);
  return view(l);
}

/** Like reserved(), from this process's view when it is recent (for ranking candidates). */
export async function knownReserved(store: InventoryStore, ns: string): Promise<{ total: Amounts; consumers: string[] }> {
  const l = ledgersOf(store).get(ns);
  if (l && Date.now() - l.loadedAt <= LEDGER_MAX_AGE_MS) return view(l);
  return reserved(store, ns);
}

/**
 * This process's view of a namespace without copying it (ranking reads hundreds per decision,
 * and a local primary storage's namespace holds every volume): the totals (read-only, live),
 * whether a consumer holds a reservation there, and how many do (now).
 */
export async function knownUsage(store: InventoryStore, ns: string): Promise<{ total: Readonly<Amounts>; holds: (consumer: string) => boolean; count: number }> {
  let l = ledgersOf(store).get(ns);
  if (!l || Date.now() - l.loadedAt > LEDGER_MAX_AGE_MS) {
    await reserved(store, ns);
    l = ledgersOf(store).get(ns);
    // changed while it was read: the next decision reads it again
    if (!l) return knownReserved(store, ns).then(usageOf);
  }
  const led = l;
  return { total: led.total, holds: (c: string) => led.consumers.has(c), count: led.consumers.size };
}

const usageOf = (v: { total: Amounts; consumers: string[] }): { total: Readonly<Amounts>; holds: (consumer: string) => boolean; count: number } => ({
  total: v.total,
  holds: (c: string) => v.consumers.includes(c),
  count: v.consumers.length,
});

/**
 * This process's recent view of a namespace without a store read, or undefined (then
 * knownUsage reads it): ranking 1,000 hosts per VM awaited 1,000 promises for views in memory.
 */
export function cachedUsage(store: InventoryStore, ns: string, now = Date.now()): { total: Readonly<Amounts>; consumers: ReadonlyMap<string, Amounts>; loadedAt: number } | undefined {
  const l = ledgersOf(store).get(ns);
  return l && now - l.loadedAt <= LEDGER_MAX_AGE_MS ? l : undefined;
}

function noteHeld(store: InventoryStore, ns: string, consumer: string, amounts: Amounts | undefined): void {
  changed(store, ns);
  const l = ledgersOf(store).get(ns);
  if (!l) return;
  const had = l.consumers.get(consumer);
  if (had) add(l.total, had, -1);
  if (amounts) {
    l.consumers.set(consumer, amounts);
    add(l.total, amounts, 1);
  } else l.consumers.delete(consumer);
  l.gen++;
}

export type ReserveResult = 'reserved' | 'full' | 'race';

/** How a reservation's claim is written: true when granted (store.claim by default). */
export type Claimer = (claim: ClaimWrite) => Promise<boolean>;

/**
 * A claimer writing the claim with other writes (a flow's journal save, a record: one commit,
 * issue 19) through `commit`, a store batch: refused for this claim → false; any other error
 * is thrown (nothing of the batch was written).
 */
export function batchClaimer(commit: (claim: ClaimWrite) => Promise<unknown>): Claimer {
  return async (w) => {
    try {
      await commit(w);
      return true;
    } catch (e) {
      const c = claimRefused(e);
      if (c?.namespace === w.namespace && c.key === w.key) return false;
      throw e;
    }
  };
}

/**
 * Reserve `amounts` for `consumer` if `fits(totalAfter)` holds. Idempotent for the same
 * consumer and amounts (a resumed flow may reserve again). `claim`: how the claim is written.
 */
export async function reserve(store: InventoryStore, ns: string, consumer: string, amounts: Amounts, fits: (totalAfter: Amounts) => boolean, claim?: Claimer): Promise<ReserveResult> {
  const owner = JSON.stringify(amounts);
  const fitsWith = (total: Readonly<Amounts>): boolean => {
    const after = { ...total };
    add(after, amounts, 1);
    return fits(after);
  };
  // the view itself, not a copy of its consumers (10,000 volumes on one local primary storage)
  let before = await knownUsage(store, ns);
  // the view may miss another connection's release: 'full' only from a fresh read
  if (!before.holds(consumer) && !fitsWith(before.total)) before = usageOf(await reserved(store, ns));
  const mine = before.holds(consumer);
  const count = before.count;
  if (!mine && !fitsWith(before.total)) return 'full';
  // refused: the consumer holds other amounts here
  const granted = claim ? await claim({ op: 'claim', namespace: ns, key: consumer, owner }) : await store.claim(ns, consumer, owner);
  if (!granted) return 'race';
  if (mine) return 'reserved';
  noteHeld(store, ns, consumer, amounts);
  if (store.backend === 'sqlite' && count > POST_CHECK_MAX) return 'reserved';
  const now = await reserved(store, ns);
  if (!fits(now.total)) {
    await store.release(ns, consumer, owner);
    noteHeld(store, ns, consumer, undefined);
    return 'race';
  }
  return 'reserved';
}

export async function unreserve(store: InventoryStore, ns: string, consumer: string): Promise<void> {
  await store.release(ns, consumer);
  noteHeld(store, ns, consumer, undefined);
}

/** Record a claim made without a fit check (holdHost): the view counts it. */
export async function hold(store: InventoryStore, ns: string, consumer: string, amounts: Amounts): Promise<boolean> {
  const ok = await store.claim(ns, consumer, JSON.stringify(amounts));
  if (ok) noteHeld(store, ns, consumer, amounts);
  return ok;
}

/** In-process serialisation of allocators (one decision at a time per allocator kind). */
export const allocatorQueues = new ResourceQueues();

export const jitter = (attempt: number): Promise<void> => new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
