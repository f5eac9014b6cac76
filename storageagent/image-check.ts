// Decide what a downloaded or uploaded file is, and refuse what must not become an image:
// corrupt qcow2, qcow2 with a backing/data file (it could point at host files), encrypted
// images, formats we don't serve, and "raw" files that are really an error page or text.
import { open, stat } from 'node:fs/promises';
import { TStackError } from '../shared/errors.js';
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

const L1_MAX_BYTES = 32 << 20; // QEMU's QCOW_MAX_L1_SIZE
const REFTABLE_MAX_BYTES = 8 << 20; // QCOW_MAX_REFTABLE_SIZE
const OFFSET_MASK = 0x00fffffffffffe00n;
const COMPRESSED = 1n << 62n;
const KNOWN_INCOMPATIBLE = 0x1fn; // dirty, corrupt, external data file, compression type, extended L2

/**
 * The qcow2 metadata walk `qemu-img check` would do for corruption (not for leaked clusters),
 * in process: the cluster size, the L1, refcount and snapshot tables inside the file, and every
 * L2 table's cluster offsets aligned and inside the file. A file cut short or a table pointing
 * off the end (a broken mirror, a truncated upload) is refused here rather than at a VM's first
 * read. Reads only the tables (one L2 table per allocated 512 MiB at 64 KiB clusters).
 */
export async function checkQcow2Tables(path: string, b: Buffer, fileSize: number): Promise<void> {
  const version = b.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw refuse(`qcow2 version ${version} is not supported`);
  const clusterBits = b.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) throw refuse(`bad qcow2 cluster size (2^${clusterBits})`);
  const cluster = 2 ** clusterBits;
  const incompatible = version >= 3 ? b.readBigUInt64BE(72) : 0n;
  if ((incompatible & ~KNOWN_INCOMPATIBLE) !== 0n) throw refuse(`unknown qcow2 incompatible features (0x${incompatible.toString(16)})`);
  const entry = (incompatible & 16n) !== 0n ? 16 : 8; // extended L2 entries carry a subcluster bitmap
  const end = Math.ceil(fileSize / cluster) * cluster; // the last cluster may be written short
  const inFile = (what: string, off: number, len: number): void => {
    if (off % cluster !== 0) throw refuse(`qcow2 ${what} at offset ${off} is not cluster-aligned`);
    if (off + len > end) throw refuse(`qcow2 ${what} at offset ${off} lies past the end of the file (${fileSize} bytes): truncated or corrupt`);
  };
  const l1Size = b.readUInt32BE(36);
  const l1Offset = Number(b.readBigUInt64BE(40));
  if (l1Size * 8 > L1_MAX_BYTES) throw refuse(`qcow2 L1 table too large (${l1Size} entries)`);
  const virtualSize = Number(b.readBigUInt64BE(24));
  const perL2 = (cluster / entry) * cluster;
  if (l1Size < Math.ceil(virtualSize / perL2)) throw refuse(`qcow2 L1 table (${l1Size} entries) too small for the virtual size ${virtualSize}`);
  if (l1Size > 0) inFile('L1 table', l1Offset, l1Size * 8);
  const rtClusters = b.readUInt32BE(56);
  if (rtClusters * cluster > REFTABLE_MAX_BYTES) throw refuse(`qcow2 refcount table too large (${rtClusters} clusters)`);
  inFile('refcount table', Number(b.readBigUInt64BE(48)), rtClusters * cluster);
  if (b.readUInt32BE(60) > 0) inFile('snapshot table', Number(b.readBigUInt64BE(64)), 0);
  if (l1Size === 0) return;
  const fh = await open(path, 'r');
  try {
    const l1 = Buffer.alloc(l1Size * 8);
    await fh.read(l1, 0, l1.length, l1Offset);
    const l2 = Buffer.alloc(cluster);
    const compressedMask = (1n << (62n - BigInt(clusterBits - 8))) - 1n;
    for (let i = 0; i < l1Size; i++) {
      const l2Offset = Number(l1.readBigUInt64BE(i * 8) & OFFSET_MASK);
      if (l2Offset === 0) continue;
      inFile(`L2 table ${i}`, l2Offset, cluster);
      const { bytesRead } = await fh.read(l2, 0, cluster, l2Offset);
      if (bytesRead < cluster) l2.fill(0, bytesRead); // the short tail of the file: unallocated entries
      for (let j = 0; j < cluster; j += entry) {
        const e = l2.readBigUInt64BE(j);
        if (e & COMPRESSED) {
          const off = Number(e & compressedMask);
          if (off >= fileSize) throw refuse(`qcow2 compressed cluster at offset ${off} lies past the end of the file (${fileSize} bytes): truncated or corrupt`);
          continue;
        }
        const off = Number(e & OFFSET_MASK);
        if (off !== 0) inFile('data cluster', off, cluster);
      }
    }
  } finally {
    await fh.close();
  }
}

export async function checkImage(path: string, declared: ImageFormat | undefined, o: { signal?: AbortSignal } = {}): Promise<CheckedImage> {
  const st = await stat(path);
  const b = await head(path, 36 * 1024);
  const kind = sniff(b);
  if (kind === 'qcow2') {
    // the header and the tables answer what `qemu-img info` and `check` would, without a process
    const h = qcow2Header(b);
    if (h.backingFile !== undefined) throw refuse(`qcow2 images with a backing file (${h.backingFile}) are not accepted; flatten it first (qemu-img convert -O qcow2)`);
    if (h.dataFile) throw refuse('qcow2 images with an external data file are not accepted');
    if (h.encrypted) throw refuse('encrypted images are not supported');
    if (h.corrupt) throw refuse('the qcow2 header marks the image corrupt');
    o.signal?.throwIfAborted();
    await checkQcow2Tables(path, b, st.size);
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
