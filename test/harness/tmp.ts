// Run prefix and temporary directories for tests.
import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { globalCleanup, type Cleanup } from './cleanup.js';
import { registerRun } from './sweep.js';

// kept on globalThis: the loader may instantiate this module twice (a static import of a test
// and a dynamic import of the harness), and both must see one run id
const RUN_ID = Symbol.for('tstack.test.runId');
const g = globalThis as { [RUN_ID]?: string };

/**
 * Short run prefix, stable for this process ('t' + 5 hex chars, or $TSTACK_RUN_ID). Everything a
 * test creates (domains, netns, bridges, files) starts with it, so leftovers are attributable.
 */
export function runId(): string {
  if (g[RUN_ID] === undefined) {
    g[RUN_ID] = process.env.TSTACK_RUN_ID && /^[a-z][a-z0-9]{1,7}$/.test(process.env.TSTACK_RUN_ID) ? process.env.TSTACK_RUN_ID : 't' + randomBytes(3).toString('hex').slice(0, 5);
    registerRun(g[RUN_ID]);
  }
  return g[RUN_ID];
}

/** The run id if runId() was called in this process (without making one). */
export function currentRunId(): string | undefined {
  return g[RUN_ID];
}

const made = new Set<string>();
process.once('exit', () => {
  for (const d of made) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
});

/**
 * A fresh directory /tmp/<runId>-<prefix>-XXXXXX, mode 0755 (libvirt-qemu must be able to read
 * disks in it). Removed by `cleanup` (or the process-wide cleanup), and at process exit at the latest.
 */
export async function tmpDir(prefix: string, cleanup: Cleanup = globalCleanup): Promise<string> {
  const safe = prefix.replace(/[^A-Za-z0-9_.-]/g, '_');
  const dir = mkdtempSync(join('/tmp', `${runId()}-${safe}-`));
  chmodSync(dir, 0o755);
  made.add(dir);
  cleanup.add(() => {
    rmSync(dir, { recursive: true, force: true });
    made.delete(dir);
  }, `rm -r ${dir}`);
  return dir;
}
