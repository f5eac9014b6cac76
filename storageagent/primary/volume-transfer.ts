// Copying a local-storage volume between hosts (cold migration), storage agent to storage agent:
//   source  ps/volume/export: hash the volume's files (live file, snapshots) and the image cache
//           file it is a linked clone of; serve them for an hour under a random ticket at
//           GET /export/ps-files/<ticket>/<index> (the agent's bearer token, Range for resumes)
//   dest    ps/volume/import: pull every file into a staging directory beside the volume's final
//           place (same depth, so relative backing names resolve), verify each sha256 and the
//           chain, then rename the directory in place. The image cache is pulled only when this
//           host lacks it. A failure leaves nothing but the staging directory, which is removed.
// The copy keeps the file layout byte for byte: same relative paths under the same storage root,
// same relative backing names, so the controller only repoints the volume record at the host.
import { createReadStream } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, relative, resolve } from 'node:path';
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';
import type { TaskContext } from '../../shared/agent/server.js';
import type { RequestOf } from '../../shared/protocol/command.js';
import * as S from '../../shared/protocol/storage.js';
import { download } from '../download/index.js';
import { parseRange, tokenOk } from '../imagestore/index.js';
import { NEXT_TOP_FILE_RE, SNAP_FILE_RE, checkUuid } from '../paths.js';
import * as qimg from '../qemu-img.js';
import type { AgentContext } from '../context.js';
import { LocalFs } from './fs.js';

/** How long an export ticket serves its files (a copy that takes longer restarts with a new one). */
export const TICKET_TTL_MS = 3600_000;

interface Ticket {
  files: Array<{ abs: string; size: number }>;
  expires: number;
}

function fileFs(ps: S.PrimaryStorageSpec): LocalFs {
  checkUuid('ps.uuid', ps.uuid);
  if (ps.type !== 'local' && ps.type !== 'sharedmountpoint') {
    throw new TStackError('INVALID_ARGUMENT', `ps.type: volumes are copied between hosts on local storage only, not ${ps.type}`, { field: 'ps.type' });
  }
  return new LocalFs(ps.path);
}

