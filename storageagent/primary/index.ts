// ps/* command handlers: pick the backend from the descriptor's type and run the operation in
// the volume's (or image's) serial queue.
import { rm } from 'node:fs/promises';
import { TStackError } from '../../shared/errors.js';
import * as S from '../../shared/protocol/storage.js';
import type { PrimaryStorageSpec } from '../../shared/protocol/storage.js';
import type { AgentContext } from '../context.js';
import { checkUuid } from '../paths.js';
import { FileBackend } from './file.js';
import { LocalFs } from './fs.js';
import { CephBackend } from './ceph.js';
import { openNfs } from './nfs.js';
import type { PrimaryBackend } from './types.js';
import { uploadImage } from './transfer.js';

export async function backendFor(ps: PrimaryStorageSpec, ctx: AgentContext): Promise<PrimaryBackend> {
  checkUuid('ps.uuid', ps.uuid);
  switch (ps.type) {
    case 'local':
    case 'sharedmountpoint':
      return new FileBackend(new LocalFs(ps.path), ctx);
    case 'nfs':
      return openNfs(ps, ctx);
    case 'ceph': {
      const { type: _t, uuid: _u, ...conn } = ps;
      return new CephBackend(conn, ctx);
    }
  }
}

const volKey = (r: { ps: { uuid: string }; volumeUuid: string }): string => S.volumeQueueKey(r);
const imgKey = (r: { ps: { uuid: string }; imageUuid: string }): string => `ps:${r.ps.uuid.toLowerCase()}:image:${r.imageUuid.toLowerCase()}`;

export function registerPrimaryStorage(ctx: AgentContext): void {
  const { server } = ctx;
  const be = (ps: PrimaryStorageSpec): Promise<PrimaryBackend> => backendFor(ps, ctx);

  server.handle(S.PsInit, async (req) => (await be(req.ps)).init());
  server.handle(S.PsCapacity, async (req) => (await be(req.ps)).capacity());

  // one queue per (storage, image): concurrent requests for one image download it once;
  // the later ones find it cached
  server.handle(
    S.PsImageCache,
    async (req, t) => {
      const ref: Parameters<PrimaryBackend['cacheImage']>[0] = { imageUuid: req.imageUuid, imageStore: req.imageStore };
      if (req.md5) ref.md5 = req.md5;
      if (req.sha256) ref.sha256 = req.sha256;
      return (await be(req.ps)).cacheImage(ref, t);
    },
    { key: imgKey },
  );
  server.handle(S.PsImageCacheDelete, async (req) => ({ deleted: await (await be(req.ps)).deleteCachedImage(req.imageUuid) }), { key: imgKey });

  server.handle(S.CreateRootVolume, async (req, t) => (await be(req.ps)).createRoot(req.volumeUuid, req.imageUuid, req.size, t), { key: volKey });
  server.handle(S.CreateEmptyVolume, async (req, t) => (await be(req.ps)).createEmpty(req.volumeUuid, req.size, t), { key: volKey });
  server.handle(S.ResizeVolume, async (req, t) => (await be(req.ps)).resize(req.volumeUuid, req.size, t), { key: volKey });
  server.handle(S.FlattenVolume, async (req, t) => (await be(req.ps)).flatten(req.volumeUuid, t), { key: volKey });
  server.handle(S.VolumeInfoCmd, async (req) => (await be(req.ps)).info(req.volumeUuid));
  server.handle(S.DeleteVolume, async (req, t) => ({ deleted: await (await be(req.ps)).deleteVolume(req.volumeUuid, t) }), { key: volKey });

  server.handle(S.CreateSnapshot, async (req, t) => (await be(req.ps)).createSnapshot(req.volumeUuid, req.snapshotUuid, t), { key: volKey });
  server.handle(S.ListSnapshots, async (req) => (await be(req.ps)).listSnapshots(req.volumeUuid));
  server.handle(S.RevertSnapshot, async (req, t) => (await be(req.ps)).revertSnapshot(req.volumeUuid, req.snapshotUuid, t), { key: volKey });
  server.handle(S.DeleteSnapshot, async (req, t) => ({ deleted: await (await be(req.ps)).deleteSnapshot(req.volumeUuid, req.snapshotUuid, t) }), { key: volKey });

  const live = async (ps: PrimaryStorageSpec): Promise<Required<Pick<PrimaryBackend, 'prepareLive' | 'commitLive' | 'abortLive'>>> => {
    const b = await be(ps);
    if (!b.prepareLive || !b.commitLive || !b.abortLive) throw new TStackError('INVALID_ARGUMENT', `${ps.type} primary storage snapshots a running VM's volume with ps/snapshot/create`, { field: 'ps.type' });
    return { prepareLive: b.prepareLive.bind(b), commitLive: b.commitLive.bind(b), abortLive: b.abortLive.bind(b) };
  };
  server.handle(S.PrepareLiveSnapshot, async (req, t) => (await live(req.ps)).prepareLive(req.volumeUuid, req.snapshotUuid, t), { key: volKey });
  server.handle(S.CommitLiveSnapshot, async (req) => (await live(req.ps)).commitLive(req.volumeUuid, req.snapshotUuid), { key: volKey });
  server.handle(S.AbortLiveSnapshot, async (req) => ({ deleted: await (await live(req.ps)).abortLive(req.volumeUuid, req.snapshotUuid) }), { key: volKey });

  server.handle(
    S.VolumeToImage,
    async (req, t) => {
      const b = await be(req.ps);
      const format = req.format ?? 'qcow2';
      const tmp = await ctx.tmpFile(`to-image-${req.imageUuid}`);
      try {
        await b.flattenTo(req.volumeUuid, req.snapshotUuid, tmp, format, t);
        const target: { url: string; token: string; storeUuid?: string } = { url: req.imageStore.url, token: req.imageStore.token };
        if (req.imageStore.storeUuid) target.storeUuid = req.imageStore.storeUuid;
        return await uploadImage(tmp, target, req.imageUuid, format, t.signal);
      } catch (e) {
        if (t.signal.aborted && !(e instanceof TStackError)) throw new TStackError('CANCELLED', 'volume to image cancelled');
        throw e;
      } finally {
        await rm(tmp, { force: true });
      }
    },
    { key: volKey },
  );
}
