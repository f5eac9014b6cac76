import assert from 'node:assert/strict';
import { parseRange } from '../../../storageagent/imagestore/index.js';
import { sniff, looksLikeText, qcow2Header } from '../../../storageagent/image-check.js';
import { parseNfsUrl } from '../../../storageagent/primary/nfs.js';
import { Transfers } from '../../../storageagent/transfers.js';
import { sourceFor, redact } from '../../../storageagent/download/index.js';
import { TStackError } from '../../../shared/errors.js';
import { check } from '../../../shared/protocol/schema.js';
import * as S from '../../../shared/protocol/storage.js';

describe('storage unit: ranges, sniffing, URLs, transfers, schemas', function () {
  it('parses single byte ranges', function () {
    assert.equal(parseRange(undefined, 100), undefined);
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=50-500', 100), { start: 50, end: 99 });
    for (const bad of ['bytes=100-', 'bytes=5-1', 'bytes=-', 'bytes=-0', 'items=0-1', 'bytes=0-1,5-6']) assert.equal(parseRange(bad, 100), 'invalid', bad);
  });

  it('reads what decides a qcow2 image from its header: backing file, encryption, external data file, corrupt bit', function () {
    const hdr = (o: { backing?: string; crypt?: number; incompatible?: bigint; version?: number } = {}): Buffer => {
      const b = Buffer.alloc(1024);
      b.writeUInt32BE(0x514649fb, 0);
      b.writeUInt32BE(o.version ?? 3, 4);
      if (o.backing) {
        b.writeBigUInt64BE(512n, 8);
        b.writeUInt32BE(o.backing.length, 16);
        b.write(o.backing, 512, 'utf8');
      }
      b.writeBigUInt64BE(BigInt(64 * 1024 * 1024), 24);
      b.writeUInt32BE(o.crypt ?? 0, 32);
      b.writeBigUInt64BE(o.incompatible ?? 0n, 72);
      return b;
    };
    assert.deepEqual(qcow2Header(hdr()), { version: 3, virtualSize: 64 * 1024 * 1024, encrypted: false, corrupt: false, dataFile: false });
    assert.equal(qcow2Header(hdr({ backing: '/etc/shadow' })).backingFile, '/etc/shadow');
    assert.equal(qcow2Header(hdr({ crypt: 2 })).encrypted, true);
    assert.equal(qcow2Header(hdr({ incompatible: 4n })).dataFile, true);
    assert.equal(qcow2Header(hdr({ incompatible: 2n })).corrupt, true);
    // version 2 has no feature bits: whatever sits there means nothing
    assert.equal(qcow2Header(hdr({ version: 2, incompatible: 6n })).dataFile, false);
    assert.throws(() => qcow2Header(hdr().subarray(0, 40)), /truncated/);
  });

  it('recognises image formats by their magic', function () {
    const q = Buffer.alloc(64);
    q.writeUInt32BE(0x514649fb, 0);
    q.writeUInt32BE(3, 4);
    assert.equal(sniff(q), 'qcow2');
    const iso = Buffer.alloc(36 * 1024);
    iso.write('CD001', 32769, 'latin1');
    assert.equal(sniff(iso), 'iso');
    assert.equal(sniff(Buffer.from('KDMV....')), 'vmdk');
    assert.equal(sniff(Buffer.alloc(4096)), 'unknown');
  });

  it('tells text from disk data', function () {
    assert.ok(looksLikeText(Buffer.from('<html><body>Not Found</body></html>\n'.repeat(20))));
    assert.ok(!looksLikeText(Buffer.alloc(4096, 0x2b)), 'a disk filled with "+" is data');
    assert.ok(!looksLikeText(Buffer.alloc(4096, 0)));
  });

  it('parses NFS URLs', function () {
    assert.deepEqual(parseNfsUrl('10.0.0.5:/export/ps1/'), { server: '10.0.0.5', export: '/export/ps1' });
    assert.deepEqual(parseNfsUrl('nas.example:/'), { server: 'nas.example', export: '/' });
    assert.throws(() => parseNfsUrl('10.0.0.5/export'), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
    assert.throws(() => parseNfsUrl('h:/a/../b'), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
  });

  it('cancels transfers by image uuid or task id, and follows the task signal', function () {
    const t = new Transfers();
    const parent = new AbortController();
    const a = t.start('AAAAAAAA-0000-0000-0000-000000000000', 'task-1', parent.signal);
    const b = t.start('bbbbbbbb-0000-0000-0000-000000000000', 'task-2', new AbortController().signal);
    assert.equal(t.cancel({ imageUuid: 'aaaaaaaa-0000-0000-0000-000000000000' }), 1);
    assert.ok(a.signal.aborted && !b.signal.aborted);
    assert.equal(t.cancel({ taskId: 'task-2' }), 1);
    assert.ok(b.signal.aborted);
    const c = t.start('cccccccc-0000-0000-0000-000000000000', 'task-3', parent.signal);
    parent.abort();
    assert.ok(c.signal.aborted);
    a.done();
    b.done();
    c.done();
    assert.equal(t.size, 0);
  });

  it('picks a download source by scheme and hides credentials', function () {
    assert.equal(sourceFor('http://x/a').display, 'http://x/a');
    assert.equal(sourceFor('ftp://u:secret@host/a.qcow2').display, 'ftp://host/a.qcow2');
    assert.equal(redact(new URL('sftp://root:pw@h:2222/x')), 'sftp://h:2222/x');
    assert.throws(() => sourceFor('gopher://x/y'), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
    assert.throws(() => sourceFor('file://otherhost/etc/passwd'), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
    assert.throws(() => sourceFor('sftp://h/x'), (e: TStackError) => e.code === 'DOWNLOAD_FAILED');
  });

  it('declares requests that reject unknown fields and bad storage descriptors', function () {
    const ps = { type: 'local', uuid: '0b9a8c52-1f7e-4c63-9c0e-6b1a2d3e4f50', path: '/srv/ps' };
    assert.deepEqual(check(S.PsInit.request, { ps }), []);
    assert.ok(check(S.PsInit.request, { ps: { ...ps, path: '/srv/../etc' } }).length > 0);
    assert.ok(check(S.PsInit.request, { ps: { ...ps, type: 'zfs' } }).length > 0);
    assert.ok(check(S.PsInit.request, { ps, extra: 1 }).length > 0);
    assert.ok(check(S.ImageStoreDownload.request, { store: { type: 'dir', uuid: ps.uuid, path: '/bs' }, imageUuid: ps.uuid, url: 'javascript:alert(1)' }).length > 0);
    const nfs = { type: 'nfs', uuid: ps.uuid, url: '10.0.0.5:/export', mountPath: '/mnt/ps' };
    assert.deepEqual(check(S.PsInit.request, { ps: nfs }), []);
    assert.ok(check(S.PsInit.request, { ps: { ...nfs, mountOptions: 'vers=3;rm -rf /' } }).length > 0);
    const ceph = { type: 'ceph', uuid: ps.uuid, pool: 'vms' };
    assert.deepEqual(check(S.PsInit.request, { ps: ceph }), []);
    assert.ok(check(S.PsInit.request, { ps: { ...ceph, pool: 'vms:conf=/tmp/evil.conf' } }).length > 0, "':' would inject rbd options");
    // every command is declared once with a unique path
    assert.equal(new Set(S.commands.map((c) => c.path)).size, S.commands.length);
  });
});
