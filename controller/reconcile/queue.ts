// The reconcile queue: level-triggered application of desired state, keyed by area × key
// (e.g. area 'flat', key '<hostUuid>/<l3Uuid>'). Anything that changes what a key should look
// like calls mark(); a worker calls the area's apply(key), which computes the *complete* desired
// state at that moment and sends it whole, so a mark never carries data and marks coalesce.
// A failed apply is retried with exponential backoff; a periodic pass marks every key of every
// area, which repairs drift (a dead daemon, a lost file) and converges after any restart.
//
//   mark ──► queued ──► running ──ok──► idle (lastAppliedAt)
//              ▲           │  └─mark while running──► queued again when it finishes
//              │           └─error──► backoff (base·2^(n-1), ≤ max) ──timer──► queued
import { logger } from '../../shared/log.js';

const log = logger('reconcile');

export interface ReconcileArea {
  /** Unique name, e.g. 'flat' or 'secgroup'. */
  name: string;
  /** Every key that should exist now (the periodic pass applies each of them). */
  keys(): Promise<string[]>;
  /**
   * Make `key` match its desired state, computed fresh by this call. Idempotent; called for one
   * key at a time (never twice concurrently for the same key). A key that no longer exists
   * should clean up and return normally.
   */
  apply(key: string): Promise<void>;
  /**
   * The host a key is applied to, for areas whose keys live on one host (flat: '<host>/<l3>',
   * security groups and flat EIPs: the host). With several controllers (setOwner) only the one
   * tracking that host applies the key on its own; sync() applies anywhere.
   */
  hostOf?(key: string): string | undefined;
  /** The keys on these hosts (a controller that starts tracking them applies them). */
  keysOn?(hosts: ReadonlySet<string>): Promise<string[]>;
}

/** Which hosts this controller tracks (shared inventory: the host tracker's leases). */
export interface ReconcileOwner {
  owns(hostUuid: string): boolean;
}

export interface ReconcileOptions {
  /** Periodic pass interval (default 60 s; 0 = no periodic pass). */
  periodMs?: number;
  /** First retry delay after a failure (default 1 s); doubles per consecutive failure. */
  baseBackoffMs?: number;
  /** Retry delay cap (default 60 s). */
  maxBackoffMs?: number;
  /** Applies running at once over all areas (default 4). */
  concurrency?: number;
}

export interface ReconcileStatus {
  area: string;
  key: string;
  lastError?: string;
  /** Consecutive failed applies (0 after a success). */
  attempts: number;
  lastAppliedAt?: number;
}

interface Entry {
  area: string;
  key: string;
  attempts: number;
  lastError?: string;
  lastAppliedAt?: number;
  queued: boolean;
  running: boolean;
  /** Marked while running: queue again when the run ends. */
  again: boolean;
  retry?: NodeJS.Timeout;
  /** sync() callers waiting for the next apply to start, and for the running one to end. */
  next: Waiter[];
  current: Waiter[];
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

const id = (area: string, key: string): string => `${area}\u0000${key}`;

/** Delay before retry number `attempts` (1 = first failure): base·2^(attempts-1), at most max. */
export const backoffMs = (attempts: number, base: number, max: number): number => Math.min(max, base * 2 ** Math.max(0, attempts - 1));

export class ReconcileQueue {
  private readonly areas = new Map<string, ReconcileArea>();
  private readonly entries = new Map<string, Entry>();
  private readonly ready: Entry[] = [];
  private readonly runs = new Set<Promise<void>>();
  private running = 0;
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private passing: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly periodMs: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly concurrency: number;

  constructor(opts: ReconcileOptions = {}) {
    this.periodMs = opts.periodMs ?? 60_000;
    this.baseBackoffMs = opts.baseBackoffMs ?? 1_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 60_000;
    this.concurrency = Math.max(1, opts.concurrency ?? 4);
  }

  private owner: ReconcileOwner | undefined;

