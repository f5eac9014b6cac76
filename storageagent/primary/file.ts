// File-based primary storage (local, shared mount point, NFS): qcow2 files.
//   image cache: imagecache/<img>/<img>.<qcow2|raw|iso>, pulled once, read-only afterwards
//   root volume: volumes/<vol>/<vol>.qcow2, a qcow2 overlay whose backing file is the cached image
//   snapshots:   volumes/<vol>/snap-<snap>.qcow2 beside it; taking one freezes the live file
//                as the snapshot and puts a fresh overlay on top (the live path never changes)
//   live snapshots (the VM runs): prepare writes volumes/<vol>/next-<snap>.qcow2 (backing name
//                snap-<snap>.qcow2), the kvmagent switches QEMU onto it (external disk-only
//                snapshot, reusing it), commit renames live → snap-<snap> and next → live.
//                QEMU holds its files open, so the renames do not disturb it; the next start
//                opens the live path and finds the same chain by the backing names.
// Backing-file names are relative on local/shared-mount-point storage (so a shared mount point
// may be mounted anywhere) and absolute nfs:// URLs on libnfs-accessed NFS (QEMU's nfs driver
// cannot resolve relative names); PsFs.backingRef decides. A URL may carry libnfs options
// (?uid=0&gid=0), so backing names are compared without their query.
import { basename } from 'node:path';
import { rm } from 'node:fs/promises';
import { TStackError } from '../../shared/errors.js';
import type { TaskContext } from '../../shared/agent/server.js';
import type { Capacity, LiveTop, SnapshotInfo, VolumeInfo } from '../../shared/protocol/storage.js';
import * as qimg from '../qemu-img.js';
import { NEXT_TOP_FILE_RE, SNAP_FILE_RE, checkUuid } from '../paths.js';
import type { AgentContext } from '../context.js';
import type { PsFs } from './fs.js';
import type { CachedImage, ImageRef, PrimaryBackend } from './types.js';
import { nfsServerPath } from '../../shared/protocol/kvm.js';
import { pullImage } from './transfer.js';

const IMAGE_EXTS = ['qcow2', 'raw', 'iso'] as const;
/** staging files older than this are leftovers of a killed agent */
export const STALE_STAGING_MS = 3600_000;

/** A backing reference without its URL query (libnfs options); local names have none. */
const withoutQuery = (ref: string): string => ref.replace(/\?.*$/, '');
/** The snapshot a backing reference names (snap-<uuid>.qcow2), if it names one. */
const snapOf = (ref: string | undefined): RegExpExecArray | null => (ref ? SNAP_FILE_RE.exec(basename(withoutQuery(ref))) : null);

export class FileBackend implements PrimaryBackend {
  constructor(
    readonly fs: PsFs,
    private readonly ctx: AgentContext,
    private readonly extra: { access?: string } = {},
  ) {}
  private get L() {
    return this.fs.layout;
  }

  async init(): Promise<Capacity & { access?: string }> {
    await this.fs.mkdirp('imagecache');
    await this.fs.mkdirp('volumes');
    return { ...(await this.capacity()), ...this.extra };
  }

  async capacity(): Promise<Capacity> {
    const s = await this.fs.statfs();
    return { totalCapacity: s.total, availableCapacity: s.available, usedByTstack: await this.fs.usage() };
  }

  private async findCached(imageUuid: string): Promise<{ rel: string; ext: (typeof IMAGE_EXTS)[number] } | undefined> {
    const names = new Set(await this.fs.list(this.L.imageDirRel(imageUuid)));
    const u = checkUuid('imageUuid', imageUuid);
    for (const ext of IMAGE_EXTS) if (names.has(`${u}.${ext}`)) return { rel: this.L.imageFileRel(u, ext), ext };
    return undefined;
  }

  private async describeCached(imageUuid: string, c: { rel: string; ext: (typeof IMAGE_EXTS)[number] }, already: boolean): Promise<CachedImage> {
    const fmt = c.ext === 'qcow2' ? 'qcow2' : 'raw';
    const i = await qimg.info(this.fs.target(c.rel), { format: fmt });
    return {
      imageUuid: checkUuid('imageUuid', imageUuid),
      source: this.fs.source(c.rel, fmt),
      installPath: this.fs.installPath(c.rel),
      format: c.ext,
      virtualSize: i.virtualSize,
      actualSize: await this.fs.allocated(c.rel).catch(() => i.actualSize),
      alreadyCached: already,
    };
  }

