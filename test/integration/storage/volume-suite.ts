// One volume test suite, run against every primary storage type (local, shared mount point,
// Ceph RBD, NFS): image cache, linked-clone root volumes, data volumes, resize, a snapshot chain
// of three (revert to the middle, delete the middle, delete the top), volume to image, delete.
// Data is checked through QEMU's block layer (qemu-io patterns, qemu-img compare).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as S from '../../../shared/protocol/storage.js';
import { exec } from '../../../shared/exec.js';
import { TStackError } from '../../../shared/errors.js';
import { useCleanup, type Cleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { startTestAgent, makeQcow2, qemuRead, qemuWrite, uuid, type TestAgent } from './helpers.js';

export interface Backend {
  ps: S.PrimaryStorageSpec;
  /** qemu-img/qemu-io target + format for a disk source or an install path */
  target(x: S.VolumeSource | string): { target: string; format: string };
  /** another view of the same storage (e.g. a second mount of a shared mount point) to check files appear there */
  peerSees?(relPath: string): boolean;
}

export function volumeSuite(name: string, setup: (cleanup: Cleanup) => Promise<Backend | string>): void {
  describe(`storage: volumes on ${name} primary storage`, function () {
    this.timeout(300_000);
    const cleanup = useCleanup();
    let be: Backend;
    let bs: TestAgent;
    let ps: TestAgent;
    let store: S.ImageStoreSpec;
    const imageUuid = uuid();
    let imageStoreRef: { url: string; token: string };
    let work: string;

    before(async function () {
      const b = await setup(cleanup);
      if (typeof b === 'string') {
        // only for a missing kernel feature; the reason is printed
        process.stdout.write(`      skipped: ${b}\n`);
        this.skip(); // kernel feature missing: the NFS client
      }
      be = b as Backend;
      bs = await startTestAgent(cleanup, 'bs');
      ps = await startTestAgent(cleanup, 'ps');
      work = await tmpDir('vol-work', cleanup);
      store = { type: 'dir', uuid: uuid(), path: await tmpDir('vol-store', cleanup) };
      await bs.call(S.ImageStoreInit, { store });
      const img = join(work, 'base.qcow2');
      await makeQcow2(img, 128, 4, 0x5a); // 128 MiB virtual, 4 MiB of 0x5a at the start
      await bs.call(S.ImageStoreDownload, { store, imageUuid, url: `file://${img}` });
      imageStoreRef = { url: bs.endpoint.url, token: bs.endpoint.token };
    });

    const psReq = (): { ps: S.PrimaryStorageSpec } => ({ ps: be.ps });
    const T = (x: S.VolumeSource | string): { target: string; format: string } => be.target(x);
    const read = async (x: S.VolumeSource | string, off: number, mb: number, pat: number): Promise<boolean> => {
      const t = T(x);
      return qemuRead(t.target, t.format, off, mb, pat);
    };
    const write = async (x: S.VolumeSource | string, off: number, mb: number, pat: number): Promise<void> => {
      const t = T(x);
      await qemuWrite(t.target, t.format, off, mb, pat);
    };
    /** a raw copy of what a volume/snapshot reads now, for later qemu-img compare */
    const snapshotRef = async (x: S.VolumeSource | string, label: string): Promise<string> => {
      const t = T(x);
      const out = join(work, `${label}.raw`);
      await exec('qemu-img', ['convert', '-f', t.format, '-O', 'raw', t.target, out], { timeoutMs: 120_000 });
      return out;
    };
    const same = async (x: S.VolumeSource | string, ref: string): Promise<boolean> => {
      const t = T(x);
      const r = await exec('qemu-img', ['compare', '-f', t.format, '-F', 'raw', t.target, ref], { timeoutMs: 120_000, okCodes: [0, 1] });
      return r.code === 0;
    };

    it('initialises and reports capacity', async function () {
      const c = await ps.call(S.PsInit, psReq());
      assert.ok(c.totalCapacity > 0 && c.availableCapacity > 0 && c.availableCapacity <= c.totalCapacity, JSON.stringify(c));
      const c2 = await ps.call(S.PsCapacity, psReq());
      assert.ok(c2.totalCapacity > 0);
    });

    it('caches an image once for concurrent requests and verifies it', async function () {
      const reqs = [1, 2, 3].map(() => ps.call(S.PsImageCache, { ...psReq(), imageUuid, imageStore: imageStoreRef }));
      const rs = await Promise.all(reqs);
      assert.equal(rs.filter((r) => !r.alreadyCached).length, 1, 'exactly one request downloaded');
      for (const r of rs) assert.deepEqual(r.source, rs[0]!.source);
      assert.ok(await read(rs[0]!.source, 0, 4, 0x5a), 'cached image has the data');
      assert.equal(rs[0]!.virtualSize, 128 << 20);
      // a wrong token or an unknown image fails clearly
      await assert.rejects(ps.call(S.PsImageCache, { ...psReq(), imageUuid: uuid(), imageStore: imageStoreRef }), (e: TStackError) => e.code === 'IMAGE_NOT_FOUND');
      await assert.rejects(ps.call(S.PsImageCache, { ...psReq(), imageUuid: uuid(), imageStore: { ...imageStoreRef, token: 'x'.repeat(48) } }), (e: TStackError) => e.code === 'DOWNLOAD_FAILED');
    });

    it('creates a root volume as a linked clone of the cached image', async function () {
      const volumeUuid = uuid();
      const v = await ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid, imageUuid, size: 256 << 20 });
      assert.equal(v.size, 256 << 20);
      assert.ok(v.actualSize < 4 << 20, `clone allocates almost nothing (${v.actualSize})`);
      assert.ok(await read(v.source, 0, 4, 0x5a), 'clone reads the image data');
      await write(v.source, 0, 1, 0x77);
      assert.ok(await read(v.source, 0, 1, 0x77));
      const cached = await ps.call(S.PsImageCache, { ...psReq(), imageUuid, imageStore: imageStoreRef });
      assert.ok(cached.alreadyCached);
      assert.ok(await read(cached.source, 0, 4, 0x5a), 'writes to the clone never reach the cached image');
      if (be.peerSees) assert.ok(be.peerSees(`volumes/${volumeUuid}/${volumeUuid}.qcow2`), 'the other mount sees the volume');
      await assert.rejects(ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid, imageUuid }), (e: TStackError) => e.code === 'CONFLICT');
      assert.deepEqual(await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid }), { deleted: true });
      await assert.rejects(ps.call(S.VolumeInfoCmd, { ...psReq(), volumeUuid }), (e: TStackError) => e.code === 'VOLUME_NOT_FOUND');
      assert.deepEqual(await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid }), { deleted: false });
    });

    it('flattens a linked clone into a standalone volume (full clone): same bytes, no link to the cache; refused with snapshots', async function () {
      const volumeUuid = uuid();
      const v = await ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid, imageUuid });
      await write(v.source, 0, 1, 0x66);
      const f = await ps.call(S.FlattenVolume, { ...psReq(), volumeUuid });
      assert.ok(await read(f.source, 0, 1, 0x66), 'its own writes');
      assert.ok(await read(f.source, 1, 3, 0x5a), 'and the image data, now copied in');
      if (be.ps.type === 'ceph') {
        const info = JSON.parse((await exec('rbd', ['-c', be.ps.confPath!, 'info', '--format', 'json', `${be.ps.pool}/vol-${volumeUuid}`])).stdout) as { parent?: unknown };
        assert.equal(info.parent, undefined, 'no RBD parent');
      } else {
        const t = T(f.source);
        const info = JSON.parse((await exec('qemu-img', ['info', '--output', 'json', '-f', t.format, t.target])).stdout) as Record<string, unknown>;
        assert.equal(info['backing-filename'], undefined, 'no backing file');
      }
      await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: uuid() });
      await assert.rejects(ps.call(S.FlattenVolume, { ...psReq(), volumeUuid }), (e: TStackError) => e.code === 'CONFLICT');
      assert.deepEqual(await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid }), { deleted: true });
    });

    it('creates, grows and deletes an empty data volume', async function () {
      const volumeUuid = uuid();
      const v = await ps.call(S.CreateEmptyVolume, { ...psReq(), volumeUuid, size: 64 << 20 });
      assert.equal(v.size, 64 << 20);
      assert.ok(await read(v.source, 0, 1, 0), 'reads zeros');
      const r = await ps.call(S.ResizeVolume, { ...psReq(), volumeUuid, size: 96 << 20 });
      assert.equal(r.size, 96 << 20);
      assert.equal((await ps.call(S.VolumeInfoCmd, { ...psReq(), volumeUuid })).size, 96 << 20);
      await assert.rejects(ps.call(S.ResizeVolume, { ...psReq(), volumeUuid, size: 32 << 20 }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && /shrink/.test(e.message));
      assert.deepEqual(await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid }), { deleted: true });
    });

    it('snapshot chain of three: revert to the middle, delete the middle, then the rest; data intact', async function () {
      const volumeUuid = uuid();
      const [s1, s2, s3] = [uuid(), uuid(), uuid()];
      const v = await ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid, imageUuid });
      await write(v.source, 8, 1, 0x11);
      const i1 = await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s1 });
      const ref1 = await snapshotRef(v.source, 'ref1');
      await write(v.source, 9, 1, 0x22);
      await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s2 });
      const ref2 = await snapshotRef(v.source, 'ref2');
      await write(v.source, 10, 1, 0x33);
      const i3 = await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s3 });
      const ref3 = await snapshotRef(v.source, 'ref3');
      await write(v.source, 11, 1, 0x44); // live data after the last snapshot
      // the live volume keeps its disk source
      assert.deepEqual((await ps.call(S.VolumeInfoCmd, { ...psReq(), volumeUuid })).source, v.source);
      const l = await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid });
      assert.deepEqual(l.snapshots.map((s) => s.snapshotUuid).sort(), [s1, s2, s3].sort());
      assert.equal(l.snapshots.find((s) => s.snapshotUuid === s2)!.parentUuid, s1);
      assert.equal(l.snapshots.find((s) => s.snapshotUuid === s3)!.parentUuid, s2);
      assert.ok(await same(i1.installPath, ref1), 'snapshot 1 reads as taken');
      assert.ok(await same(i3.installPath, ref3), 'snapshot 3 reads as taken');

      // revert to the middle
      const rv = await ps.call(S.RevertSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s2 });
      assert.deepEqual(rv.source, v.source);
      assert.ok(await same(v.source, ref2), 'after revert the volume reads as snapshot 2');
      assert.ok(!(await read(v.source, 11, 1, 0x44)), 'live data after the snapshot is gone');
      if (l.currentUuid !== undefined) assert.equal((await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid })).currentUuid, s2);
      await write(v.source, 12, 1, 0x55);
      const refLive = await snapshotRef(v.source, 'live-after-revert');

      // delete the middle: what the others read must not change
      assert.deepEqual(await ps.call(S.DeleteSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s2 }), { deleted: true });
      const l2 = await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid });
      assert.deepEqual(l2.snapshots.map((s) => s.snapshotUuid).sort(), [s1, s3].sort());
      assert.ok(await same(v.source, refLive), 'live volume unchanged by deleting the middle snapshot');
      const after3 = l2.snapshots.find((s) => s.snapshotUuid === s3)!;
      assert.ok(await same(after3.installPath, ref3), 'snapshot 3 unchanged by deleting the middle snapshot');
      assert.ok(await same(l2.snapshots.find((s) => s.snapshotUuid === s1)!.installPath, ref1), 'snapshot 1 unchanged');
      if (l2.snapshots.find((s) => s.snapshotUuid === s3)!.parentUuid !== undefined) assert.equal(after3.parentUuid, s1);

      // revert to the (former) top, then delete it and the first one
      await ps.call(S.RevertSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s3 });
      assert.ok(await same(v.source, ref3), 'revert to snapshot 3 after its parent was deleted');
      assert.deepEqual(await ps.call(S.DeleteSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s3 }), { deleted: true });
      assert.ok(await same(v.source, ref3), 'deleting the top snapshot keeps the live data');
      assert.deepEqual(await ps.call(S.DeleteSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s1 }), { deleted: true });
      assert.ok(await same(v.source, ref3), 'deleting the bottom snapshot keeps the live data');
      assert.deepEqual((await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid })).snapshots, []);
      assert.deepEqual(await ps.call(S.DeleteSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s1 }), { deleted: false });
      await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
    });

    it('straight chain: deleting the middle and then the top snapshot merges them into their dependants', async function () {
      const volumeUuid = uuid();
      const [s1, s2, s3] = [uuid(), uuid(), uuid()];
      const v = await ps.call(S.CreateEmptyVolume, { ...psReq(), volumeUuid, size: 32 << 20 });
      await write(v.source, 0, 1, 0x01);
      const i1 = await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s1 });
      const ref1 = await snapshotRef(v.source, 'c-ref1');
      await write(v.source, 1, 1, 0x02);
      await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s2 });
      await write(v.source, 0, 1, 0x03); // overwrite s1's data in s3's layer
      await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s3 });
      const ref3 = await snapshotRef(v.source, 'c-ref3');
      await write(v.source, 2, 1, 0x04);
      const refLive = await snapshotRef(v.source, 'c-live');
      await ps.call(S.DeleteSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s2 });
      const l = await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid });
      assert.ok(await same(l.snapshots.find((s) => s.snapshotUuid === s3)!.installPath, ref3), 'snapshot 3 intact after merging the middle');
      assert.ok(await same(i1.installPath, ref1), 'snapshot 1 intact');
      assert.ok(await same(v.source, refLive));
      await ps.call(S.DeleteSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s3 });
      assert.ok(await same(v.source, refLive), 'live intact after merging the top snapshot');
      await ps.call(S.RevertSnapshot, { ...psReq(), volumeUuid, snapshotUuid: s1 });
      assert.ok(await same(v.source, ref1), 'the remaining snapshot still reverts correctly');
      await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
    });

    it('live snapshot protocol: prepare a new top, commit the renames (idempotent), abort a prepared top; a commit cut between its renames is finished on next access', async function () {
      const volumeUuid = uuid();
      const [s1, s2, s3] = [uuid(), uuid(), uuid()];
      const v = await ps.call(S.CreateEmptyVolume, { ...psReq(), volumeUuid, size: 32 << 20 });
      const req = (snapshotUuid: string) => ({ ...psReq(), volumeUuid, snapshotUuid });
      if (be.ps.type === 'ceph') {
        await assert.rejects(ps.call(S.PrepareLiveSnapshot, req(s1)), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
        await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
        return;
      }
      if (v.source.type === 'nfs') {
        // NFS through libnfs: the new top is an NFS source QEMU opens (newTopPath: its path on the server)
        await write(v.source, 0, 1, 0x61);
        const ref1 = await snapshotRef(v.source, 'live-nfs-ref1');
        const top = await ps.call(S.PrepareLiveSnapshot, req(s1));
        assert.ok(top.newTop, JSON.stringify(top));
        assert.equal(top.newTopPath, `${v.source.export.replace(/\/+$/, '')}/volumes/${volumeUuid}/next-${s1}.qcow2`);
        assert.equal(`/${top.newTop.path.replace(/^\/+/, '')}`, `/volumes/${volumeUuid}/next-${s1}.qcow2`);
        assert.deepEqual(await ps.call(S.PrepareLiveSnapshot, req(s1)), top, 'prepare is idempotent');
        const i1 = await ps.call(S.CommitLiveSnapshot, req(s1));
        assert.ok(await same(i1.installPath, ref1), 'the snapshot holds the data of the old top');
        assert.ok(await same(v.source, ref1), 'the live path reads the same through the new top');
        const l = await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid });
        assert.deepEqual([l.currentUuid, l.snapshots.map((x) => x.snapshotUuid)], [s1, [s1]]);
        const p2 = await ps.call(S.PrepareLiveSnapshot, req(s2));
        assert.ok(p2.newTop);
        assert.deepEqual(await ps.call(S.AbortLiveSnapshot, req(s2)), { deleted: true });
        assert.deepEqual((await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid })).snapshots.map((x) => x.snapshotUuid), [s1]);
        await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
        return;
      }
      assert.equal(v.source.type, 'file');
      await write(v.source, 0, 1, 0x61);
      const ref1 = await snapshotRef(v.source, 'live-ref1');
      const { newTopPath } = await ps.call(S.PrepareLiveSnapshot, req(s1));
      assert.ok(existsSync(newTopPath));
      assert.deepEqual(await ps.call(S.PrepareLiveSnapshot, req(s1)), { newTopPath }, 'prepare is idempotent');
      // (the kvmagent would switch QEMU onto newTopPath here)
      const i1 = await ps.call(S.CommitLiveSnapshot, req(s1));
      assert.deepEqual(await ps.call(S.CommitLiveSnapshot, req(s1)), i1, 'commit is idempotent');
      assert.ok(!existsSync(newTopPath));
      assert.ok(await same(i1.installPath, ref1), 'the snapshot holds the data of the old top');
      assert.ok(await same(v.source, ref1), 'the live path reads the same through the new top');
      await write(v.source, 1, 1, 0x62);
      // abort: the prepared top goes, nothing else changes
      const p2 = await ps.call(S.PrepareLiveSnapshot, req(s2));
      assert.deepEqual(await ps.call(S.AbortLiveSnapshot, req(s2)), { deleted: true });
      assert.ok(!existsSync(p2.newTopPath));
      assert.deepEqual((await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid })).snapshots.map((x) => x.snapshotUuid), [s1]);
      // a commit cut after its first rename: the next access finishes it
      const refLive = await snapshotRef(v.source, 'live-ref2');
      await ps.call(S.PrepareLiveSnapshot, req(s3));
      const live = v.source.path;
      await exec('mv', [live, join(dirname(live), `snap-${s3}.qcow2`)]);
      const l = await ps.call(S.ListSnapshots, { ...psReq(), volumeUuid });
      assert.equal(l.currentUuid, s3);
      assert.equal(l.snapshots.find((x) => x.snapshotUuid === s3)!.parentUuid, s1);
      assert.ok(await same(v.source, refLive));
      await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
    });

    it('turns a volume into a new image in the image store', async function () {
      const volumeUuid = uuid();
      const v = await ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid, imageUuid });
      await write(v.source, 20, 2, 0x66);
      const newImage = uuid();
      const info = await ps.call(S.VolumeToImage, { ...psReq(), volumeUuid, imageUuid: newImage, imageStore: imageStoreRef });
      assert.equal(info.imageUuid, newImage);
      assert.equal(info.format, 'qcow2');
      assert.ok(existsSync(info.installPath));
      const qi = JSON.parse((await exec('qemu-img', ['info', '--output=json', info.installPath])).stdout) as { 'backing-filename'?: string };
      assert.equal(qi['backing-filename'], undefined, 'flattened: no backing file');
      const t = T(v.source);
      const cmp = await exec('qemu-img', ['compare', '-f', t.format, '-F', 'qcow2', t.target, info.installPath], { okCodes: [0, 1], timeoutMs: 120_000 });
      assert.equal(cmp.code, 0, 'image content equals the volume');
      assert.deepEqual(await bs.call(S.ImageStoreImageInfo, { store, imageUuid: newImage }), info);
      await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
    });

    it('an image of a snapshot layer a QEMU still holds writable (a frozen layer under a running VM) is made all the same', async function () {
      const volumeUuid = uuid();
      const snapshotUuid = uuid();
      const v = await ps.call(S.CreateEmptyVolume, { ...psReq(), volumeUuid, size: 16 << 20 });
      if (v.source.type !== 'file') {
        // image locks are taken on local files only (Ceph and libnfs have none)
        await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
        return;
      }
      await write(v.source, 0, 1, 0x3c);
      const snap = await ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid, snapshotUuid });
      // what QEMU keeps after a second live snapshot: the layer open read-write (its write lock)
      const q = spawn('qemu-io', ['-f', 'qcow2', '-c', 'sleep 20000', snap.installPath], { stdio: 'ignore' });
      cleanup.add(() => void q.kill('SIGKILL'), 'qemu-io');
      await new Promise((r) => setTimeout(r, 700));
      const locked = await exec('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', snap.installPath, join(work, 'locked.raw')], { okCodes: [0, 1], timeoutMs: 60_000 });
      assert.equal(locked.code, 1, 'the layer is write-locked');
      const newImage = uuid();
      const info = await ps.call(S.VolumeToImage, { ...psReq(), volumeUuid, snapshotUuid, imageUuid: newImage, imageStore: imageStoreRef });
      assert.ok(await qemuRead(info.installPath, 'qcow2', 0, 1, 0x3c), 'the image holds the snapshot bytes');
      q.kill('SIGKILL');
      await new Promise((r) => q.once('exit', r));
      await ps.call(S.DeleteVolume, { ...psReq(), volumeUuid });
    });

    it('caches an ISO (read as raw) and refuses it as a root volume', async function () {
      const isoDir = join(work, 'iso.d');
      mkdirSync(isoDir, { recursive: true });
      writeFileSync(join(isoDir, 'hello.txt'), 'hello from an ISO\n');
      const iso = join(work, 'cd.iso');
      await exec('genisoimage', ['-quiet', '-o', iso, '-V', 'TSTACK', isoDir]);
      const isoUuid = uuid();
      const bi = await bs.call(S.ImageStoreDownload, { store, imageUuid: isoUuid, url: `file://${iso}` });
      assert.equal(bi.format, 'iso');
      const c = await ps.call(S.PsImageCache, { ...psReq(), imageUuid: isoUuid, imageStore: imageStoreRef });
      assert.equal(c.format, 'iso');
      assert.equal(c.source.format ?? 'raw', 'raw');
      const t = T(c.source);
      const cmp = await exec('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', t.target, iso], { okCodes: [0, 1], timeoutMs: 60_000 });
      assert.equal(cmp.code, 0, 'cached ISO equals the original');
      await assert.rejects(ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid: uuid(), imageUuid: isoUuid }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && /ISO/.test(e.message));
      assert.deepEqual(await ps.call(S.PsImageCacheDelete, { ...psReq(), imageUuid: isoUuid }), { deleted: true });
    });

    it('rejects unknown volumes and snapshots cleanly', async function () {
      await assert.rejects(ps.call(S.VolumeInfoCmd, { ...psReq(), volumeUuid: uuid() }), (e: TStackError) => e.code === 'VOLUME_NOT_FOUND');
      await assert.rejects(ps.call(S.CreateSnapshot, { ...psReq(), volumeUuid: uuid(), snapshotUuid: uuid() }), (e: TStackError) => e.code === 'VOLUME_NOT_FOUND');
      await assert.rejects(ps.call(S.CreateRootVolume, { ...psReq(), volumeUuid: uuid(), imageUuid: uuid() }), (e: TStackError) => e.code === 'IMAGE_NOT_FOUND');
    });

    it('deletes the cached image', async function () {
      assert.deepEqual(await ps.call(S.PsImageCacheDelete, { ...psReq(), imageUuid }), { deleted: true });
      assert.deepEqual(await ps.call(S.PsImageCacheDelete, { ...psReq(), imageUuid }), { deleted: false });
    });
  });
}
