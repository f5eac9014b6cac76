// Moving images between a primary storage host and an image store agent over its HTTP
// export (pull, resumable) and import (upload).
import { createReadStream } from 'node:fs';
import { stat, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { TStackError } from '../../shared/errors.js';
import type { TaskContext } from '../../shared/agent/server.js';
import { DOWNLOAD_PROGRESS_EVENT, type ImageInfo } from '../../shared/protocol/storage.js';
import { download } from '../download/index.js';
import { checkImage, type CheckedImage } from '../image-check.js';
import type { AgentContext } from '../context.js';
import type { ImageRef } from './types.js';

const base = (u: string): string => u.replace(/\/+$/, '');

export async function remoteImageInfo(ref: ImageRef, signal: AbortSignal): Promise<ImageInfo> {
  const url = `${base(ref.imageStore.url)}/export/images/${encodeURIComponent(ref.imageUuid)}/info`;
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${ref.imageStore.token}` }, signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]) });
  } catch (e) {
    throw new TStackError('DOWNLOAD_FAILED', `image store ${base(ref.imageStore.url)} unreachable: ${(e as Error).message}`);
  }
  if (res.status === 404) throw new TStackError('IMAGE_NOT_FOUND', `image ${ref.imageUuid} is not on image store ${base(ref.imageStore.url)}`);
  if (res.status === 401) throw new TStackError('DOWNLOAD_FAILED', `image store ${base(ref.imageStore.url)} refused the token`);
  if (!res.ok) throw new TStackError('DOWNLOAD_FAILED', `image store ${base(ref.imageStore.url)}: HTTP ${res.status}`);
  return (await res.json()) as ImageInfo;
}

/** Pull an image into a local temp file, verify checksums and content; the caller owns `dest`. */
export async function pullImage(ctx: AgentContext, ref: ImageRef, dest: string, t: TaskContext): Promise<{ info: ImageInfo; checked: CheckedImage }> {
  const info = await remoteImageInfo(ref, t.signal);
  const md5 = ref.md5 ?? info.md5;
  const sha256 = ref.sha256 ?? info.sha256;
  const tr = ctx.transfers.start(ref.imageUuid, t.taskId, t.signal);
  try {
    const r = await download(`${base(ref.imageStore.url)}/export/images/${encodeURIComponent(ref.imageUuid)}`, dest, {
      signal: tr.signal,
      headers: { authorization: `Bearer ${ref.imageStore.token}` },
      md5: md5 !== undefined,
      sha256: sha256 !== undefined,
      onProgress: (p) => t.events.emit(DOWNLOAD_PROGRESS_EVENT, { imageUuid: ref.imageUuid, taskId: t.taskId, ...p }),
      log: t.log,
    });
    if (md5 && r.md5 !== md5.toLowerCase()) throw new TStackError('CHECKSUM_MISMATCH', `image ${ref.imageUuid}: md5 ${r.md5} != expected ${md5}`);
    if (sha256 && r.sha256 !== sha256.toLowerCase()) throw new TStackError('CHECKSUM_MISMATCH', `image ${ref.imageUuid}: sha256 ${r.sha256} != expected ${sha256}`);
    const emit = (stage: string): void => t.events.emit(DOWNLOAD_PROGRESS_EVENT, { imageUuid: ref.imageUuid, taskId: t.taskId, bytes: r.bytes, total: r.bytes, percent: 100, rate: 0, stage });
    emit('verifying');
    const checked = await checkImage(dest, info.format, { signal: tr.signal });
    if (checked.virtualSize !== info.virtualSize) {
      throw new TStackError('STORAGE_ERROR', `image ${ref.imageUuid}: virtual size ${checked.virtualSize} differs from the store's ${info.virtualSize}`);
    }
    emit('done');
    return { info, checked };
  } catch (e) {
    await rm(dest, { force: true });
    if (tr.signal.aborted && !t.signal.aborted) throw new TStackError('CANCELLED', `pull of image ${ref.imageUuid} was cancelled`);
    throw e;
  } finally {
    tr.done();
  }
}

/** Upload a local image file to an image store agent (PUT /import/images/<uuid>). */
export async function uploadImage(
  file: string,
  target: { url: string; token: string; storeUuid?: string },
  imageUuid: string,
  format: 'qcow2' | 'raw',
  signal: AbortSignal,
): Promise<ImageInfo> {
  const u = new URL(`${base(target.url)}/import/images/${encodeURIComponent(imageUuid)}`);
  u.searchParams.set('format', format);
  if (target.storeUuid) u.searchParams.set('store', target.storeUuid);
  const size = (await stat(file)).size;
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<ImageInfo>((resolve, reject) => {
    const r = req(
      u,
      { method: 'PUT', signal, headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/octet-stream', 'content-length': String(size) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> = {};
          try {
            body = JSON.parse(text) as Record<string, unknown>;
          } catch {
            /* not JSON */
          }
          if (res.statusCode === 201 || res.statusCode === 200) return resolve(body as unknown as ImageInfo);
          if (typeof body.code === 'string') return reject(new TStackError(body.code, `image store: ${String(body.message)}`, body.details as Record<string, unknown>));
          reject(new TStackError('STORAGE_ERROR', `image store upload: HTTP ${res.statusCode}`));
        });
        res.on('error', reject);
      },
    );
    r.on('error', (e) => reject(new TStackError(signal.aborted ? 'CANCELLED' : 'STORAGE_ERROR', `upload to ${base(target.url)}: ${e.message}`)));
    const s = createReadStream(file, { highWaterMark: 1 << 20 });
    s.on('error', (e) => r.destroy(e));
    s.pipe(r);
  });
}
