// A throwaway single-node Ceph cluster (1 mon, 1 mgr, 1 bluestore OSD on a sparse file, all on
// 127.0.0.1 with free ports, everything under a temp dir) for the Ceph tests. Comes up in
// ~10 s with scripts/ceph/ceph-up.sh; torn down by scripts/ceph/ceph-down.sh, which kills only
// the PIDs it recorded (after checking their command lines) and removes the directory.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../shared/exec.js';
import { globalCleanup, type Cleanup } from './cleanup.js';
import { REPO_ROOT } from './guest.js';
import { freePort } from './ports.js';
import { runId } from './tmp.js';

export interface TestCeph {
  dir: string;
  conf: string;
  pool: string;
  user: string;
  monitors: string[];
  stop(): Promise<void>;
}

export async function cephAvailable(): Promise<string | undefined> {
  for (const b of ['ceph-mon', 'ceph-osd', 'ceph-mgr', 'rbd', 'ceph']) {
    const ok = await exec('which', [b], { timeoutMs: 5_000 }).then(
      () => true,
      () => false,
    );
    if (!ok) return `${b} is not installed (scripts/setup installs it)`;
  }
  return undefined;
}

/** Start a cluster with one pool (default 'tstack'); stopped by `cleanup`. */
export async function startCeph(cleanup: Cleanup = globalCleanup, o: { pool?: string } = {}): Promise<TestCeph> {
  const dir = join('/tmp', `${runId()}-ceph-${Math.random().toString(16).slice(2, 8)}`);
  const pool = o.pool ?? 'tstack';
  const v2 = await freePort();
  const v1 = await freePort();
  const env = { CEPH_PROBE_DIR: dir, MON_V2_PORT: String(v2), MON_V1_PORT: String(v1), POOL: pool, FAST: '1', OSD_SIZE_BYTES: String(10 * 2 ** 30) };
  const stop = async (): Promise<void> => {
    if (existsSync(dir)) await exec(join(REPO_ROOT, 'scripts/ceph/ceph-down.sh'), [], { env: { CEPH_PROBE_DIR: dir }, timeoutMs: 60_000 });
  };
  cleanup.add(stop, `ceph cluster in ${dir}`);
  try {
    await exec(join(REPO_ROOT, 'scripts/ceph/ceph-up.sh'), [], { env, timeoutMs: 180_000 });
  } catch (e) {
    throw new Error(`ceph-up.sh failed: ${(e as Error).message}`, { cause: e });
  }
  return { dir, conf: join(dir, 'ceph.conf'), pool, user: 'admin', monitors: [`127.0.0.1:${v1}`], stop };
}