  /**
   * Several controllers on one inventory (issue 19): the keys of host areas are applied by the
   * controller tracking the host, each key by one controller (two applying it both paid for
   * every apply, and each found the agent's DNS base moved by the other, so sent the L3's names
   * whole). Every controller sees every change (the event relay), so the owner marks what it
   * must; marks for other controllers' hosts are dropped. Undefined: every key is this one's.
   */
  setOwner(owner: ReconcileOwner | undefined): void {
    this.owner = owner;
  }

  /** Whether this controller applies the key unasked (a sync() applies it anyway). */
  private mine(area: ReconcileArea, key: string): boolean {
    if (!this.owner || !area.hostOf) return true;
    const h = area.hostOf(key);
    return h === undefined || this.owner.owns(h);
  }

  /** This controller began tracking these hosts: their keys of every host area are applied. */
  async hostsGained(hosts: ReadonlySet<string>): Promise<void> {
    if (hosts.size === 0) return;
    for (const area of this.areas.values()) {
      if (this.stopped) return;
      if (!area.hostOf) continue;
      try {
        const keys = area.keysOn ? await area.keysOn(hosts) : (await area.keys()).filter((k) => hosts.has(area.hostOf!(k) ?? ''));
        for (const k of keys) this.mark(area.name, k);
      } catch (err) {
        // the periodic pass marks them anyway
        log.warn({ area: area.name, hosts: hosts.size, err: (err as Error).message }, 'cannot list the keys of hosts this controller now tracks');
      }
    }
  }

  register(area: ReconcileArea): void {
    if (this.areas.has(area.name)) throw new Error(`reconcile area '${area.name}' is already registered`);
    this.areas.set(area.name, area);
  }

  /**
   * The key's desired state may have changed: apply it soon. Coalesces with a pending apply; a
   * key waiting out a backoff keeps its retry time (the retry applies the latest state anyway).
   * Before start() marks are only remembered.
   */
  mark(area: string, key: string): void {
    if (this.stopped) return;
    const a = this.areas.get(area);
    if (!a) {
      log.warn({ area, key }, 'mark for an unregistered reconcile area ignored');
      return;
    }
    if (!this.mine(a, key)) return;
    this.markOwned(area, key);
  }

  private markOwned(area: string, key: string): void {
    const k = id(area, key);
    let e = this.entries.get(k);
    if (!e) {
      e = { area, key, attempts: 0, queued: false, running: false, again: false, next: [], current: [] };
      this.entries.set(k, e);
    }
    if (e.running) {
      e.again = true;
      return;
    }
    if (e.queued || e.retry) return;
    this.enqueue(e);
  }

  /**
   * Mark the key and wait for an apply that starts after this call; rejects with that apply's
   * error (the key is still retried in the background). For flows that must not go on before
   * the key is applied (a VM must not boot before its DHCP entry exists). A key backing off is
   * applied at once.
   */
  sync(area: string, key: string): Promise<void> {
    if (this.stopped) return Promise.reject(new Error('the reconcile queue is stopped'));
    if (!this.areas.has(area)) return Promise.reject(new Error(`reconcile area '${area}' is not registered`));
    const k = id(area, key);
    let e = this.entries.get(k);
    if (!e) {
      e = { area, key, attempts: 0, queued: false, running: false, again: false, next: [], current: [] };
      this.entries.set(k, e);
    }
    // waiting before the mark: an apply the mark starts right away must already count
    const done = new Promise<void>((resolve, reject) => e.next.push({ resolve, reject }));
    if (e.retry) {
      clearTimeout(e.retry);
      delete e.retry;
    }
    this.markOwned(area, key);
    return done;
  }

