// Ceph RBD primary storage.
//   image cache: rbd image cache-<img> (raw) with protected snapshot @base
//   root volume: rbd clone cache-<img>@base -> vol-<vol> (copy-on-write, O(1))
//   data volume: vol-<vol>;  snapshots: vol-<vol>@snap-<snap> (rbd snap create/rollback/rm)
import { rm } from 'node:fs/promises';
import { TStackError } from '../../shared/errors.js';
import type { TaskContext } from '../../shared/agent/server.js';
import type { Capacity, SnapshotInfo, VolumeInfo, VolumeSource } from '../../shared/protocol/storage.js';
import * as qimg from '../qemu-img.js';
import { Ceph, type CephConnSpec } from '../ceph.js';
import { checkUuid } from '../paths.js';
import type { AgentContext } from '../context.js';
import type { CachedImage, ImageRef, PrimaryBackend } from './types.js';
import { pullImage, remoteImageInfo } from './transfer.js';

const BASE_SNAP = 'base';

export class CephBackend implements PrimaryBackend {
  readonly ceph: Ceph;
  constructor(
    spec: CephConnSpec,
    private readonly ctx: AgentContext,
  ) {
    this.ceph = new Ceph(spec);
  }
  private cacheName(imageUuid: string): string {
    return `cache-${checkUuid('imageUuid', imageUuid)}`;
  }
  private volName(volumeUuid: string): string {
    return `vol-${checkUuid('volumeUuid', volumeUuid)}`;
  }
  private snapName(snapshotUuid: string): string {
    return `snap-${checkUuid('snapshotUuid', snapshotUuid)}`;
  }
  private async source(image: string): Promise<VolumeSource> {
    const s: VolumeSource = { type: 'rbd', pool: this.ceph.pool, image, monitors: await this.ceph.monitors(), user: this.ceph.user, format: 'raw' };
    if (this.ceph.spec.secretUuid) s.secretUuid = this.ceph.spec.secretUuid;
    return s;
  }

  async init(): Promise<Capacity> {
    const cap = await this.ceph.capacity(); // also proves the pool exists
    if (this.ceph.spec.secretUuid) await this.ceph.ensureLibvirtSecret(this.ceph.spec.secretUuid);
    return cap;
  }

  capacity(): Promise<Capacity> {
    return this.ceph.capacity();
  }

  async cacheImage(ref: ImageRef, t: TaskContext): Promise<CachedImage> {
    const name = this.cacheName(ref.imageUuid);
    const snaps = (await this.ceph.exists(name)) ? await this.ceph.snaps(name) : undefined;
    if (snaps?.some((s) => s.name === BASE_SNAP)) return this.describeCache(ref.imageUuid, true);
    if (snaps) await this.ceph.remove(name); // a half-made import from an earlier crash
    const tmp = await this.ctx.tmpFile(`pull-${ref.imageUuid}`);
    try {
      const remote = await remoteImageInfo(ref, t.signal);
      const inCluster = /^ceph:\/\/([A-Za-z0-9][A-Za-z0-9_.-]*)\/(img-[0-9a-fA-F-]{32,36})$/.exec(remote.installPath);
      let format: string;
      if (inCluster && remote.cephFsid && remote.cephFsid === (await this.ceph.fsid())) {
        // the image store is a pool of this very cluster: copy inside the cluster, no download
        t.log.info({ imageUuid: ref.imageUuid, from: remote.installPath }, 'image cache: rbd copy inside the cluster');
        await this.ceph.rbd(['cp', '--no-progress', `${inCluster[1]}/${inCluster[2]}`, this.ceph.spec_(name)], { signal: t.signal, timeoutMs: 6 * 3600_000 });
        const size = (await this.ceph.info(name)).size;
        if (size !== remote.virtualSize) throw new TStackError('STORAGE_ERROR', `rbd copy of ${remote.installPath} has ${size} bytes, the store says ${remote.virtualSize}`);
        format = remote.format;
      } else {
        const { checked } = await pullImage(this.ctx, ref, tmp, t);
        // clones need raw RBD data: qemu-img converts qcow2 on the way in
        await qimg.convert(tmp, this.ceph.qemu(name), { srcFormat: checked.format === 'qcow2' ? 'qcow2' : 'raw', dstFormat: 'raw', signal: t.signal });
        format = checked.format;
      }
      await this.ceph.rbd(['image-meta', 'set', this.ceph.spec_(name), 'tstack.format', format === 'iso' ? 'iso' : 'raw']);
      await this.ceph.rbd(['snap', 'create', this.ceph.spec_(name, BASE_SNAP)]);
      await this.ceph.rbd(['snap', 'protect', this.ceph.spec_(name, BASE_SNAP)]);
    } catch (e) {
      await this.ceph.remove(name).catch(() => undefined);
      throw e;
    } finally {
      await rm(tmp, { force: true });
    }
    return this.describeCache(ref.imageUuid, false);
  }

