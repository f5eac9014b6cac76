// The allocator's ranking of the hosts kept between decisions (issue 19: every VM rebuilt and
// ranked 1,000 candidates, ~2.3 ms of controller CPU per create at 1,000 hosts).
//
// Per store, hint (cluster/zone) and policy, an index holds each host's static part (host,
// cluster, zone, attachments: read from the store again after 3 s, as before) and its usage
// from this process's capacity view (capacity.ts). Only the hosts whose view changed (a
// reservation, a release, a re-read: capacity.ts tells) or expired (30 s) are updated before a
// decision, and the hosts are kept in the ranking order, so a decision walks the best hosts
// until enough pass the filters instead of filtering and sorting every host.
// What a decision sees is what the per-decision full computation saw: the same candidates, the
// same usage, the same order (test/unit/controller/host-snapshot.test.ts compares the two).
import type { InventoryStore } from '../store/types.js';
import { LEDGER_MAX_AGE_MS, cachedUsage, capacityNamespace, knownReserved, watchLedgers, type Amounts } from './capacity.js';
import { freeOf, rankHosts, rejectReason, type HostCandidate, type HostFit, type HostPolicy, type HostRequest } from './host-rank.js';

interface Entry {
  /** The static part, usage 0. */
  readonly base: HostCandidate;
  readonly ns: string;
  /** Position by (createDate, uuid): the 'first-fit' order and the last 'least-used' key. */
  age: number;
  /** With the usage; undefined until it is known. */
  c?: HostCandidate;
  freeCpu: number;
  freeMemory: number;
  /** Free memory share, the first 'least-used' key. */
  share: number;
  consumers: string[];
  loadedAt: number;
}

const byAge = (a: HostCandidate, b: HostCandidate): number => String(a.host.createDate).localeCompare(String(b.host.createDate)) || a.host.uuid.localeCompare(b.host.uuid);
// rankHosts' least-used comparison on precomputed keys (age stands for byAge)
const leastUsed = (a: Entry, b: Entry): number => b.share - a.share || b.freeCpu - a.freeCpu || a.age - b.age;

/** Above this many changed hosts a decision sorts them all again instead of moving each. */
const RESORT_ABOVE = 32;

export class HostIndex {
  private readonly entries: Entry[];
  private readonly byNs = new Map<string, Entry>();
  private readonly dirty = new Set<string>();
  private readonly ageOrder: Entry[];
  /** Hosts with a known usage, least-used first. */
  private sorted: Entry[] = [];
  /** Consumer → how many of these hosts it holds a reservation on. */
  private readonly holders = new Map<string, number>();
  private minLoadedAt = -Infinity;

  constructor(
    private readonly store: InventoryStore,
    cands: HostCandidate[],
    private readonly p: HostPolicy,
  ) {
    this.entries = cands.map((base) => ({ base, ns: capacityNamespace('host', base.host.uuid), age: 0, freeCpu: 0, freeMemory: 0, share: 0, consumers: [], loadedAt: -Infinity }));
    this.ageOrder = [...this.entries].sort((a, b) => byAge(a.base, b.base));
    this.ageOrder.forEach((e, i) => (e.age = i));
    for (const e of this.entries) {
      this.byNs.set(e.ns, e);
      this.dirty.add(e.ns);
    }
  }

  /** capacity.ts: this namespace's view changed. */
  touch(ns: string): void {
    if (this.byNs.has(ns)) this.dirty.add(ns);
  }

  /** Bring the changed and expired hosts' usage up to date (store reads only for views not in memory). */
  async refresh(now = Date.now()): Promise<void> {
    if (now - this.minLoadedAt > LEDGER_MAX_AGE_MS) {
      let min = Infinity;
      for (const e of this.entries) {
        if (now - e.loadedAt > LEDGER_MAX_AGE_MS) this.dirty.add(e.ns);
        else min = Math.min(min, e.loadedAt);
      }
      this.minLoadedAt = min;
    }
    if (this.dirty.size === 0) return;
    const todo = [...this.dirty];
    this.dirty.clear();
    const changed: Entry[] = [];
    const reads: Array<Promise<void>> = [];
    for (const ns of todo) {
      const e = this.byNs.get(ns)!;
      const u = cachedUsage(this.store, ns, now);
      if (u) {
        this.set(e, u.total, u.consumers.keys(), u.loadedAt);
        changed.push(e);
        continue;
      }
      reads.push(
        knownReserved(this.store, ns).then((v) => {
          const kept = cachedUsage(this.store, ns);
          this.set(e, v.total, v.consumers, kept?.loadedAt ?? now);
          // not kept (it changed while read): read again by the next decision, as before
          if (!kept) this.dirty.add(ns);
          changed.push(e);
        }),
      );
    }
    try {
      await Promise.all(reads);
    } catch (err) {
      for (const ns of todo) this.dirty.add(ns);
      throw err;
    } finally {
      this.reorder(changed);
    }
  }

