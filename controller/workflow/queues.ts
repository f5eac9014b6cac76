// In-process serialisation: one operation at a time per resource (VM, volume, host…), and a
// bounded number of concurrent operations per host. Instead of locks held across awaits by
// hand, callers wrap the operation: queues.run([vmUuid, volumeUuid], () => attach(...)).

/**
 * FIFO per key; an operation may need several keys (attach volume: the VM and the volume).
 * Tickets for all keys of one call are taken synchronously at once, so any two operations
 * sharing keys are ordered the same way on every key: no deadlock. Not reentrant: an
 * operation must not run() again on a key it holds.
 */
export class ResourceQueues {
  private tails = new Map<string, Promise<void>>();

  async run<T>(keys: string | readonly string[], fn: () => Promise<T>): Promise<T> {
    const ks = [...new Set(typeof keys === 'string' ? [keys] : keys)];
    const waits: Array<Promise<void>> = [];
    const releases: Array<() => void> = [];
    for (const k of ks) {
      const prev = this.tails.get(k) ?? Promise.resolve();
      let release!: () => void;
      const mine = new Promise<void>((r) => (release = r));
      const tail = prev.then(() => mine);
      this.tails.set(k, tail);
      waits.push(prev);
      releases.push(() => {
        release();
        if (this.tails.get(k) === tail) this.tails.delete(k);
      });
    }
    try {
      await Promise.all(waits);
      return await fn();
    } finally {
      for (const r of releases) r();
    }
  }

  /** Keys with an operation running or queued. */
  get busyKeys(): string[] {
    return [...this.tails.keys()];
  }
}

/** At most `limit` concurrent operations per key (per host), the rest wait in FIFO order. */
export class KeyedLimiter {
  private slots = new Map<string, { active: number; waiting: Array<() => void> }>();

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`KeyedLimiter: limit must be a positive integer, got ${limit}`);
  }

  async run<T>(key: string | undefined, fn: () => Promise<T>): Promise<T> {
    if (key === undefined) return fn();
    let s = this.slots.get(key);
    if (!s) {
      s = { active: 0, waiting: [] };
      this.slots.set(key, s);
    }
    const slot = s;
    if (slot.active >= this.limit) await new Promise<void>((r) => slot.waiting.push(r));
    else slot.active++;
    try {
      return await fn();
    } finally {
      const next = slot.waiting.shift();
      if (next) next();
      else if (--slot.active === 0) this.slots.delete(key);
    }
  }

  active(key: string): number {
    return this.slots.get(key)?.active ?? 0;
  }
}