  private async describeCache(imageUuid: string, already: boolean): Promise<CachedImage> {
    const name = this.cacheName(imageUuid);
    const i = await this.ceph.info(name);
    const fmt = (await this.ceph.rbd(['image-meta', 'get', this.ceph.spec_(name), 'tstack.format']).catch(() => 'raw')).trim();
    return {
      imageUuid: checkUuid('imageUuid', imageUuid),
      source: await this.source(name),
      installPath: `ceph://${this.ceph.pool}/${name}`,
      format: fmt === 'iso' ? 'iso' : 'raw',
      virtualSize: i.size,
      actualSize: await this.ceph.used(name),
      alreadyCached: already,
    };
  }

  async deleteCachedImage(imageUuid: string): Promise<boolean> {
    const name = this.cacheName(imageUuid);
    if (!(await this.ceph.exists(name))) return false;
    const children = await this.ceph.rbd(['children', this.ceph.spec_(name, BASE_SNAP)]).catch(() => '');
    if (children.trim()) throw new TStackError('CONFLICT', `cached image ${imageUuid} still has clones: ${children.trim().split('\n').slice(0, 5).join(', ')}`);
    return this.ceph.remove(name);
  }

  async info(volumeUuid: string): Promise<VolumeInfo> {
    const name = this.volName(volumeUuid);
    const i = await this.ceph.info(name).catch((e: TStackError) => {
      if (e.code === 'VOLUME_NOT_FOUND') throw new TStackError('VOLUME_NOT_FOUND', `volume ${volumeUuid} does not exist in ceph pool ${this.ceph.pool}`);
      throw e;
    });
    return {
      volumeUuid: checkUuid('volumeUuid', volumeUuid),
      source: await this.source(name),
      installPath: `ceph://${this.ceph.pool}/${name}`,
      format: 'raw',
      size: i.size,
      actualSize: await this.ceph.used(name),
    };
  }

  private async refuseExisting(volumeUuid: string): Promise<void> {
    if (await this.ceph.exists(this.volName(volumeUuid))) throw new TStackError('CONFLICT', `volume ${volumeUuid} already exists`);
  }

  async createRoot(volumeUuid: string, imageUuid: string, size: number | undefined, t: TaskContext): Promise<VolumeInfo> {
    const cache = this.cacheName(imageUuid);
    if (!(await this.ceph.exists(cache))) throw new TStackError('IMAGE_NOT_FOUND', `image ${imageUuid} is not cached in ceph pool ${this.ceph.pool}; run ps/image-cache first`);
    const c = await this.describeCache(imageUuid, true);
    if (c.format === 'iso') throw new TStackError('INVALID_ARGUMENT', `image ${imageUuid} is an ISO; a root volume needs a disk image`, { field: 'imageUuid' });
    if (size !== undefined && size < c.virtualSize) throw new TStackError('INVALID_ARGUMENT', `size ${size} is smaller than the image's virtual size ${c.virtualSize}`, { field: 'size' });
    await this.refuseExisting(volumeUuid);
    const name = this.volName(volumeUuid);
    await this.ceph.rbd(['clone', this.ceph.spec_(cache, BASE_SNAP), this.ceph.spec_(name)], { signal: t.signal });
    if (size !== undefined && size > c.virtualSize) {
      await qimg.resize(this.ceph.qemu(name), size, { format: 'raw', signal: t.signal }).catch(async (e) => {
        await this.ceph.remove(name).catch(() => undefined);
        throw e;
      });
    }
    return this.info(volumeUuid);
  }

  async flatten(volumeUuid: string, t: TaskContext): Promise<VolumeInfo> {
    const name = this.volName(volumeUuid);
    if ((await this.ceph.snaps(name)).length > 0) throw new TStackError('CONFLICT', `volume ${volumeUuid} has snapshots; only a volume without snapshots is flattened`);
    if ((await this.ceph.info(name)).parent) await this.ceph.rbd(['flatten', '--no-progress', this.ceph.spec_(name)], { signal: t.signal, timeoutMs: 6 * 3600_000 });
    return this.info(volumeUuid);
  }