  async cacheImage(ref: ImageRef, t: TaskContext): Promise<CachedImage> {
    const have = await this.findCached(ref.imageUuid);
    if (have) return this.describeCached(ref.imageUuid, have, true);
    await this.fs.mkdirp(this.L.imageDirRel(ref.imageUuid));
    await this.removeStaleStaging(ref.imageUuid);
    const provisional = this.L.imageFileRel(ref.imageUuid, 'img');
    const staging = await this.fs.stagingFor(provisional);
    try {
      const { checked } = await pullImage(this.ctx, ref, staging, t);
      const rel = this.L.imageFileRel(ref.imageUuid, checked.format);
      await this.fs.commitStaged(staging, rel, t.signal);
      t.log.info({ imageUuid: ref.imageUuid, format: checked.format }, 'image cached');
      return this.describeCached(ref.imageUuid, { rel, ext: checked.format }, false);
    } catch (e) {
      await rm(staging, { force: true });
      // leave no empty directory behind (but never touch another host's transfer in progress)
      const dir = this.L.imageDirRel(ref.imageUuid);
      if ((await this.fs.list(dir).catch(() => ['?'])).length === 0) await this.fs.rmTree(dir).catch(() => undefined);
      throw e;
    } finally {
      await rm(staging, { force: true });
    }
  }

  /**
   * Staging files (`*.part`) left by an agent killed mid-pull. Only old ones go: on shared
   * storage another host may be pulling the same image right now.
   */
  private async removeStaleStaging(imageUuid: string, maxAgeMs = STALE_STAGING_MS): Promise<void> {
    const dir = this.L.imageDirRel(imageUuid);
    for (const n of await this.fs.list(dir)) {
      if (!n.endsWith('.part')) continue;
      const rel = `${dir}/${n}`;
      const m = await this.fs.mtimeMs(rel).catch(() => Date.now());
      if (Date.now() - m > maxAgeMs) await this.fs.rm(rel).catch(() => undefined);
    }
  }

  async deleteCachedImage(imageUuid: string): Promise<boolean> {
    const had = (await this.findCached(imageUuid)) !== undefined;
    await this.fs.rmTree(this.L.imageDirRel(imageUuid));
    return had;
  }

  /** Finish a snapshot that was interrupted between its two renames (see createSnapshot, commitLive). */
  private async recover(volumeUuid: string): Promise<void> {
    const rel = this.L.volumeFileRel(volumeUuid);
    if (await this.fs.exists(rel)) return;
    const nexts = (await this.fs.list(this.L.volumeDirRel(volumeUuid))).filter((n) => NEXT_TOP_FILE_RE.test(n)).map((n) => `${this.L.volumeDirRel(volumeUuid)}/${n}`);
    for (const cand of [`${rel}.new`, ...nexts]) {
      if (!(await this.fs.exists(cand))) continue;
      const i = await qimg.info(this.fs.target(cand), { format: 'qcow2' }).catch(() => undefined);
      const m = snapOf(i?.backingFile);
      if (m && (await this.fs.exists(this.snapRel(volumeUuid, m[1]!)))) {
        await this.fs.rename(cand, rel);
        return;
      }
    }
  }

  private async volumeInfo(volumeUuid: string): Promise<VolumeInfo> {
    const rel = this.L.volumeFileRel(volumeUuid);
    await this.recover(volumeUuid);
    if (!(await this.fs.exists(rel))) throw new TStackError('VOLUME_NOT_FOUND', `volume ${volumeUuid} does not exist on primary storage ${this.L.root}`);
    const i = await qimg.info(this.fs.target(rel), { format: 'qcow2' });
    return {
      volumeUuid: checkUuid('volumeUuid', volumeUuid),
      source: this.fs.source(rel, 'qcow2'),
      installPath: this.fs.installPath(rel),
      format: 'qcow2',
      size: i.virtualSize,
      actualSize: await this.fs.allocated(rel).catch(() => i.actualSize),
    };
  }

  info(volumeUuid: string): Promise<VolumeInfo> {
    return this.volumeInfo(volumeUuid);
  }

  private async refuseExisting(volumeUuid: string): Promise<void> {
    if (await this.fs.exists(this.L.volumeFileRel(volumeUuid))) throw new TStackError('CONFLICT', `volume ${volumeUuid} already exists`);
  }

