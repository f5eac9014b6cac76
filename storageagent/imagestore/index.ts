// Image store commands (imagestore/*) and its HTTP side:
//   GET  /export/images/<uuid>        the image bytes (Range supported), bearer token
//   GET  /export/images/<uuid>/info   its ImageInfo (format, sizes, checksums)
//   PUT  /import/images/<uuid>?format=qcow2|raw|iso[&store=<storeUuid>]   upload a new image
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { createHash, timingSafeEqual } from 'node:crypto';
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';
import * as S from '../../shared/protocol/storage.js';
import type { ImageInfo } from '../../shared/protocol/storage.js';
import { download, syncFile } from '../download/index.js';
import { checkImage } from '../image-check.js';
import { checkUuid } from '../paths.js';
import type { AgentContext } from '../context.js';
import { StoreRegistry } from './stores.js';

export function tokenOk(ctx: Koa.Context, token: string): void {
  const m = /^Bearer (.+)$/.exec(ctx.get('authorization'));
  const given = Buffer.from(m ? m[1]! : '');
  const want = Buffer.from(token);
  if (given.length !== want.length || !timingSafeEqual(given, want)) throw new TStackError('UNAUTHORIZED', 'missing or wrong bearer token (see the agent token file)');
}

/** Parse a single-range Range header against a size; undefined = whole file. */
export function parseRange(h: string | undefined, size: number): { start: number; end: number } | undefined | 'invalid' {
  if (!h) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'invalid';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'invalid';
  return { start, end };
}

