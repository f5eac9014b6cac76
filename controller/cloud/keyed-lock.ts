// One change at a time per key, process-wide: the VPC, load-balancer and security-group handlers
// serialise read-check-write sequences on it. Keys are namespaced ("vip:<uuid>", a group's uuid),
// and one map serves every module, so that a port forward and a listener on the same VIP are
// checked against each other, never side by side.
const locks = new Map<string, Promise<unknown>>();

export async function locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  locks.set(key, tail);
  try {
    return await run;
  } finally {
    if (locks.get(key) === tail) locks.delete(key);
  }
}