  async createRoot(volumeUuid: string, imageUuid: string, size: number | undefined, t: TaskContext): Promise<VolumeInfo> {
    const c = await this.findCached(imageUuid);
    if (!c) throw new TStackError('IMAGE_NOT_FOUND', `image ${imageUuid} is not cached on this primary storage; run ps/image-cache first`);
    if (c.ext === 'iso') throw new TStackError('INVALID_ARGUMENT', `image ${imageUuid} is an ISO; a root volume needs a disk image (create an empty volume and boot from the ISO)`, { field: 'imageUuid' });
    await this.refuseExisting(volumeUuid);
    const fmt = c.ext === 'qcow2' ? 'qcow2' : 'raw';
    const img = await qimg.info(this.fs.target(c.rel), { format: fmt, signal: t.signal });
    if (size !== undefined && size < img.virtualSize) {
      throw new TStackError('INVALID_ARGUMENT', `size ${size} is smaller than the image's virtual size ${img.virtualSize}`, { field: 'size' });
    }
    const volDir = this.L.volumeDirRel(volumeUuid);
    const rel = this.L.volumeFileRel(volumeUuid);
    await this.fs.mkdirp(volDir);
    try {
      await qimg.create(this.fs.target(rel), 'qcow2', { backing: this.fs.backingRef(rel, c.rel), backingFormat: fmt, size: size ?? img.virtualSize, signal: t.signal });
    } catch (e) {
      await this.fs.rmTree(volDir);
      throw e;
    }
    return this.volumeInfo(volumeUuid);
  }

  async createEmpty(volumeUuid: string, size: number, t: TaskContext): Promise<VolumeInfo> {
    await this.refuseExisting(volumeUuid);
    const volDir = this.L.volumeDirRel(volumeUuid);
    await this.fs.mkdirp(volDir);
    try {
      await qimg.create(this.fs.target(this.L.volumeFileRel(volumeUuid)), 'qcow2', { size, signal: t.signal });
    } catch (e) {
      await this.fs.rmTree(volDir);
      throw e;
    }
    return this.volumeInfo(volumeUuid);
  }

  async resize(volumeUuid: string, size: number, t: TaskContext): Promise<VolumeInfo> {
    const v = await this.volumeInfo(volumeUuid);
    if (size < v.size) throw new TStackError('INVALID_ARGUMENT', `shrinking a volume is not supported (${v.size} -> ${size})`, { field: 'size' });
    if (size === v.size) return v;
    await qimg.resize(this.fs.target(this.L.volumeFileRel(volumeUuid)), size, { format: 'qcow2', signal: t.signal });
    return this.volumeInfo(volumeUuid);
  }

  async flatten(volumeUuid: string, t: TaskContext): Promise<VolumeInfo> {
    if ((await this.listSnapshots(volumeUuid)).snapshots.length > 0) throw new TStackError('CONFLICT', `volume ${volumeUuid} has snapshots; only a volume without snapshots is flattened`);
    // safe rebase onto nothing: every cluster the image provides is copied into the volume
    await qimg.rebase(this.fs.target(this.L.volumeFileRel(volumeUuid)), undefined, { signal: t.signal });
    return this.volumeInfo(volumeUuid);
  }

  async deleteVolume(volumeUuid: string): Promise<boolean> {
    const dir = this.L.volumeDirRel(volumeUuid);
    const had = (await this.fs.list(dir)).length > 0;
    await this.fs.rmTree(dir);
    return had;
  }

  // ---- snapshots ----

  private snapRel(volumeUuid: string, snapshotUuid: string): string {
    return this.L.snapshotFileRel(volumeUuid, snapshotUuid);
  }

  private async snapInfo(volumeUuid: string, snapshotUuid: string): Promise<SnapshotInfo> {
    const rel = this.snapRel(volumeUuid, snapshotUuid);
    const i = await qimg.info(this.fs.target(rel), { format: 'qcow2' });
    const s: SnapshotInfo = {
      snapshotUuid: checkUuid('snapshotUuid', snapshotUuid),
      volumeUuid: checkUuid('volumeUuid', volumeUuid),
      size: i.virtualSize,
      actualSize: await this.fs.allocated(rel).catch(() => i.actualSize),
      installPath: this.fs.installPath(rel),
    };
    const m = snapOf(i.backingFile);
    if (m) s.parentUuid = m[1]!;
    return s;
  }

