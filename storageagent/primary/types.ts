// The contract every primary-storage backend implements (file: local / shared mount point /
// NFS; ceph: RBD). Handlers in index.ts validate, queue and dispatch to these.
import type { Capacity, ImageFormat, LiveTop, SnapshotInfo, VolumeInfo, VolumeSource } from '../../shared/protocol/storage.js';
import type { TaskContext } from '../../shared/agent/server.js';

export interface CachedImage {
  imageUuid: string;
  source: VolumeSource;
  installPath: string;
  format: ImageFormat;
  virtualSize: number;
  actualSize: number;
  alreadyCached: boolean;
}

export interface ImageRef {
  imageUuid: string;
  imageStore: { url: string; token: string };
  md5?: string;
  sha256?: string;
}

export interface PrimaryBackend {
  init(): Promise<Capacity & { access?: string }>;
  capacity(): Promise<Capacity>;
  cacheImage(ref: ImageRef, t: TaskContext): Promise<CachedImage>;
  deleteCachedImage(imageUuid: string): Promise<boolean>;
  createRoot(volumeUuid: string, imageUuid: string, size: number | undefined, t: TaskContext): Promise<VolumeInfo>;
  createEmpty(volumeUuid: string, size: number, t: TaskContext): Promise<VolumeInfo>;
  resize(volumeUuid: string, size: number, t: TaskContext): Promise<VolumeInfo>;
  /** a linked clone becomes standalone (no snapshots allowed) */
  flatten(volumeUuid: string, t: TaskContext): Promise<VolumeInfo>;
  info(volumeUuid: string): Promise<VolumeInfo>;
  deleteVolume(volumeUuid: string, t: TaskContext): Promise<boolean>;
  createSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<SnapshotInfo>;
  listSnapshots(volumeUuid: string): Promise<{ snapshots: SnapshotInfo[]; currentUuid?: string }>;
  revertSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<VolumeInfo>;
  deleteSnapshot(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<boolean>;
  /** live snapshots of a running VM's file volume (absent: the backend snapshots online by itself, e.g. rbd snap) */
  prepareLive?(volumeUuid: string, snapshotUuid: string, t: TaskContext): Promise<LiveTop>;
  commitLive?(volumeUuid: string, snapshotUuid: string): Promise<SnapshotInfo>;
  abortLive?(volumeUuid: string, snapshotUuid: string): Promise<boolean>;
  /** flatten the volume (or one of its snapshots) into a local file of the given format */
  flattenTo(volumeUuid: string, snapshotUuid: string | undefined, dest: string, format: 'qcow2' | 'raw', t: TaskContext): Promise<void>;
}
