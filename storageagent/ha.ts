// VM HA on the storage agent (protocol: shared/protocol/ha.ts): this host's heartbeat on every
// shared primary storage, and a peer's view of another host's heartbeat and disk locks.
// The heartbeat lives in the storage agent, not kvmagent: a kvmagent that died alone (its VMs
// still running) leaves the heartbeat beating, so the controller does not restart those VMs.
// On NFS reached through libnfs (no kernel client: nothing is mounted) the heartbeat file is
// written and read the way the driver reaches volumes: nfs-cp to a temp name, an NFS RENAME
// over the heartbeat (atomic on the server), nfs-cat to read it.
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { exec, execOut } from '../shared/exec.js';
import { logger } from '../shared/log.js';
import { TStackError } from '../shared/errors.js';
import * as H from '../shared/protocol/ha.js';
import type { PrimaryStorageSpec } from '../shared/protocol/storage.js';
import type { AgentContext } from './context.js';
import { checkRoot, checkUuid } from './paths.js';
import { libnfsOf, nfsAccess } from './primary/nfs.js';

const log = logger('ha');
const DIR = '.tstack-ha';

/** One host's heartbeat file on one storage. */
interface BeatFile {
  /** where it is (a path, or an nfs:// URL) */
  name: string;
  write(body: string, writer: string): Promise<void>;
  /** its content; undefined when there is none */
  read(): Promise<string | undefined>;
  close?(): void;
}

/** The directory of heartbeat files on a mounted shared primary storage. */
async function haDir(ps: PrimaryStorageSpec): Promise<string> {
  if (ps.type === 'sharedmountpoint') return join(checkRoot('ps.path', ps.path), DIR);
  if (ps.type === 'nfs') {
    const root = checkRoot('ps.mountPath', ps.mountPath);
    // never beat into the empty mount point directory of an export that is not mounted
    const [a, b] = await Promise.all([stat(root), stat(dirname(root))]);
    if (a.dev === b.dev) throw new TStackError('STORAGE_ERROR', `${root} is not mounted`);
    return join(root, DIR);
  }
  throw new TStackError('INVALID_ARGUMENT', `ps ${ps.uuid}: a ${ps.type} primary storage has no heartbeat files (shared mount point or NFS only)`, { field: 'ps' });
}

/** `create`: make the directory (the writer); a reader only looks. */
async function beatFile(ps: PrimaryStorageSpec, hostUuid: string, ctx: AgentContext, create: boolean): Promise<BeatFile> {
  checkUuid('ps.uuid', ps.uuid);
  const name = `${checkUuid('hostUuid', hostUuid)}.json`;
  if (ps.type === 'nfs' && (await nfsAccess(ps)) === 'libnfs') {
    const fs = libnfsOf(ps, ctx);
    const rel = `${DIR}/${name}`;
    if (create) await fs.mkdirp(DIR).catch((e: unknown) => (fs.close(), Promise.reject(e)));
    return {
      name: fs.url(rel),
      async write(body, writer) {
        const local = await ctx.tmpFile(`ha-${writer}.json`);
        try {
          await writeFile(local, body);
          await exec('nfs-cp', [local, fs.url(`${rel}.${writer}.tmp`)], { timeoutMs: 30_000, errorCode: 'STORAGE_ERROR' });
          await fs.rename(`${rel}.${writer}.tmp`, rel);
        } catch (e) {
          fs.close(); // a broken connection: the next beat connects again
          throw e;
        } finally {
          await rm(local, { force: true });
        }
      },
      async read() {
        try {
          if (!(await fs.exists(rel))) return undefined;
          return await execOut('nfs-cat', [fs.url(rel)], { timeoutMs: 30_000, errorCode: 'STORAGE_ERROR' });
        } finally {
          fs.close();
        }
      },
      close: () => fs.close(),
    };
  }
  const dir = await haDir(ps);
  if (create) await mkdir(dir, { recursive: true });
  const f = join(dir, name);
  return {
    name: f,
    async write(body, writer) {
      const tmp = `${f}.${writer}.tmp`;
      await writeFile(tmp, body);
      await rename(tmp, f);
    },
    read: () =>
      readFile(f, 'utf8').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      }),
  };
}