  /** Begin applying (marks so far included) and run a first pass, then one every periodMs. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    void this.pass();
    if (this.periodMs > 0) {
      this.timer = setInterval(() => void this.pass(), this.periodMs);
      this.timer.unref();
    }
    this.pump();
  }

  /** No new applies; waits for the running ones to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const e of this.entries.values()) {
      if (e.retry) clearTimeout(e.retry);
      delete e.retry;
    }
    this.ready.length = 0;
    for (const e of this.entries.values()) {
      for (const w of e.next) w.reject(new Error('the reconcile queue stopped'));
      e.next = [];
    }
    await this.passing;
    await Promise.allSettled([...this.runs]);
    this.wakeIdle();
  }

  /**
   * Resolves when no pass, apply or queued apply remains (keys waiting out a backoff don't
   * count). Queued marks wait for start().
   */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  status(): ReconcileStatus[] {
    return [...this.entries.values()].map((e) => {
      const s: ReconcileStatus = { area: e.area, key: e.key, attempts: e.attempts };
      if (e.lastError !== undefined) s.lastError = e.lastError;
      if (e.lastAppliedAt !== undefined) s.lastAppliedAt = e.lastAppliedAt;
      return s;
    });
  }

  /** A periodic pass now (tests; the timer's passes go on as they were). Resolves once every key is marked. */
  passNow(): Promise<void> {
    return this.pass();
  }

  /** Mark every key of every area; forget idle entries whose key no longer exists. */
  private pass(): Promise<void> {
    if (this.passing) return this.passing;
    const run = (async () => {
      for (const area of this.areas.values()) {
        if (this.stopped) return;
        let keys: string[];
        try {
          keys = await area.keys();
        } catch (err) {
          log.error({ area: area.name, err: (err as Error).message }, 'reconcile pass: cannot list keys');
          continue;
        }
        const live = new Set(keys);
        for (const [k, e] of this.entries) {
          if (e.area === area.name && (!live.has(e.key) || !this.mine(area, e.key)) && !e.queued && !e.running && !e.retry) this.entries.delete(k);
        }
        for (const key of keys) this.mark(area.name, key);
      }
    })();
    // the pass itself holds idle() so a test can wait for "pass done and applied"
    this.passing = run.finally(() => {
      this.passing = undefined;
      this.wakeIdle();
    });
    return this.passing;
  }

  private enqueue(e: Entry): void {
    e.queued = true;
    this.ready.push(e);
    this.pump();
  }

  private pump(): void {
    if (!this.started || this.stopped) return;
    while (this.running < this.concurrency && this.ready.length > 0) {
      const e = this.ready.shift()!;
      e.queued = false;
      const p = this.run(e);
      this.runs.add(p);
      void p.finally(() => this.runs.delete(p));
    }
    this.wakeIdle();
  }

  private async run(e: Entry): Promise<void> {
    const area = this.areas.get(e.area);
    if (!area) return;
    // another controller took the host since the mark (a retry, a queued key): it applies it
    if (e.next.length === 0 && !this.mine(area, e.key)) {
      e.attempts = 0;
      delete e.lastError;
      this.wakeIdle();
      return;
    }
    e.running = true;
    this.running++;
    e.current = e.next;
    e.next = [];
    try {
      await area.apply(e.key);
      e.attempts = 0;
      delete e.lastError;
      e.lastAppliedAt = Date.now();
      for (const w of e.current) w.resolve();
    } catch (err) {
      for (const w of e.current) w.reject(err);
      e.attempts++;
      e.lastError = err instanceof Error ? err.message : String(err);
      const delay = backoffMs(e.attempts, this.baseBackoffMs, this.maxBackoffMs);
      log.warn({ area: e.area, key: e.key, attempts: e.attempts, retryInMs: delay, err: e.lastError }, 'reconcile apply failed');
      if (!this.stopped) {
        e.again = false; // the retry applies the latest state
        e.retry = setTimeout(() => {
          delete e.retry;
          if (!this.stopped) this.enqueue(e);
        }, delay);
        e.retry.unref();
      }
    } finally {
      e.current = [];
      e.running = false;
      this.running--;
      if (e.again && !this.stopped) {
        e.again = false;
        this.enqueue(e);
      }
      this.pump();
      this.wakeIdle();
    }
  }

  private isIdle(): boolean {
    return this.ready.length === 0 && this.running === 0 && this.passing === undefined;
  }

  private wakeIdle(): void {
    if (!this.isIdle()) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }
}