  private async requireSnap(volumeUuid: string, snapshotUuid: string): Promise<string> {
    await this.volumeInfo(volumeUuid);
    const rel = this.snapRel(volumeUuid, snapshotUuid);
    if (!(await this.fs.exists(rel))) throw new TStackError('NOT_FOUND', `snapshot ${snapshotUuid} of volume ${volumeUuid} does not exist`);
    return rel;
  }

  async createSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<SnapshotInfo> {
    const live = this.L.volumeFileRel(volumeUuid);
    const snap = this.snapRel(volumeUuid, snapshotUuid);
    const v = await this.volumeInfo(volumeUuid);
    if (await this.fs.exists(snap)) throw new TStackError('CONFLICT', `snapshot ${snapshotUuid} already exists`);
    // crash-safe order: the new top exists before the live file moves; if we die between the
    // two renames, recover() finds <live>.new and finishes the job
    const next = `${live}.new`;
    await this.fs.rm(next);
    await qimg.create(this.fs.target(next), 'qcow2', { backing: this.fs.backingRef(next, snap), backingFormat: 'qcow2', size: v.size, unsafe: true, signal: t.signal });
    try {
      await this.fs.rename(live, snap);
    } catch (e) {
      await this.fs.rm(next);
      throw e;
    }
    await this.fs.rename(next, live);
    return this.snapInfo(volumeUuid, snapshotUuid);
  }

