/// <reference types="mocha" />
// (tsconfig.json lists "types": ["node", "mocha"]; the reference above keeps this file
// type-checking when it is compiled on its own or under another tsconfig)
// Cleanup: undo everything a test created, last-in first-out, even when the test failed.
//   const cleanup = useCleanup();          // inside describe(): runs in an after() hook
//   cleanup.add(() => deleteNetns(ns), `netns ${ns}`);
// run() never throws: a failing step is logged and the others still run.

type Step = { fn: () => unknown; label: string };

export class Cleanup {
  private steps: Step[] = [];

  /** Register an undo step; returns the same function for convenience. */
  add<F extends () => unknown>(fn: F, label = fn.name || 'cleanup step'): F {
    this.steps.push({ fn, label });
    return fn;
  }

  get size(): number {
    return this.steps.length;
  }

  /** Run all steps LIFO; never throws. The list is emptied, so the Cleanup can be reused. */
  async run(): Promise<void> {
    while (this.steps.length > 0) {
      const s = this.steps.pop()!;
      try {
        await s.fn();
      } catch (e) {
        process.stderr.write(`cleanup: ${s.label} failed: ${(e as Error)?.message ?? String(e)}\n`);
      }
    }
  }
}

/**
 * A Cleanup bound to mocha hooks of the current describe(): `after` (default) or `afterEach`
 * (scope 'each'). Mocha runs these hooks even when a test or a before() hook failed.
 */
export function useCleanup(scope: 'all' | 'each' = 'all'): Cleanup {
  const c = new Cleanup();
  const hook = scope === 'each' ? afterEach : after;
  hook('cleanup', async function () {
    this.timeout(120_000);
    await c.run();
  });
  return c;
}

/** Process-wide fallback for helpers called without a Cleanup; run by a root after() hook. */
export const globalCleanup = new Cleanup();
if (typeof before === 'function') {
  before('remove leftovers of dead test runs', async function () {
    this.timeout(120_000);
    const { sweepDeadRuns } = await import('./sweep.js');
    await sweepDeadRuns();
  });
}
if (typeof after === 'function') {
  after('global harness cleanup', async function () {
    this.timeout(120_000);
    await globalCleanup.run();
    // every test file is done: what still carries this run's id was missed by its cleanup
    const { currentRunId } = await import('./tmp.js');
    const id = currentRunId();
    // once per process, though the loader may have instantiated this module twice
    const done = Symbol.for('tstack.test.ownRunSwept');
    const g = globalThis as { [done]?: boolean };
    if (id !== undefined && !g[done]) {
      g[done] = true;
      const { sweepOwnRun } = await import('./sweep.js');
      await sweepOwnRun(id);
    }
  });
}
