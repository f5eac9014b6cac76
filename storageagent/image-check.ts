// Decide what a downloaded or uploaded file is, and refuse what must not become an image:
// corrupt qcow2, qcow2 with a backing/data file (it could point at host files), encrypted
// images, formats we don't serve, and "raw" files that are really an error page or text.
import { open, stat } from 'node:fs/promises';
import { TStackError } from '../shared/errors.js';
import * as qimg from './qemu-img.js';
import type { ImageFormat } from '../shared/protocol/storage.js';

export interface CheckedImage {
  format: ImageFormat;
  virtualSize: number;
  actualSize: number;
}

const refuse = (msg: string, details?: Record<string, unknown>): TStackError => new TStackError('STORAGE_ERROR', `not a usable image: ${msg}`, details);

async function head(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export function sniff(b: Buffer): 'qcow2' | 'iso' | 'vmdk' | 'vhdx' | 'vdi' | 'qcow1' | 'unknown' {
  if (b.length >= 8 && b.readUInt32BE(0) === 0x514649fb) return b.readUInt32BE(4) >= 2 ? 'qcow2' : 'qcow1';
  if (b.length >= 32774 && b.subarray(32769, 32774).toString('latin1') === 'CD001') return 'iso';
  if (b.length >= 4 && b.subarray(0, 4).toString('latin1') === 'KDMV') return 'vmdk';
  if (b.length >= 8 && b.subarray(0, 8).toString('latin1') === 'vhdxfile') return 'vhdx';
  if (b.length >= 64 && b.readUInt32LE(64) === 0xbeda107f) return 'vdi';
  return 'unknown';
}

/**
 * Looks like text (an HTML error page, a README...) rather than disk data: nearly all
 * printable, with the whitespace that prose and markup have (a disk filled with one printable
 * byte is still data).
 */
export function looksLikeText(b: Buffer): boolean {
  if (b.length === 0) return true;
  const n = Math.min(b.length, 4096);
  let printable = 0;
  let space = 0;
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    if (c === 9 || c === 10 || c === 13 || c === 32) space++;
    if (c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127)) printable++;
  }
  return printable / n > 0.95 && space / n > 0.02;
}

/**
 * The qcow2 header fields that decide whether an image is acceptable (QEMU's docs/interop/qcow2.txt):
 * backing file (offset 8, length 16), virtual size (24), crypt method (32), and from version 3 the
 * incompatible feature bits (72: bit 1 corrupt, bit 2 external data file).
 */
export function qcow2Header(b: Buffer): { version: number; virtualSize: number; backingFile?: string; encrypted: boolean; corrupt: boolean; dataFile: boolean } {
  if (b.length < 72) throw refuse('truncated qcow2 header');
  const version = b.readUInt32BE(4);
  const backingOffset = Number(b.readBigUInt64BE(8));
  const backingLen = b.readUInt32BE(16);
  const incompatible = version >= 3 && b.length >= 80 ? b.readBigUInt64BE(72) : 0n;
  const h: ReturnType<typeof qcow2Header> = { version, virtualSize: Number(b.readBigUInt64BE(24)), encrypted: b.readUInt32BE(32) !== 0, corrupt: (incompatible & 2n) !== 0n, dataFile: (incompatible & 4n) !== 0n };
  if (backingOffset !== 0) {
    const name = backingOffset + backingLen <= b.length ? b.subarray(backingOffset, backingOffset + Math.min(backingLen, 1023)).toString('utf8') : '';
    h.backingFile = name || `at header offset ${backingOffset}`;
  }
  return h;
}

export async function checkImage(path: string, declared: ImageFormat | undefined, o: { signal?: AbortSignal } = {}): Promise<CheckedImage> {
  const st = await stat(path);
  const b = await head(path, 36 * 1024);
  const kind = sniff(b);
  const qo = o.signal ? { signal: o.signal } : {};
  if (kind === 'qcow2') {
    // the header answers what `qemu-img info` would (one process less per image); `qemu-img
    // check` then walks the metadata
    const h = qcow2Header(b);
    if (h.backingFile !== undefined) throw refuse(`qcow2 images with a backing file (${h.backingFile}) are not accepted; flatten it first (qemu-img convert -O qcow2)`);
    if (h.dataFile) throw refuse('qcow2 images with an external data file are not accepted');
    if (h.encrypted) throw refuse('encrypted images are not supported');
    if (h.corrupt) throw refuse('the qcow2 header marks the image corrupt');
    await qimg.check(path, { ...qo, format: 'qcow2' }).catch((e: TStackError) => {
      throw refuse(e.message, e.details);
    });
    if (declared && declared !== 'qcow2') throw refuse(`declared ${declared} but the file is qcow2`);
    return { format: 'qcow2', virtualSize: h.virtualSize, actualSize: st.size };
  }
  if (kind === 'iso') {
    if (declared && declared !== 'iso' && declared !== 'raw') throw refuse(`declared ${declared} but the file is an ISO 9660 image`);
    return { format: declared === 'raw' ? 'raw' : 'iso', virtualSize: st.size, actualSize: st.size };
  }
  if (kind !== 'unknown') throw refuse(`${kind} images are not supported; convert it to qcow2 (qemu-img convert -O qcow2)`);
  if (declared !== 'raw') {
    throw refuse(
      looksLikeText(b)
        ? `the file is text (${JSON.stringify(b.subarray(0, 60).toString('utf8'))}…), not a disk image; check the URL`
        : 'the file is neither qcow2 nor ISO 9660; a raw disk image must be declared with format "raw"',
    );
  }
  if (st.size === 0 || st.size % 512 !== 0) throw refuse(`a raw disk image must be a non-empty multiple of 512 bytes (got ${st.size})`);
  if (looksLikeText(b)) throw refuse(`the file is text (${JSON.stringify(b.subarray(0, 60).toString('utf8'))}…), not a raw disk image`);
  return { format: 'raw', virtualSize: st.size, actualSize: st.size };
}