export function registerHa(ctx: AgentContext): { stop(): void } {
  const writer = randomBytes(8).toString('hex');
  let seq = 0;
  let cfg: { hostUuid: string; files: BeatFile[]; intervalMs: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let writing = false;

  const beat = async (): Promise<void> => {
    // a hung NFS write must not pile up writes behind it
    if (!cfg || writing) return;
    writing = true;
    try {
      seq += 1;
      const body = JSON.stringify({ hostUuid: cfg.hostUuid, writer, seq, at: new Date().toISOString() });
      await Promise.all(
        cfg.files.map(async (f) => {
          try {
            await f.write(body, writer);
          } catch (e) {
            log.warn({ file: f.name, err: (e as Error).message }, 'heartbeat write failed');
          }
        }),
      );
    } finally {
      writing = false;
    }
  };

  ctx.server.handle(H.HeartbeatSet, async (req) => {
    const hostUuid = checkUuid('hostUuid', req.hostUuid);
    const files: BeatFile[] = [];
    const skipped: string[] = [];
    for (const ps of req.ps) {
      try {
        files.push(await beatFile(ps, hostUuid, ctx, true));
      } catch (e) {
        // one storage this host cannot beat on (an NFS export not mounted here) does not stop the others
        if (req.ps.length === 1) throw e;
        skipped.push(`${ps.uuid}: ${(e as Error).message}`.slice(0, 1000));
      }
    }
    const changed = cfg?.intervalMs !== req.intervalMs;
    for (const f of cfg?.files ?? []) f.close?.();
    cfg = { hostUuid, files, intervalMs: req.intervalMs };
    if (changed || !timer) {
      if (timer) clearInterval(timer);
      timer = setInterval(() => void beat(), req.intervalMs);
      timer.unref();
    }
    await beat();
    const names = files.map((f) => f.name);
    return skipped.length ? { files: names, writer, skipped } : { files: names, writer };
  });

  ctx.server.handle(H.HeartbeatCheck, async (req) => {
    const hostUuid = checkUuid('hostUuid', req.hostUuid);
    const beats: H.Beat[] = [];
    for (const ps of req.ps) {
      const b: H.Beat = { psUuid: ps.uuid };
      try {
        const text = await (await beatFile(ps, hostUuid, ctx, false)).read();
        const j = (text === undefined ? {} : JSON.parse(text)) as { writer?: unknown; seq?: unknown; at?: unknown };
        if (typeof j.writer === 'string') b.writer = j.writer.slice(0, 64);
        if (Number.isInteger(j.seq) && Number(j.seq) >= 0) b.seq = Number(j.seq);
        if (typeof j.at === 'string') b.at = j.at.slice(0, 64);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') b.error = (e as Error).message.slice(0, 1000);
      }
      beats.push(b);
    }
    const volumesInUse: string[] = [];
    for (const p of req.volumePaths) if (await lockedByQemu(p)) volumesInUse.push(p);
    return { beats, volumesInUse };
  });

  return {
    stop() {
      if (timer) clearInterval(timer);
      for (const f of cfg?.files ?? []) f.close?.();
      cfg = undefined;
    },
  };
}

/** Does a running QEMU hold its image lock on this file? (qemu-img refuses to open it then.) */
export async function lockedByQemu(path: string): Promise<boolean> {
  try {
    await stat(path);
  } catch {
    return false;
  }
  try {
    await exec('qemu-img', ['info', '--output=json', path], { timeoutMs: 20_000, quiet: true });
    return false;
  } catch (e) {
    // a hung storage answers nothing: unknown counts as held (never start a VM twice)
    if ((e as TStackError).code === 'TIMEOUT') return true;
    const msg = `${(e as Error).message} ${String((e as TStackError).details?.stderr ?? '')}`;
    return /lock/i.test(msg);
  }
}
