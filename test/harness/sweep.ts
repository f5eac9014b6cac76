// Leftovers of test runs that died without cleaning up (SIGKILL, a `timeout` wrapper, a crash):
// every process that calls runId() registers "<pid> <start time>" in /tmp/tstack-runs/<runId>.
// sweepDeadRuns() removes, for each registered run whose process is gone, the libvirt domains,
// network namespaces, links, processes and /tmp dirs named with that run's prefix (a domain also
// when its disks or serial log lie in the run's /tmp dirs: VM domains are named tstack-<uuid>).
// Runs that are alive (or unregistered) are never touched. sweepOwnRun() is the same check on the
// process's own run at its end.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execOk, execOut } from '../../shared/exec.js';

export const RUNS_DIR = '/tmp/tstack-runs';

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined;
    return fields[19]; // field 22 overall: start time in clock ticks since boot
  } catch {
    return undefined;
  }
}

/** Record this process as the owner of run id `id`. */
export function registerRun(id: string): void {
  try {
    mkdirSync(RUNS_DIR, { recursive: true, mode: 0o755 });
    writeFileSync(join(RUNS_DIR, id), `${process.pid} ${startTimeOf(process.pid) ?? ''}\n`);
  } catch {
    /* best effort */
  }
}

/** Run ids registered by processes that no longer run. */
export function deadRuns(): string[] {
  let ids: string[];
  try {
    ids = readdirSync(RUNS_DIR);
  } catch {
    return [];
  }
  return ids.filter((id) => {
    if (!/^[a-z][a-z0-9]{1,7}$/.test(id)) return false;
    try {
      const [pid, start] = readFileSync(join(RUNS_DIR, id), 'utf8').trim().split(' ');
      const now = startTimeOf(Number(pid));
      return now === undefined || (start !== undefined && start !== '' && now !== start);
    } catch {
      return false;
    }
  });
}

/** Remove everything named after dead runs. Never throws; returns what it removed. */
export async function sweepDeadRuns(): Promise<string[]> {
  const dead = deadRuns();
  if (dead.length === 0) return [];
  const removed = await sweepRuns(dead, { tmpDirs: true });
  for (const id of dead) rmSync(join(RUNS_DIR, id), { force: true });
  if (removed.length) process.stderr.write(`harness: removed leftovers of dead test runs ${dead.join(', ')}: ${removed.join(', ')}\n`);
  return removed;
}

/**
 * The teardown's check on this process's own run (a root after() hook, when every test file is
 * done): whatever still carries the run id was missed by a test's cleanup. It is removed and
 * named on stderr. The /tmp dirs are left to tmp.ts (removed at exit).
 */
export async function sweepOwnRun(id: string): Promise<string[]> {
  const removed = await sweepRuns([id], { tmpDirs: false });
  if (removed.length) process.stderr.write(`harness: leftovers of this run ${id} that its tests' cleanup missed (removed now): ${removed.join(', ')}\n`);
  return removed;
}

/** Is this libvirt domain one of the runs'? Its name starts with a run id, or it uses a run's /tmp files (disks, serial log). */
async function domainOfRuns(name: string, ids: string[], q: { timeoutMs: number }): Promise<boolean> {
  if (ids.some((id) => name.startsWith(id))) return true;
  if (!name.startsWith('tstack-')) return false;
  const xml = await execOut('virsh', ['-c', 'qemu:///system', 'dumpxml', '--inactive', name], q).catch(() => '');
  return ids.some((id) => xml.includes(`/tmp/${id}-`));
}

async function sweepRuns(ids: string[], o: { tmpDirs: boolean }): Promise<string[]> {
  const removed: string[] = [];
  const owned = (name: string): boolean => ids.some((id) => name.startsWith(id));
  const q = { timeoutMs: 30_000 };
  // processes started by the run that outlived it (redis-server, agents, dnsmasq): they name
  // the run's /tmp dirs on their command line
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (Number(p) !== process.pid && ids.some((id) => cmd.includes(`/tmp/${id}-`))) {
        process.kill(Number(p), 'SIGKILL');
        removed.push(`process ${p}`);
      }
    } catch {
      /* gone or not ours to read */
    }
  }
  try {
    const doms = (await execOut('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], q)).split('\n').map((s) => s.trim());
    for (const d of doms.filter((n) => n)) {
      if (!(await domainOfRuns(d, ids, q))) continue;
      await execOk('virsh', ['-c', 'qemu:///system', 'destroy', d], q);
      await execOk('virsh', ['-c', 'qemu:///system', 'undefine', '--snapshots-metadata', '--checkpoints-metadata', d], q);
      removed.push(`domain ${d}`);
    }
  } catch {
    /* libvirt not there */
  }
  try {
    const nss = (await execOut('ip', ['netns', 'list'], q)).split('\n').map((l) => l.split(' ')[0] ?? '');
    for (const ns of nss.filter((n) => n && owned(n))) {
      const pids = (await execOut('ip', ['netns', 'pids', ns], q).catch(() => '')).split('\n').map(Number).filter((n) => n > 1);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (await execOk('ip', ['netns', 'delete', ns], q)) removed.push(`netns ${ns}`);
    }
    const links = (await execOut('ip', ['-o', 'link', 'show'], q)).split('\n').map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '');
    for (const l of links.filter((n) => n && owned(n))) {
      if (await execOk('ip', ['link', 'del', l], q)) removed.push(`link ${l}`);
    }
  } catch {
    /* no iproute2 */
  }
  if (o.tmpDirs) {
    for (const d of readdirSync('/tmp').filter((n) => ids.some((id) => n.startsWith(`${id}-`)))) {
      rmSync(join('/tmp', d), { recursive: true, force: true });
      removed.push(`/tmp/${d}`);
    }
  }
  return removed;
}