  async createEmpty(volumeUuid: string, size: number, t: TaskContext): Promise<VolumeInfo> {
    await this.refuseExisting(volumeUuid);
    await qimg.create(this.ceph.qemu(this.volName(volumeUuid)), 'raw', { size, signal: t.signal });
    return this.info(volumeUuid);
  }

  async resize(volumeUuid: string, size: number, t: TaskContext): Promise<VolumeInfo> {
    const v = await this.info(volumeUuid);
    if (size < v.size) throw new TStackError('INVALID_ARGUMENT', `shrinking a volume is not supported (${v.size} -> ${size})`, { field: 'size' });
    if (size === v.size) return v;
    await qimg.resize(this.ceph.qemu(this.volName(volumeUuid)), size, { format: 'raw', signal: t.signal });
    return this.info(volumeUuid);
  }

  async deleteVolume(volumeUuid: string, t: TaskContext): Promise<boolean> {
    return this.ceph.remove(this.volName(volumeUuid), t.signal);
  }

  private async snapInfos(volumeUuid: string): Promise<SnapshotInfo[]> {
    const name = this.volName(volumeUuid);
    const snaps = (await this.ceph.snaps(name)).filter((s) => /^snap-/.test(s.name)).sort((a, b) => a.id - b.id);
    return snaps.map((s, i) => {
      const info: SnapshotInfo = {
        snapshotUuid: s.name.slice(5),
        volumeUuid: checkUuid('volumeUuid', volumeUuid),
        size: s.size,
        actualSize: 0,
        installPath: `ceph://${this.ceph.pool}/${name}@${s.name}`,
      };
      if (i > 0) info.parentUuid = snaps[i - 1]!.name.slice(5);
      return info;
    });
  }

  async createSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<SnapshotInfo> {
    await this.info(volumeUuid);
    const name = this.volName(volumeUuid);
    const sn = this.snapName(snapshotUuid);
    if ((await this.ceph.snaps(name)).some((s) => s.name === sn)) throw new TStackError('CONFLICT', `snapshot ${snapshotUuid} already exists`);
    await this.ceph.rbd(['snap', 'create', this.ceph.spec_(name, sn)], { signal: t.signal });
    const s = (await this.snapInfos(volumeUuid)).find((x) => x.snapshotUuid === checkUuid('snapshotUuid', snapshotUuid));
    if (!s) throw new TStackError('STORAGE_ERROR', `snapshot ${sn} vanished right after creation`);
    return s;
  }

  async listSnapshots(volumeUuid: string): Promise<{ snapshots: SnapshotInfo[] }> {
    await this.info(volumeUuid);
    return { snapshots: await this.snapInfos(volumeUuid) };
  }

  private async requireSnap(volumeUuid: string, snapshotUuid: string): Promise<string> {
    await this.info(volumeUuid);
    const sn = this.snapName(snapshotUuid);
    if (!(await this.ceph.snaps(this.volName(volumeUuid))).some((s) => s.name === sn)) {
      throw new TStackError('NOT_FOUND', `snapshot ${snapshotUuid} of volume ${volumeUuid} does not exist`);
    }
    return sn;
  }

  async revertSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<VolumeInfo> {
    const sn = await this.requireSnap(volumeUuid, snapshotUuid);
    await this.ceph.rbd(['snap', 'rollback', '--no-progress', this.ceph.spec_(this.volName(volumeUuid), sn)], { signal: t.signal, timeoutMs: 3600_000 });
    return this.info(volumeUuid);
  }

  /** RBD snapshots are not layered files: removing one never changes the others. */
  async deleteSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<boolean> {
    const name = this.volName(volumeUuid);
    if (!(await this.ceph.exists(name))) return false;
    const sn = this.snapName(snapshotUuid);
    const s = (await this.ceph.snaps(name)).find((x) => x.name === sn);
    if (!s) return false;
    if (s.protected === 'true' || s.protected === true) await this.ceph.rbd(['snap', 'unprotect', this.ceph.spec_(name, sn)]);
    await this.ceph.rbd(['snap', 'rm', '--no-progress', this.ceph.spec_(name, sn)], { signal: t.signal });
    return true;
  }

  async flattenTo(volumeUuid: string, snapshotUuid: string | undefined, dest: string, format: 'qcow2' | 'raw', t: TaskContext): Promise<void> {
    const sn = snapshotUuid ? await this.requireSnap(volumeUuid, snapshotUuid) : (await this.info(volumeUuid), undefined);
    await qimg.convert(this.ceph.qemu(this.volName(volumeUuid), sn), dest, { srcFormat: 'raw', dstFormat: format, signal: t.signal });
  }
}
