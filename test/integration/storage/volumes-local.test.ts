// The volume suite on local and shared-mount-point primary storage; pull verification.
import assert from 'node:assert/strict';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, readdirSync, renameSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../../shared/exec.js';
import type { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { makeQcow2, startTestAgent, uuid } from './helpers.js';
import { volumeSuite } from './volume-suite.js';
import * as S from '../../../shared/protocol/storage.js';

const fileTarget = (x: S.VolumeSource | string): { target: string; format: string } => {
  if (typeof x === 'string') return { target: x, format: x.endsWith('.raw') ? 'raw' : 'qcow2' };
  if (x.type !== 'file') throw new Error(`unexpected source ${x.type}`);
  return { target: x.path, format: x.format };
};

volumeSuite('local', async (cleanup) => ({
  ps: { type: 'local', uuid: uuid(), path: await tmpDir('ps-local', cleanup) },
  target: fileTarget,
}));

// A shared mount point: the storage directory is mounted (bind mount standing in for NFS/GlusterFS)
// at the path given to the agent; the original directory plays the other host's view.
volumeSuite('sharedmountpoint', async (cleanup) => {
  const shared = await tmpDir('smp-shared', cleanup);
  const mnt = await tmpDir('smp-mnt', cleanup);
  await exec('mount', ['--bind', shared, mnt]);
  cleanup.add(() => exec('umount', [mnt]), `umount ${mnt}`);
  return {
    ps: { type: 'sharedmountpoint', uuid: uuid(), path: mnt },
    target: fileTarget,
    peerSees: (rel: string) => existsSync(join(shared, rel)),
  };
});

describe('storage: primary storage verifies what it pulls', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();

  it('refuses an image whose bytes changed in the store since download (sha256), caching nothing', async function () {
    const agent = await startTestAgent(cleanup, 'verify');
    const src = await tmpDir('verify-src', cleanup);
    const store: S.ImageStoreSpec = { type: 'dir', uuid: uuid(), path: await tmpDir('verify-store', cleanup) };
    const ps: S.PrimaryStorageSpec = { type: 'local', uuid: uuid(), path: await tmpDir('verify-ps', cleanup) };
    await agent.call(S.ImageStoreInit, { store });
    await agent.call(S.PsInit, { ps });
    await makeQcow2(join(src, 'a.qcow2'), 16, 2, 0x42);
    const imageUuid = uuid();
    const info = await agent.call(S.ImageStoreDownload, { store, imageUuid, url: `file://${join(src, 'a.qcow2')}` });
    assert.match(info.sha256 ?? '', /^[0-9a-f]{64}$/);
    // flip one byte of guest data inside the stored file (bit rot, tampering)
    const fd = openSync(info.installPath, 'r+');
    const st = fstatSync(fd);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, st.size - 4096);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, st.size - 4096);
    closeSync(fd);
    await assert.rejects(
      agent.call(S.PsImageCache, { ps, imageUuid, imageStore: { url: agent.endpoint.url, token: agent.endpoint.token } }),
      (e: TStackError) => e.code === 'CHECKSUM_MISMATCH',
    );
    assert.deepEqual(readdirSync(join(ps.type === 'local' ? ps.path : '/nonexistent', 'imagecache')), [], 'nothing cached, no empty directory');
  });
});

describe('storage: file snapshots survive a crash mid-way', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();

  it('finishes a snapshot interrupted between its two renames', async function () {
    const agent = await startTestAgent(cleanup, 'crash');
    const root = await tmpDir('crash-ps', cleanup);
    const ps: S.PrimaryStorageSpec = { type: 'local', uuid: uuid(), path: root };
    await agent.call(S.PsInit, { ps });
    const volumeUuid = uuid();
    const v = await agent.call(S.CreateEmptyVolume, { ps, volumeUuid, size: 16 << 20 });
    await exec('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x61 0 1M', v.installPath]);
    // the state createSnapshot leaves if the agent dies after moving the live file
    const snapUuid = uuid();
    const dir = join(root, 'volumes', volumeUuid);
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', `snap-${snapUuid}.qcow2`, '-F', 'qcow2', `${v.installPath}.new`, String(16 << 20)]);
    renameSync(v.installPath, join(dir, `snap-${snapUuid}.qcow2`));
    const info = await agent.call(S.VolumeInfoCmd, { ps, volumeUuid });
    assert.equal(info.installPath, v.installPath);
    assert.equal((await exec('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x61 0 1M', v.installPath])).code, 0);
    const l = await agent.call(S.ListSnapshots, { ps, volumeUuid });
    assert.deepEqual(l.snapshots.map((s) => s.snapshotUuid), [snapUuid]);
    assert.equal(l.currentUuid, snapUuid);
    assert.ok(!existsSync(`${v.installPath}.new`));
  });

  it('removes stale staging files of a killed pull, but not fresh ones', async function () {
    const agent = await startTestAgent(cleanup, 'stale');
    const root = await tmpDir('stale-ps', cleanup);
    const ps: S.PrimaryStorageSpec = { type: 'local', uuid: uuid(), path: root };
    const store: S.ImageStoreSpec = { type: 'dir', uuid: uuid(), path: await tmpDir('stale-store', cleanup) };
    await agent.call(S.PsInit, { ps });
    await agent.call(S.ImageStoreInit, { store });
    const src = join(await tmpDir('stale-src', cleanup), 'a.qcow2');
    await makeQcow2(src, 8, 1);
    const imageUuid = uuid();
    await agent.call(S.ImageStoreDownload, { store, imageUuid, url: `file://${src}` });
    const dir = join(root, 'imagecache', imageUuid);
    mkdirSync(dir, { recursive: true });
    const stale = join(dir, `${imageUuid}.img.dead0001.part`);
    const fresh = join(dir, `${imageUuid}.img.live0001.part`);
    writeFileSync(stale, 'x');
    writeFileSync(fresh, 'y');
    const old = new Date(Date.now() - 2 * 3600_000);
    utimesSync(stale, old, old);
    const c = await agent.call(S.PsImageCache, { ps, imageUuid, imageStore: { url: agent.endpoint.url, token: agent.endpoint.token } });
    assert.equal(c.alreadyCached, false);
    assert.ok(!existsSync(stale), 'stale staging file removed');
    assert.ok(existsSync(fresh), 'a fresh one may be another host pulling: kept');
  });
});
