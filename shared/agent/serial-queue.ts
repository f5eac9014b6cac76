// Per-key serial queues: one operation at a time per VM / volume / network, in arrival order,
// without locks. Keys with nothing queued are forgotten.
export class SerialQueues {
  private tails = new Map<string, Promise<unknown>>();

  run<T>(key: string | undefined, fn: () => Promise<T>): Promise<T> {
    if (key === undefined) return fn();
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  get size(): number {
    return this.tails.size;
  }
}