export function registerImageStore(ctx: AgentContext): StoreRegistry {
  const { server, transfers } = ctx;
  const registry = new StoreRegistry(ctx);
  const token = server.opts.token;

  server.handle(S.ImageStoreInit, async (req) => {
    const st = registry.open(req.store);
    const cap = await st.init();
    await registry.register(req.store);
    return cap;
  });

  server.handle(S.ImageStoreCapacity, async (req) => registry.open(req.store).capacity());

  server.handle(S.ImageStoreImageInfo, async (req) => {
    const info = await registry.open(req.store).info(req.imageUuid);
    if (!info) throw new TStackError('IMAGE_NOT_FOUND', `image ${req.imageUuid} is not in image store ${req.store.uuid}`);
    return info;
  });

  server.handle(
    S.ImageStoreDownload,
    async (req, tctx) => {
      const st = registry.open(req.store);
      const existing = await st.info(req.imageUuid);
      if (existing) {
        tctx.log.info({ imageUuid: req.imageUuid }, 'image already in the store');
        return existing;
      }
      const imageUuid = checkUuid('imageUuid', req.imageUuid);
      const tmp = await st.tmpPath(imageUuid);
      const t = transfers.start(imageUuid, tctx.taskId, tctx.signal);
      const emit = (p: { bytes: number; total: number | null; percent: number | null; rate: number; stage: string }): void =>
        tctx.events.emit(S.DOWNLOAD_PROGRESS_EVENT, { imageUuid, taskId: tctx.taskId, ...p });
      try {
        const r = await download(req.url, tmp, {
          signal: t.signal,
          retries: req.retries ?? 5,
          md5: req.md5 !== undefined,
          // always: the image's integrity record, which primary storage verifies its pulls
          // against (sha256 rather than md5: several times faster with SHA-NI)
          sha256: true,
          ...(req.sshPrivateKey ? { sshPrivateKey: req.sshPrivateKey } : {}),
          onProgress: emit,
          log: tctx.log,
          // fsynced below, while qemu-img checks it (both wait on the disk, not on each other)
          fsync: false,
        });
        if (req.md5 && r.md5 !== req.md5.toLowerCase()) {
          throw new TStackError('CHECKSUM_MISMATCH', `md5 of the downloaded file is ${r.md5}, expected ${req.md5}; the file was discarded`, { expected: req.md5, actual: r.md5 });
        }
        if (req.sha256 && r.sha256 !== req.sha256.toLowerCase()) {
          throw new TStackError('CHECKSUM_MISMATCH', `sha256 of the downloaded file is ${r.sha256}, expected ${req.sha256}; the file was discarded`, { expected: req.sha256, actual: r.sha256 });
        }
        emit({ bytes: r.bytes, total: r.bytes, percent: 100, rate: 0, stage: 'verifying' });
        const [checked] = await Promise.all([checkImage(tmp, req.format, { signal: t.signal }), syncFile(tmp)]);
        const sums: { md5?: string; sha256?: string } = {};
        if (r.md5) sums.md5 = r.md5;
        if (r.sha256) sums.sha256 = r.sha256;
        const info = await st.ingest(imageUuid, tmp, checked, sums, t.signal);
        emit({ bytes: r.bytes, total: r.bytes, percent: 100, rate: 0, stage: 'done' });
        tctx.log.info({ imageUuid, bytes: r.bytes, resumes: r.resumes, format: info.format }, 'image downloaded');
        return info;
      } catch (e) {
        await rm(tmp, { force: true });
        if (t.signal.aborted && !(e instanceof TStackError && e.code === 'TIMEOUT')) {
          throw new TStackError('CANCELLED', `download of image ${imageUuid} was cancelled; nothing was kept`);
        }
        throw e;
      } finally {
        t.done();
      }
    },
    { key: (r) => `image:${r.imageUuid.toLowerCase()}` },
  );

  server.handle(S.ImageStoreCancel, async (req) => {
    if (!req.imageUuid && !req.taskId) throw new TStackError('INVALID_ARGUMENT', 'give imageUuid or taskId', { field: 'imageUuid' });
    const by: { imageUuid?: string; taskId?: string } = {};
    if (req.imageUuid) by.imageUuid = req.imageUuid;
    if (req.taskId) by.taskId = req.taskId;
    return { cancelled: transfers.cancel(by) };
  });

  server.handle(S.ImageStoreDelete, async (req) => ({ deleted: await registry.open(req.store).delete(req.imageUuid) }), {
    key: (r) => `image:${r.imageUuid.toLowerCase()}`,
  });

  // ---- HTTP export / import ----
  server.router.get('/export/images/:uuid/info', async (kctx) => {
    tokenOk(kctx, token);
    const uuid = checkUuid('uuid', String(kctx.params.uuid));
    const f = await registry.find(uuid);
    if (!f) throw new TStackError('IMAGE_NOT_FOUND', `image ${uuid} is in no image store on this agent`);
    kctx.body = f.info;
  });

  const serve = async (kctx: Koa.Context): Promise<void> => {
    tokenOk(kctx, token);
    const uuid = checkUuid('uuid', String(kctx.params.uuid));
    const f = await registry.find(uuid);
    if (!f) throw new TStackError('IMAGE_NOT_FOUND', `image ${uuid} is in no image store on this agent`);
    const ex = await f.store.exportFile(uuid);
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        void ex.release();
      }
    };
    try {
      kctx.set('accept-ranges', 'bytes');
      kctx.set('x-image-format', ex.info.format);
      kctx.type = 'application/octet-stream';
      const r = parseRange(kctx.get('range') || undefined, ex.size);
      if (r === 'invalid') {
        kctx.status = 416;
        kctx.set('content-range', `bytes */${ex.size}`);
        release();
        return;
      }
      const start = r?.start ?? 0;
      const end = r?.end ?? ex.size - 1;
      if (r) {
        kctx.status = 206;
        kctx.set('content-range', `bytes ${start}-${end}/${ex.size}`);
      } else kctx.status = 200;
      kctx.length = ex.size === 0 ? 0 : end - start + 1;
      if (kctx.method === 'HEAD' || ex.size === 0) {
        release();
        kctx.body = null;
        return;
      }
      const s = createReadStream(ex.path, { start, end, highWaterMark: 1 << 20 });
      s.once('close', release);
      kctx.body = s;
    } catch (e) {
      release();
      throw e;
    }
  };
  server.router.get('/export/images/:uuid', serve);

  server.router.put('/import/images/:uuid', async (kctx) => {
    tokenOk(kctx, token);
    const uuid = checkUuid('uuid', String(kctx.params.uuid));
    const fmt = String(kctx.query.format ?? '');
    if (!['qcow2', 'raw', 'iso'].includes(fmt)) throw new TStackError('INVALID_ARGUMENT', 'query format: qcow2, raw or iso', { field: 'format' });
    const stores = await registry.all();
    const st = kctx.query.store ? await registry.get(checkUuid('store', String(kctx.query.store))) : stores.length === 1 ? stores[0] : undefined;
    if (!st) throw new TStackError('INVALID_ARGUMENT', `query store: name the target image store (${stores.length} registered on this agent)`, { field: 'store' });
    if (await st.info(uuid)) throw new TStackError('CONFLICT', `image ${uuid} already exists in image store ${st.uuid}`);
    const tmp = await st.tmpPath(uuid);
    const sha256 = createHash('sha256');
    let ok = false;
    try {
      const fh = await open(tmp, 'w', 0o644);
      try {
        let pos = 0;
        for await (const chunk of kctx.req as AsyncIterable<Buffer>) {
          await fh.write(chunk, 0, chunk.length, pos);
          sha256.update(chunk);
          pos += chunk.length;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const checked = await checkImage(tmp, fmt as ImageInfo['format']);
      const info = await st.ingest(uuid, tmp, checked, { sha256: sha256.digest('hex') });
      ok = true;
      kctx.status = 201;
      kctx.body = info;
    } finally {
      if (!ok) await rm(tmp, { force: true });
    }
  });

  return registry;
}