  /**
   * Live snapshot, step 1: the new top QEMU will switch to. Its backing name already says
   * snap-<snap>.qcow2 (what the current live file becomes at commit); QEMU does not read it
   * while running (it keeps the chain it has open). Idempotent.
   */
  async prepareLive(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<LiveTop> {
    const next = this.L.nextTopFileRel(volumeUuid, snapshotUuid);
    const snap = this.snapRel(volumeUuid, snapshotUuid);
    if (await this.fs.exists(snap)) throw new TStackError('CONFLICT', `snapshot ${snapshotUuid} already exists`);
    const v = await this.volumeInfo(volumeUuid);
    if (!(await this.fs.exists(next))) {
      await qimg.create(this.fs.target(`${next}.part`), 'qcow2', { backing: this.fs.backingRef(next, snap), backingFormat: 'qcow2', size: v.size, unsafe: true, signal: t.signal });
      await this.fs.rename(`${next}.part`, next);
    }
    // QEMU opens a libnfs volume's new top over NFS too (libvirt: a network snapshot target)
    const src = this.fs.source(next, 'qcow2');
    if (src.type === 'file') return { newTopPath: src.path };
    if (src.type !== 'nfs') throw new TStackError('INVALID_ARGUMENT', `volume ${volumeUuid} (${src.type}) has no live snapshot on file storage`);
    return { newTopPath: nfsServerPath(src), newTop: src };
  }

  /** Live snapshot, step 3 (QEMU writes into next-<snap> now): the renames. Idempotent. */
  async commitLive(volumeUuid: string, snapshotUuid: string): Promise<SnapshotInfo> {
    const live = this.L.volumeFileRel(volumeUuid);
    const next = this.L.nextTopFileRel(volumeUuid, snapshotUuid);
    const snap = this.snapRel(volumeUuid, snapshotUuid);
    if (await this.fs.exists(next)) {
      if (!(await this.fs.exists(snap))) await this.fs.rename(live, snap);
      await this.fs.rename(next, live);
    }
    if (!(await this.fs.exists(snap))) throw new TStackError('NOT_FOUND', `snapshot ${snapshotUuid} of volume ${volumeUuid} was never prepared`);
    return this.snapInfo(volumeUuid, snapshotUuid);
  }

  /** Live snapshot that QEMU never switched to: drop the prepared top. */
  async abortLive(volumeUuid: string, snapshotUuid: string): Promise<boolean> {
    const next = this.L.nextTopFileRel(volumeUuid, snapshotUuid);
    const had = await this.fs.exists(next);
    await this.fs.rm(next);
    await this.fs.rm(`${next}.part`);
    return had;
  }

  async listSnapshots(volumeUuid: string): Promise<{ snapshots: SnapshotInfo[]; currentUuid?: string }> {
    await this.recover(volumeUuid);
    const live = await qimg.info(this.fs.target(this.L.volumeFileRel(volumeUuid)), { format: 'qcow2' }).catch(() => {
      throw new TStackError('VOLUME_NOT_FOUND', `volume ${volumeUuid} does not exist`);
    });
    const snapshots: SnapshotInfo[] = [];
    for (const n of (await this.fs.list(this.L.volumeDirRel(volumeUuid))).sort()) {
      const m = SNAP_FILE_RE.exec(n);
      if (m) snapshots.push(await this.snapInfo(volumeUuid, m[1]!));
    }
    const out: { snapshots: SnapshotInfo[]; currentUuid?: string } = { snapshots };
    const cur = snapOf(live.backingFile);
    if (cur) out.currentUuid = cur[1]!;
    return out;
  }

  async revertSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<VolumeInfo> {
    const snap = await this.requireSnap(volumeUuid, snapshotUuid);
    const live = this.L.volumeFileRel(volumeUuid);
    const s = await qimg.info(this.fs.target(snap), { format: 'qcow2' });
    const fresh = `${live}.revert`;
    await this.fs.rm(fresh);
    await qimg.create(this.fs.target(fresh), 'qcow2', { backing: this.fs.backingRef(fresh, snap), backingFormat: 'qcow2', size: s.virtualSize, signal: t.signal });
    await this.fs.rename(fresh, live);
    return this.volumeInfo(volumeUuid);
  }

  /**
   * Delete a snapshot layer without changing what any other layer reads:
   *  - no dependants (a leaf left by a revert): remove the file;
   *  - exactly one dependant (the live volume or the next snapshot, i.e. top or middle of a
   *    straight chain): `qemu-img commit` the dependant into it, then rename it over the
   *    dependant's file — the data moves once, and the dependant's path stays valid for
   *    whatever is stacked on it;
   *  - several dependants (after a revert, a snapshot is the base of both a newer snapshot
   *    and the live volume), or storage where commit cannot work (libnfs): `qemu-img rebase`
   *    each onto the snapshot's own backing file, which copies the snapshot's data into them,
   *    then remove it.
   */
  async deleteSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<boolean> {
    const volDir = this.L.volumeDirRel(volumeUuid);
    const snap = this.snapRel(volumeUuid, snapshotUuid);
    await this.recover(volumeUuid);
    if (!(await this.fs.exists(snap))) return false;
    const snapName = basename(snap);
    const me = await qimg.info(this.fs.target(snap), { format: 'qcow2' });
    const files = (await this.fs.list(volDir)).filter((n) => SNAP_FILE_RE.test(n) || n === basename(this.L.volumeFileRel(volumeUuid)));
    const children: string[] = [];
    for (const n of files) {
      if (n === snapName) continue;
      const i = await qimg.info(this.fs.target(`${volDir}/${n}`), { format: 'qcow2' });
      if (i.backingFile && withoutQuery(i.backingFile) === withoutQuery(this.fs.backingRef(`${volDir}/${n}`, snap))) children.push(`${volDir}/${n}`);
    }
    if (children.length === 0) {
      await this.fs.rm(snap);
    } else if (children.length === 1 && this.fs.canCommit) {
      const child = children[0]!;
      t.log.info({ snapshotUuid, child }, 'deleting snapshot: commit its only dependant into it');
      await qimg.commit(this.fs.target(child), { format: 'qcow2', signal: t.signal });
      await this.fs.rename(snap, child);
    } else {
      t.log.info({ snapshotUuid, children }, 'deleting snapshot: rebase its dependants onto its parent');
      for (const c of children) {
        await qimg.rebase(this.fs.target(c), me.backingFile, { ...(me.backingFormat ? { backingFormat: me.backingFormat } : {}), signal: t.signal });
      }
      await this.fs.rm(snap);
    }
    return true;
  }

  async flattenTo(volumeUuid: string, snapshotUuid: string | undefined, dest: string, format: 'qcow2' | 'raw', t: TaskContext): Promise<void> {
    const rel = snapshotUuid ? await this.requireSnap(volumeUuid, snapshotUuid) : (await this.volumeInfo(volumeUuid), this.L.volumeFileRel(volumeUuid));
    // a snapshot layer is frozen, but a running QEMU may still hold it writable: after a second
    // live snapshot the first one's top stays open read-write as a backing node (libvirt adds
    // snapshot overlays without auto-read-only), and qemu-img would fail on its write lock
    await qimg.convert(this.fs.target(rel), dest, { srcFormat: 'qcow2', dstFormat: format, forceShare: snapshotUuid !== undefined, signal: t.signal });
  }
}
