import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockWriter } from '../../../storageagent/download/blocks.js';
import { InlineHasher, ThreadHasher, type BlockHasher } from '../../../storageagent/download/hash-thread.js';
import { checkQcow2Tables } from '../../../storageagent/image-check.js';
import { TStackError } from '../../../shared/errors.js';

const C = 512; // cluster_bits 9: the smallest qcow2 cluster, 64 entries per L2 table

/**
 * A qcow2 v3 image built by hand: header, refcount table, refcount block, L1 table (2 entries),
 * one L2 table, one data cluster mapped at guest offset 0.
 */
function qcow2(o: { l1Offset?: number; incompatible?: bigint; l2Entry?: bigint } = {}): Buffer {
  const b = Buffer.alloc(6 * C);
  b.writeUInt32BE(0x514649fb, 0);
  b.writeUInt32BE(3, 4);
  b.writeUInt32BE(9, 20); // cluster_bits
  b.writeBigUInt64BE(64n * 1024n, 24); // virtual size: two L2 tables' worth
  b.writeUInt32BE(2, 36); // l1_size
  b.writeBigUInt64BE(BigInt(o.l1Offset ?? 3 * C), 40);
  b.writeBigUInt64BE(BigInt(C), 48); // refcount table
  b.writeUInt32BE(1, 56);
  b.writeBigUInt64BE(o.incompatible ?? 0n, 72);
  b.writeUInt32BE(104, 100);
  b.writeBigUInt64BE(BigInt(2 * C), C); // refcount table -> block
  b.writeBigUInt64BE((1n << 63n) | BigInt(4 * C), 3 * C); // L1[0] -> L2 (copied flag set)
  b.writeBigUInt64BE(o.l2Entry ?? (1n << 63n) | BigInt(5 * C), 4 * C); // L2[0] -> data
  return b;
}

describe('storage unit: download blocks and the qcow2 table check', function () {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tstack-blocks-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Feed 10,000 patterned bytes (seeded by `salt`) through a writer at file offset 100; check the file and the digests. */
  async function writeAndCheck(name: string, hasher: BlockHasher, salt = 7): Promise<void> {
    const path = join(dir, name);
    const fh = await open(path, 'w');
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * salt) % 251;
    let seen = 0;
    const w = new BlockWriter(fh, 100, hasher, (n) => (seen += n), 1024);
    let off = 0;
    // alternate copied chunks and reads straight into the block, of odd sizes
    for (let i = 0; off < data.length; i++) {
      const n = Math.min(data.length - off, 333 + i * 17);
      let more: boolean;
      if (i % 2 === 0) more = w.write(data.subarray(off, off + n));
      else {
        let left = n;
        more = true;
        while (left > 0) {
          const space = w.space();
          assert.ok(space.length > 0);
          const k = Math.min(left, space.length);
          data.copy(space, 0, off + n - left, off + n - left + k);
          more = w.commit(k);
          left -= k;
        }
      }
      off += n;
      if (!more) await w.ready();
    }
    await w.flush();
    await fh.close();
    assert.equal(w.pos, 100 + data.length);
    assert.equal(seen, data.length);
    const file = readFileSync(path);
    assert.equal(file.length, 100 + data.length);
    assert.deepEqual(file.subarray(100), data);
    assert.deepEqual(await hasher.digest(), [createHash('md5').update(data).digest('hex'), createHash('sha256').update(data).digest('hex')]);
  }

  it('writes what it is given at its file positions across blocks, hashes it once in order, copied or read in place', async function () {
    await writeAndCheck('inline', new InlineHasher(['md5', 'sha256']));
  });

  it('hashes on the hash thread: shared blocks, several downloads at once each get their own digests', async function () {
    await Promise.all([3, 7, 11, 13].map((salt) => writeAndCheck(`thread-${salt}`, new ThreadHasher(['md5', 'sha256']), salt)));
    // a session that was closed (a failed download) refuses more blocks, and a writer reports it
    const h = new ThreadHasher(['sha256']);
    h.close();
    const fh = await open(join(dir, 'closed'), 'w');
    const w = new BlockWriter(fh, 0, h, () => undefined, 16);
    w.write(Buffer.alloc(16));
    await assert.rejects(w.flush(), /hash session is closed/);
    await fh.close();
  });

  it('reports a failed write to the writer of the next bytes and to flush', async function () {
    const path = join(dir, 'ro');
    writeFileSync(path, '');
    const fh = await open(path, 'r'); // writes fail: EBADF
    const w = new BlockWriter(fh, 0, new InlineHasher([]), () => undefined, 16);
    w.write(Buffer.alloc(16));
    await w.ready();
    await assert.rejects(w.flush(), /EBADF|bad file/i);
    assert.throws(() => w.write(Buffer.alloc(1)), /EBADF|bad file/i);
    await fh.close();
  });

  it('accepts a sound qcow2 and refuses tables or clusters off the end of the file, bad alignment and unknown features', async function () {
    const check = async (b: Buffer, size = b.length): Promise<void> => {
      const p = join(dir, 'img.qcow2');
      writeFileSync(p, b.subarray(0, size));
      await checkQcow2Tables(p, b, size);
    };
    await check(qcow2());
    const refused = (re: RegExp) => (e: TStackError) => e.code === 'STORAGE_ERROR' && /not a usable image/.test(e.message) && re.test(e.message);
    // cut short: the data cluster is gone (a broken transfer that still had the head)
    await assert.rejects(check(qcow2(), 5 * C), refused(/data cluster at offset 2560 lies past the end/));
    await assert.rejects(check(qcow2({ l1Offset: 3 * C + 8 })), refused(/L1 table .* not cluster-aligned/));
    await assert.rejects(check(qcow2({ l1Offset: 1 << 30 })), refused(/L1 table .* past the end/));
    await assert.rejects(check(qcow2({ incompatible: 1n << 7n })), refused(/unknown qcow2 incompatible features/));
    // a compressed cluster: its offset field is narrower; past the end is refused, inside is fine
    await check(qcow2({ l2Entry: (1n << 62n) | BigInt(5 * C) }));
    await assert.rejects(check(qcow2({ l2Entry: (1n << 62n) | BigInt(50 * C) })), refused(/compressed cluster/));
    // a zero cluster without an allocation is no offset at all
    await check(qcow2({ l2Entry: 1n }));
  });
});
