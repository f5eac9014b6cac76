// Copying a local-storage volume between two hosts' storage agents (ps/volume/export on the
// source, ps/volume/import on the destination; storageagent/primary/volume-transfer.ts): two real
// agents with their own storage roots. The copy keeps the data, the snapshots and the backing
// chain; a wrong checksum or an ended ticket leaves nothing on the destination.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as S from '../../../shared/protocol/storage.js';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { makeQcow2, qemuRead, qemuWrite, startTestAgent, uuid, type TestAgent } from './helpers.js';

describe('storage agent: volume copy between hosts (local storage, cold migration)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let src: TestAgent;
  let dst: TestAgent;
  let srcPs: S.PrimaryStorageSpec & { path: string };
  let dstPs: S.PrimaryStorageSpec & { path: string };
  const img = uuid();
  const vol = uuid();
  const snap = uuid();

  before(async () => {
    src = await startTestAgent(cleanup, 'vt-src');
    dst = await startTestAgent(cleanup, 'vt-dst');
    // one local primary storage (one uuid), a different directory on each "host"
    const psUuid = uuid();
    srcPs = { type: 'local', uuid: psUuid, path: await tmpDir('vt-ps-src', cleanup) };
    dstPs = { type: 'local', uuid: psUuid, path: await tmpDir('vt-ps-dst', cleanup) };
    await src.call(S.PsInit, { ps: srcPs });
    await dst.call(S.PsInit, { ps: dstPs });
    // a cached image (pattern 0x11 in its first MiB), a root volume cloned from it, a snapshot, more data
    const cache = join(srcPs.path, 'imagecache', img, `${img}.qcow2`);
    await (await import('node:fs/promises')).mkdir(join(srcPs.path, 'imagecache', img), { recursive: true });
    await makeQcow2(cache, 16, 1, 0x11);
    await src.call(S.CreateRootVolume, { ps: srcPs, volumeUuid: vol, imageUuid: img });
    const live = join(srcPs.path, 'volumes', vol, `${vol}.qcow2`);
    await qemuWrite(live, 'qcow2', 2, 1, 0x22);
    await src.call(S.CreateSnapshot, { ps: srcPs, volumeUuid: vol, snapshotUuid: snap });
    await qemuWrite(live, 'qcow2', 4, 2, 0x33);
  });

  const from = async (): Promise<{ url: string; token: string; ticket: string; files: S.TransferFile[] }> => {
    const ex = await src.call(S.VolumeExport, { ps: srcPs, volumeUuid: vol });
    return { url: src.endpoint.url, token: src.endpoint.token, ticket: ex.ticket, files: ex.files };
  };
  const leftovers = () => readdirSync(join(dstPs.path, 'volumes')).filter((n) => n.startsWith('.import-'));

  it('exports the image cache first, then the live file and the snapshot layer, each with its size and sha256', async () => {
    const ex = await src.call(S.VolumeExport, { ps: srcPs, volumeUuid: vol });
    assert.equal(ex.size, 16 * 1024 * 1024);
    assert.equal(ex.files[0]!.rel, `imagecache/${img}/${img}.qcow2`);
    assert.deepEqual(ex.files.slice(1).map((f) => f.rel).sort(), [`volumes/${vol}/${vol}.qcow2`, `volumes/${vol}/snap-${snap}.qcow2`].sort());
    for (const f of ex.files) assert.match(f.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(await src.call(S.VolumeExportEnd, { ticket: ex.ticket }), { ended: true });
    const none = await src.call(S.VolumeExport, { ps: srcPs, volumeUuid: uuid() }).catch((e: { code?: string }) => e);
    assert.equal((none as { code?: string }).code, 'VOLUME_NOT_FOUND');
  });

  it('a tampered checksum: the import fails with CHECKSUM_MISMATCH and leaves no volume and no staging files', async () => {
    const f = await from();
    const bad = { ...f, files: f.files.map((x) => (x.rel.endsWith(`${vol}.qcow2`) ? { ...x, sha256: '0'.repeat(64) } : x)) };
    const r = await dst.call(S.VolumeImport, { ps: dstPs, volumeUuid: vol, from: bad }).catch((e: { code?: string }) => e);
    assert.equal((r as { code?: string }).code, 'CHECKSUM_MISMATCH');
    assert.equal(existsSync(join(dstPs.path, 'volumes', vol)), false);
    assert.deepEqual(leftovers(), []);
  });

  it('an ended ticket serves nothing: the import fails and leaves nothing', async () => {
    const f = await from();
    await src.call(S.VolumeExportEnd, { ticket: f.ticket });
    const r = await dst.call(S.VolumeImport, { ps: dstPs, volumeUuid: vol, from: f }).catch((e: { code?: string }) => e);
    assert.ok(r instanceof Error, 'refused');
    assert.equal(existsSync(join(dstPs.path, 'volumes', vol)), false);
    assert.deepEqual(leftovers(), []);
  });

  it('a file of another volume is refused (the destination writes only under the volume it imports)', async () => {
    const f = await from();
    const r = await dst.call(S.VolumeImport, { ps: dstPs, volumeUuid: uuid(), from: f }).catch((e: { code?: string }) => e);
    assert.equal((r as { code?: string }).code, 'INVALID_ARGUMENT');
    assert.deepEqual(leftovers(), []);
    await src.call(S.VolumeExportEnd, { ticket: f.ticket });
  });

  it('copies the volume with its snapshot and the image it is cloned from; the data reads the same; a second import replaces the first', async () => {
    for (let round = 0; round < 2; round++) {
      const f = await from();
      const info = await dst.call(S.VolumeImport, { ps: dstPs, volumeUuid: vol, from: f }, { taskId: `vt-${round}` });
      await src.call(S.VolumeExportEnd, { ticket: f.ticket });
      const live = join(dstPs.path, 'volumes', vol, `${vol}.qcow2`);
      assert.equal(info.installPath, live);
      assert.equal(info.size, 16 * 1024 * 1024);
      assert.ok(await qemuRead(live, 'qcow2', 0, 1, 0x11), 'the image’s data (through the copied image cache)');
      assert.ok(await qemuRead(live, 'qcow2', 2, 1, 0x22), 'data written before the snapshot');
      assert.ok(await qemuRead(live, 'qcow2', 4, 2, 0x33), 'data written after it');
      const snaps = await dst.call(S.ListSnapshots, { ps: dstPs, volumeUuid: vol });
      assert.deepEqual(snaps.snapshots.map((s) => s.snapshotUuid), [snap]);
      assert.deepEqual(leftovers(), []);
      const progress = dst.events.filter((e) => e.type === S.VOLUME_TRANSFER_EVENT && e.data.taskId === `vt-${round}`);
      assert.ok(progress.length > 0, 'progress events');
      assert.equal(progress.at(-1)!.data.percent, 100);
    }
    // the source is untouched: the controller frees it only after it has switched the volume
    assert.ok(await qemuRead(join(srcPs.path, 'volumes', vol, `${vol}.qcow2`), 'qcow2', 4, 2, 0x33));
  });
});