  private set(e: Entry, total: Readonly<Amounts>, consumers: Iterable<string>, loadedAt: number): void {
    for (const c of e.consumers) {
      const n = this.holders.get(c)! - 1;
      if (n > 0) this.holders.set(c, n);
      else this.holders.delete(c);
    }
    e.consumers = [...consumers];
    for (const c of e.consumers) this.holders.set(c, (this.holders.get(c) ?? 0) + 1);
    const c: HostCandidate = { ...e.base, usedCpu: total.cpu ?? 0, usedMemory: total.memory ?? 0 };
    const f = freeOf(c, this.p);
    e.c = c;
    e.freeCpu = f.freeCpu;
    e.freeMemory = f.freeMemory;
    // as rankHosts' least-used share
    e.share = f.freeMemory / Math.max(1, Number(c.host.totalMemory ?? 1) * this.p.memoryOvercommit);
    e.loadedAt = loadedAt;
    this.minLoadedAt = Math.min(this.minLoadedAt, loadedAt);
  }

  private reorder(changed: Entry[]): void {
    if (changed.length === 0) return;
    if (changed.length > RESORT_ABOVE || this.sorted.length === 0) {
      this.sorted = this.entries.filter((e) => e.c).sort(leastUsed);
      return;
    }
    const moved = new Set(changed);
    this.sorted = this.sorted.filter((e) => !moved.has(e));
    for (const e of moved) {
      let lo = 0;
      let hi = this.sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (leastUsed(this.sorted[mid]!, e) <= 0) lo = mid + 1;
        else hi = mid;
      }
      this.sorted.splice(lo, 0, e);
    }
  }

  /** Whether the consumer holds a reservation on any of these hosts (a resumed flow). */
  holds(consumer: string): boolean {
    return this.holders.has(consumer);
  }

  /**
   * The first `k` of rankHosts(all hosts, req).ranked: the hosts in the strategy's order until
   * k pass the filters ('random' shuffles all that pass, as rankHosts does).
   */
  best(req: HostRequest, k: number, rand: () => number = Math.random): HostFit[] {
    const strategy = req.strategy ?? 'least-used';
    if (strategy === 'random') return rankHosts(this.candidates(), req, this.p, rand).ranked.slice(0, k);
    const out: HostFit[] = [];
    for (const e of strategy === 'first-fit' ? this.ageOrder : this.sorted) {
      if (!e.c || rejectReason(e.c, req, this.p)) continue;
      out.push({ candidate: e.c, freeCpu: e.freeCpu, freeMemory: e.freeMemory });
      if (out.length >= k) break;
    }
    return out;
  }

  /** Every host with its usage, in the store's order. */
  candidates(): HostCandidate[] {
    return this.entries.flatMap((e) => (e.c ? [e.c] : []));
  }
}

/** Indexes per store and key (hint and policy), rebuilt from the store after this long. */
const SNAPSHOT_MAX_AGE_MS = 3_000;
const indexes = new WeakMap<InventoryStore, Map<string, { at: number; index: Promise<HostIndex>; ready?: HostIndex }>>();

function indexesOf(store: InventoryStore): Map<string, { at: number; index: Promise<HostIndex>; ready?: HostIndex }> {
  let m = indexes.get(store);
  if (!m) {
    const made = new Map<string, { at: number; index: Promise<HostIndex>; ready?: HostIndex }>();
    indexes.set(store, (m = made));
    watchLedgers(store, (ns) => {
      for (const s of made.values()) s.ready?.touch(ns);
    });
  }
  return m;
}

/**
 * The index for this request's hint and policy, up to date with this process's capacity view.
 * `statics` reads the hosts narrowed by the hint, without usage (hostCandidates).
 */
export async function hostIndex(store: InventoryStore, req: HostRequest, p: HostPolicy, statics: (wide: HostRequest) => Promise<HostCandidate[]>): Promise<HostIndex> {
  const hint = req.clusterUuid ? `c:${req.clusterUuid}` : req.zoneUuid ? `z:${req.zoneUuid}` : '*';
  const key = `${hint}|${p.cpuOvercommit}|${p.memoryOvercommit}|${p.reservedMemoryPerHost}`;
  const m = indexesOf(store);
  let s = m.get(key);
  if (!s || Date.now() - s.at > SNAPSHOT_MAX_AGE_MS) {
    const wide: HostRequest = { cpuNum: req.cpuNum, memorySize: req.memorySize };
    if (req.clusterUuid) wide.clusterUuid = req.clusterUuid;
    else if (req.zoneUuid) wide.zoneUuid = req.zoneUuid;
    const made: { at: number; index: Promise<HostIndex>; ready?: HostIndex } = {
      at: Date.now(),
      index: statics(wide).then((cs) => (made.ready = new HostIndex(store, cs, p))),
    };
    s = made;
    m.set(key, made);
    made.index.catch(() => {
      if (m.get(key) === made) m.delete(key);
    });
  }
  const index = await s.index;
  await index.refresh();
  return index;
}

/** Forget the indexes of a store: the next decision reads the hosts again (tests; a host's state changed). */
export function forgetHostIndexes(store: InventoryStore): void {
  indexes.get(store)?.clear();
}