async function sha256Of(path: string, signal: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** The volume's own files: the live qcow2 and its snapshot layers (not staging or half-done tops). */
async function volumeFiles(fs: LocalFs, volumeUuid: string): Promise<string[]> {
  const dir = fs.layout.volumeDirRel(volumeUuid);
  const live = basename(fs.layout.volumeFileRel(volumeUuid));
  const names = await fs.list(dir);
  if (!names.includes(live)) throw new TStackError('VOLUME_NOT_FOUND', `volume ${volumeUuid} does not exist on primary storage ${fs.layout.root}`);
  return names.filter((n) => n === live || (SNAP_FILE_RE.test(n) && !NEXT_TOP_FILE_RE.test(n))).map((n) => `${dir}/${n}`);
}

/** The image cache file a volume's chain ends in (relative to the root), if any. */
async function cachedBase(fs: LocalFs, files: string[], signal: AbortSignal): Promise<string | undefined> {
  const cacheDir = fs.abs('imagecache');
  for (const rel of files) {
    const i = await qimg.info(fs.abs(rel), { format: 'qcow2', signal });
    if (!i.backingFile) continue;
    const abs = resolve(dirname(fs.abs(rel)), i.backingFile);
    if (!abs.startsWith(`${cacheDir}/`)) continue;
    const r = relative(fs.layout.root, abs);
    if (!/^imagecache\/[0-9a-f-]{36}\/[0-9a-f-]{36}\.(qcow2|raw)$/.test(r)) throw new TStackError('STORAGE_ERROR', `volume file ${rel} is backed by ${r}, which is not an image cache file`);
    return r;
  }
  return undefined;
}

export function registerVolumeTransfer(ctx: AgentContext): void {
  const { server } = ctx;
  const tickets = new Map<string, Ticket>();
  const sweep = (): void => {
    const now = Date.now();
    for (const [k, t] of tickets) if (t.expires < now) tickets.delete(k);
  };
  const volKey = (r: { ps: { uuid: string }; volumeUuid: string }): string => S.volumeQueueKey(r);

  server.handle(
    S.VolumeExport,
    async (req, t) => {
      const fs = fileFs(req.ps);
      const own = await volumeFiles(fs, req.volumeUuid);
      const base = await cachedBase(fs, own, t.signal);
      const rels = [...(base ? [base] : []), ...own];
      const files: S.TransferFile[] = [];
      const served: Ticket['files'] = [];
      for (const rel of rels) {
        const abs = fs.abs(rel);
        const size = (await stat(abs)).size;
        files.push({ rel, size, sha256: await sha256Of(abs, t.signal) });
        served.push({ abs, size });
      }
      const live = await qimg.info(fs.abs(fs.layout.volumeFileRel(req.volumeUuid)), { format: 'qcow2', signal: t.signal });
      sweep();
      const ticket = randomBytes(16).toString('hex');
      tickets.set(ticket, { files: served, expires: Date.now() + TICKET_TTL_MS });
      t.log.info({ volumeUuid: req.volumeUuid, files: files.length, bytes: files.reduce((a, f) => a + f.size, 0) }, 'volume export ready');
      return { ticket, files, size: live.virtualSize };
    },
    { key: volKey },
  );

  server.handle(S.VolumeExportEnd, async (req) => ({ ended: tickets.delete(req.ticket) }));

  server.router.get('/export/ps-files/:ticket/:index', async (kctx: Koa.Context) => {
    tokenOk(kctx, server.opts.token);
    sweep();
    const tk = tickets.get(String(kctx.params.ticket));
    const f = tk?.files[Number(kctx.params.index)];
    if (!tk || !f || !/^\d+$/.test(String(kctx.params.index))) throw new TStackError('NOT_FOUND', 'no such export ticket or file (expired, ended, or never issued)');
    kctx.set('accept-ranges', 'bytes');
    kctx.type = 'application/octet-stream';
    const r = parseRange(kctx.get('range') || undefined, f.size);
    if (r === 'invalid') {
      kctx.status = 416;
      kctx.set('content-range', `bytes */${f.size}`);
      return;
    }
    const start = r?.start ?? 0;
    const end = r?.end ?? f.size - 1;
    if (r) {
      kctx.status = 206;
      kctx.set('content-range', `bytes ${start}-${end}/${f.size}`);
    } else kctx.status = 200;
    kctx.length = f.size === 0 ? 0 : end - start + 1;
    kctx.body = f.size === 0 ? '' : createReadStream(f.abs, { start, end, highWaterMark: 1 << 20 });
  });

  server.handle(S.VolumeImport, async (req, t) => importVolume(req, t), { key: volKey });
}

async function importVolume(req: RequestOf<typeof S.VolumeImport>, t: TaskContext): Promise<S.VolumeInfo> {
  const fs = fileFs(req.ps);
  const vol = checkUuid('volumeUuid', req.volumeUuid);
  const volDir = fs.layout.volumeDirRel(vol);
  const stagingDir = `volumes/.import-${vol}-${randomBytes(4).toString('hex')}`;
  const total = req.from.files.reduce((a, f) => a + f.size, 0);
  let done = 0;
  const emit = (bytes: number): void => t.events.emit(S.VOLUME_TRANSFER_EVENT, { volumeUuid: vol, taskId: t.taskId, bytes, total, percent: total ? Math.floor((bytes * 100) / total) : 100 });
  const base = req.from.url.replace(/\/+$/, '');
  const pull = async (index: number, f: S.TransferFile, dest: string): Promise<void> => {
    const r = await download(`${base}/export/ps-files/${req.from.ticket}/${index}`, dest, {
      signal: t.signal,
      headers: { authorization: `Bearer ${req.from.token}` },
      sha256: true,
      onProgress: (p) => emit(done + p.bytes),
      log: t.log,
    });
    if (r.sha256 !== f.sha256.toLowerCase() || r.bytes !== f.size) {
      throw new TStackError('CHECKSUM_MISMATCH', `${f.rel}: received ${r.bytes} bytes with sha256 ${String(r.sha256)}, the source has ${f.size} bytes with ${f.sha256}; the copy was discarded`, { rel: f.rel });
    }
    done += f.size;
    emit(done);
  };
  await fs.mkdirp(stagingDir);
  try {
    for (const [i, f] of req.from.files.entries()) {
      if (f.rel.startsWith('imagecache/')) {
        if (await fs.exists(f.rel)) {
          done += f.size;
          continue;
        }
        // the image cache the volume is a clone of: staged beside its final place, then renamed
        const staged = await fs.stagingFor(f.rel);
        try {
          await pull(i, f, staged);
          await fs.commitStaged(staged, f.rel);
        } finally {
          await rm(staged, { force: true });
        }
        continue;
      }
      const parts = f.rel.split('/');
      if (parts[1] !== vol) throw new TStackError('INVALID_ARGUMENT', `from.files: ${f.rel} is not a file of volume ${vol}`, { field: 'from.files' });
      await pull(i, f, fs.abs(`${stagingDir}/${parts[2]!}`));
    }
    const live = fs.abs(`${stagingDir}/${basename(fs.layout.volumeFileRel(vol))}`);
    // the whole chain opens (backing names resolve from the staging directory, at the same depth)
    await qimg.chain(live, { format: 'qcow2', signal: t.signal });
    await qimg.check(live, { format: 'qcow2', signal: t.signal });
    await fs.rmTree(volDir);
    await rename(fs.abs(stagingDir), fs.abs(volDir));
    emit(total);
    const i = await qimg.info(fs.abs(fs.layout.volumeFileRel(vol)), { format: 'qcow2' });
    t.log.info({ volumeUuid: vol, bytes: total }, 'volume imported');
    const rel = fs.layout.volumeFileRel(vol);
    return { volumeUuid: vol, source: fs.source(rel, 'qcow2'), installPath: fs.installPath(rel), format: 'qcow2', size: i.virtualSize, actualSize: await fs.allocated(rel).catch(() => i.actualSize) };
  } catch (e) {
    if (t.signal.aborted && !(e instanceof TStackError)) throw new TStackError('CANCELLED', `import of volume ${vol} was cancelled; nothing was kept`);
    throw e;
  } finally {
    await fs.rmTree(stagingDir);
  }
}
