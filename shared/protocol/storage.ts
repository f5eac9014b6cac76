// Storage agent commands (declared once; see command.ts and docs/storage.md).
//
// Two families:
//  - imagestore/*: backup storage ("image server"): a directory on an image-server host, or a
//    Ceph pool. Images are downloaded into it (http/https/ftp/sftp/file), verified, exported
//    over authenticated HTTP (GET /export/images/<uuid>, Range) and imported by upload
//    (PUT /import/images/<uuid>).
//  - ps/*: primary storage. One command set; every request carries the primary storage
//    descriptor `ps` whose `type` ('local' | 'sharedmountpoint' | 'nfs' | 'ceph') selects the
//    backend. The agent keeps no database: the descriptor plus uuids name everything.
// Every volume result carries `source`, the disk source in the shape kvmagent's VmSpec uses.
import { defineCommand, type CommandDef } from './command.js';
import type { TProperties } from '@sinclair/typebox';
import { Obj, Type, Uuid, AbsPath, type Static, type TSchema } from './schema.js';
import { VolumeSource as KvmVolumeSource, NfsSource as KvmNfsSource } from './kvm.js';

// ---------------------------------------------------------------------------------------------
// shared shapes

/** Disk source of a volume: the very schema kvmagent's VmSpec takes (declared in kvm.ts). */
export const VolumeSource = KvmVolumeSource;
export type VolumeSource = Static<typeof VolumeSource>;

const Bytes = (opts: Record<string, unknown> = {}) => Type.Integer({ minimum: 0, ...opts });
const ImageFormat = Type.Union([Type.Literal('qcow2'), Type.Literal('raw'), Type.Literal('iso')]);
export type ImageFormat = Static<typeof ImageFormat>;
const Md5 = Type.String({ pattern: '^[0-9a-fA-F]{32}$' });
const Sha256 = Type.String({ pattern: '^[0-9a-fA-F]{64}$' });

export const Capacity = Obj({
  totalCapacity: Bytes(),
  availableCapacity: Bytes(),
  /** bytes used by tstack's own files / images in this storage */
  usedByTstack: Bytes(),
});
export type Capacity = Static<typeof Capacity>;

/** Timeouts: a task on one volume or image; a transfer or conversion of a whole disk. */
const TASK = 10 * 60_000;
const TRANSFER = 6 * 3600_000;

/** A storage-agent command: `async` ones run as tasks, `sync` ones answer at once. */
function storageCommand<Req extends TSchema, Res extends TSchema>(mode: 'sync' | 'async', timeoutMs: number, def: { name: string; request: Req; response: Res; description?: string }): CommandDef<Req, Res> {
  return defineCommand({ ...def, agent: 'storage', mode, timeoutMs });
}

/** What a delete answers (idempotent: false when there was nothing to delete). */
const Deleted = Obj({ deleted: Type.Boolean() });

// ---------------------------------------------------------------------------------------------
// image store (backup storage)

export const DirStore = Obj({ type: Type.Literal('dir'), uuid: Uuid(), path: AbsPath() });
/** A Ceph pool/user name: no ':' (QEMU's rbd option separator) and no '/' */
const CephName = (max = 127) => Type.String({ pattern: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,${max}}$` });
export const CephConn = {
  pool: CephName(),
  /** ceph.conf of the cluster (default /etc/ceph/ceph.conf) */
  confPath: Type.Optional(AbsPath()),
  /** cephx user without the "client." prefix (default admin) */
  user: Type.Optional(CephName(63)),
  /** mon addresses for VM disk sources; read from the cluster when absent */
  monitors: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 255 }))),
  /** libvirt secret holding the cephx key, passed through to disk sources */
  secretUuid: Type.Optional(Uuid()),
};
export const CephStore = Obj({ type: Type.Literal('ceph'), uuid: Uuid(), ...CephConn });
export const ImageStoreSpec = Type.Union([DirStore, CephStore]);
export type ImageStoreSpec = Static<typeof ImageStoreSpec>;

export const ImageInfo = Obj({
  imageUuid: Uuid(),
  format: ImageFormat,
  virtualSize: Bytes(),
  actualSize: Bytes(),
  /** where the image lives in the store: a file path, or ceph://pool/image */
  installPath: Type.String(),
  /** Ceph image stores: the cluster's fsid (a Ceph primary storage in the same cluster copies inside it) */
  cephFsid: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F-]{36}$' })),
  md5: Type.Optional(Md5),
  sha256: Type.Optional(Sha256),
});
export type ImageInfo = Static<typeof ImageInfo>;

const StoreReq = Obj({ store: ImageStoreSpec });
const StoreImageReq = Obj({ store: ImageStoreSpec, imageUuid: Uuid() });

export const ImageStoreInit = storageCommand('sync', 60_000, {
  name: 'imagestore/init',
  request: StoreReq,
  response: Capacity,
  description: 'prepare an image store (directory or Ceph pool) and register it for export',
});

export const ImageStoreCapacity = storageCommand('sync', 60_000, {
  name: 'imagestore/capacity',
  request: StoreReq,
  response: Capacity,
});

export const ImageStoreDownload = storageCommand('async', TRANSFER, {
  name: 'imagestore/download',
  request: Obj({
    store: ImageStoreSpec,
    imageUuid: Uuid(),
    /** http(s)://, ftp://[user:password@]host/path, sftp://user[:password]@host[:port]/path, file:///path */
    url: Type.String({ pattern: '^(https?|ftp|sftp|file)://', maxLength: 4096 }),
    /** expected format; a raw image must be declared raw (anything unrecognised is refused otherwise) */
    format: Type.Optional(ImageFormat),
    md5: Type.Optional(Md5),
    sha256: Type.Optional(Sha256),
    /** private key (OpenSSH/PEM) for sftp:// */
    sshPrivateKey: Type.Optional(Type.String({ maxLength: 65536 })),
    /** retries after an interrupted transfer (resumed where supported); default 5 */
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  }),
  response: ImageInfo,
  description: 'download an image into the store with resume, progress events and verification',
});

export const ImageStoreCancel = storageCommand('sync', 30_000, {
  name: 'imagestore/download/cancel',
  request: Obj({ imageUuid: Type.Optional(Uuid()), taskId: Type.Optional(Type.String({ maxLength: 128 })) }),
  response: Obj({ cancelled: Type.Integer({ description: 'number of transfers cancelled' }) }),
  description: 'cancel a running image download or image-cache pull, by image uuid or task id',
});

export const ImageStoreDelete = storageCommand('async', TASK, {
  name: 'imagestore/delete',
  request: StoreImageReq,
  response: Deleted,
});

export const ImageStoreImageInfo = storageCommand('sync', 60_000, {
  name: 'imagestore/image/info',
  request: StoreImageReq,
  response: ImageInfo,
});

/** Event pushed while downloading (type 'image.download.progress'). */
export const DOWNLOAD_PROGRESS_EVENT = 'image.download.progress';
export const DownloadProgress = Obj({
  imageUuid: Uuid(),
  taskId: Type.Optional(Type.String()),
  bytes: Bytes(),
  total: Type.Union([Bytes(), Type.Null()]),
  percent: Type.Union([Type.Number(), Type.Null()]),
  /** bytes per second over the last interval */
  rate: Type.Number(),
  stage: Type.Union([Type.Literal('downloading'), Type.Literal('verifying'), Type.Literal('done'), Type.Literal('retrying')]),
});

// ---------------------------------------------------------------------------------------------
// primary storage

export const LocalPs = Obj({ type: Type.Literal('local'), uuid: Uuid(), path: AbsPath() });
/** A path that several hosts mount (NFS, GlusterFS, OCFS2...): same layout as local. */
export const SharedMountPointPs = Obj({ type: Type.Literal('sharedmountpoint'), uuid: Uuid(), path: AbsPath() });
export const NfsPs = Obj({
  type: Type.Literal('nfs'),
  uuid: Uuid(),
  /** server:/export */
  url: Type.String({ pattern: '^[A-Za-z0-9.\\-\\[\\]:]+:/[^\\0\\n\\r]*$', maxLength: 1024 }),
  /** where the agent mounts the export (mount mode) */
  mountPath: AbsPath(),
  mountOptions: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_=.,:-]*$', maxLength: 512 })),
  /** 'mount': kernel NFS client; 'libnfs': userspace (nfs:// URLs); 'auto': mount when the kernel can (default) */
  access: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('mount'), Type.Literal('libnfs')])),
});
export const CephPs = Obj({ type: Type.Literal('ceph'), uuid: Uuid(), ...CephConn });
export const PrimaryStorageSpec = Type.Union([LocalPs, SharedMountPointPs, NfsPs, CephPs]);
export type PrimaryStorageSpec = Static<typeof PrimaryStorageSpec>;

/** Where the image cache pulls images from: an image store agent's HTTP export. */
export const ImageStoreRef = Obj({
  /** base URL of the storage agent that holds the image store, e.g. http://10.0.0.9:7171 */
  url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 1024 }),
  token: Type.String({ minLength: 1, maxLength: 1024 }),
  /** target store for uploads when the agent serves several */
  storeUuid: Type.Optional(Uuid()),
});

export const VolumeInfo = Obj({
  volumeUuid: Uuid(),
  source: VolumeSource,
  installPath: Type.String(),
  format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
  size: Bytes({ description: 'virtual size' }),
  actualSize: Bytes(),
});
export type VolumeInfo = Static<typeof VolumeInfo>;

export const SnapshotInfo = Obj({
  snapshotUuid: Uuid(),
  volumeUuid: Uuid(),
  /** the snapshot this one was taken on top of (file backends: its backing snapshot) */
  parentUuid: Type.Optional(Uuid()),
  size: Bytes(),
  actualSize: Bytes(),
  installPath: Type.String(),
});
export type SnapshotInfo = Static<typeof SnapshotInfo>;

const PsReq = { ps: PrimaryStorageSpec };
/** A request on one volume of a primary storage (and `extra`). */
const volumeReq = <P extends TProperties>(extra: P) => Obj({ ...PsReq, volumeUuid: Uuid(), ...extra });
const VolReq = volumeReq({});
// also the live snapshot's three steps: prepare here, vm/snapshot (reuseExisting) on the
// kvmagent, commit here; a prepared top that QEMU never switched to is dropped by abort
const SnapReq = volumeReq({ snapshotUuid: Uuid() });
const volKey = (r: { ps: { uuid: string }; volumeUuid: string }): string => `ps:${r.ps.uuid}:vol:${r.volumeUuid}`;
export const volumeQueueKey = volKey;

export const PsInit = storageCommand('sync', 120_000, {
  name: 'ps/init',
  request: Obj(PsReq),
  response: Obj({ ...Capacity.properties, access: Type.Optional(Type.String({ description: 'nfs: mount | libnfs' })) }),
  description: 'prepare a primary storage on this host (create dirs, mount NFS, check the Ceph pool)',
});

export const PsCapacity = storageCommand('sync', 120_000, {
  name: 'ps/capacity',
  request: Obj(PsReq),
  response: Capacity,
});

export const PsImageCache = storageCommand('async', TRANSFER, {
  name: 'ps/image-cache',
  request: Obj({
    ...PsReq,
    imageUuid: Uuid(),
    imageStore: ImageStoreRef,
    md5: Type.Optional(Md5),
    sha256: Type.Optional(Sha256),
  }),
  response: Obj({
    imageUuid: Uuid(),
    source: VolumeSource,
    installPath: Type.String(),
    format: ImageFormat,
    virtualSize: Bytes(),
    actualSize: Bytes(),
    /** true when it was already cached (nothing downloaded) */
    alreadyCached: Type.Boolean(),
  }),
  description: 'pull an image from the image store into this primary storage once; later calls reuse it',
});

export const PsImageCacheDelete = storageCommand('async', TASK, {
  name: 'ps/image-cache/delete',
  request: Obj({ ...PsReq, imageUuid: Uuid() }),
  response: Deleted,
});

export const CreateRootVolume = storageCommand('async', TASK, {
  name: 'ps/volume/create-root',
  request: volumeReq({
    imageUuid: Uuid(),
    /** grow the root volume beyond the image's virtual size */
    size: Type.Optional(Bytes()),
  }),
  response: VolumeInfo,
  description: 'root volume as a linked clone of the cached image (qcow2 backing file / rbd clone): O(1)',
});

export const CreateEmptyVolume = storageCommand('async', TASK, {
  name: 'ps/volume/create-empty',
  request: volumeReq({ size: Bytes({ minimum: 1 }) }),
  response: VolumeInfo,
  description: 'thin data volume of a size',
});

export const ResizeVolume = storageCommand('async', TASK, {
  name: 'ps/volume/resize',
  request: volumeReq({ size: Bytes({ minimum: 1 }) }),
  response: VolumeInfo,
  description: 'grow a volume (shrinking is refused)',
});

export const FlattenVolume = storageCommand('async', TRANSFER, {
  name: 'ps/volume/flatten',
  request: VolReq,
  response: VolumeInfo,
  description: 'make a linked clone standalone: copy in what it reads from the image cache (qemu-img rebase -b "" / rbd flatten); the volume must have no snapshots and no running VM',
});

export const VolumeInfoCmd = storageCommand('sync', 60_000, {
  name: 'ps/volume/info',
  request: VolReq,
  response: VolumeInfo,
});

export const DeleteVolume = storageCommand('async', TASK, {
  name: 'ps/volume/delete',
  request: VolReq,
  response: Deleted,
  description: 'delete a volume and all its snapshots (idempotent)',
});

export const CreateSnapshot = storageCommand('async', TASK, {
  name: 'ps/snapshot/create',
  request: SnapReq,
  response: SnapshotInfo,
  description: 'offline snapshot: file backends freeze the live file as the snapshot and put a new qcow2 overlay on top',
});

export const ListSnapshots = storageCommand('sync', 60_000, {
  name: 'ps/snapshot/list',
  request: VolReq,
  response: Obj({
    snapshots: Type.Array(SnapshotInfo),
    /** the snapshot the live volume currently sits on (after a revert: that snapshot) */
    currentUuid: Type.Optional(Uuid()),
  }),
});

export const RevertSnapshot = storageCommand('async', 60 * 60_000, {
  name: 'ps/snapshot/revert',
  request: SnapReq,
  response: VolumeInfo,
  description: 'discard the live data and return the volume to a snapshot (the volume must not be in use)',
});

export const DeleteSnapshot = storageCommand('async', TRANSFER, {
  name: 'ps/snapshot/delete',
  request: SnapReq,
  response: Deleted,
  description: 'delete a snapshot, merging its data into what depends on it (qemu-img commit / rebase)',
});

// Live snapshot of a file volume of a running VM (SnapReq above).

export const PrepareLiveSnapshot = storageCommand('async', 2 * 60_000, {
  name: 'ps/snapshot/live-prepare',
  request: SnapReq,
  response: Obj({
    /** the new top's path: on this host, or on the NFS server when QEMU opens it over NFS */
    newTopPath: AbsPath(),
    /** NFS through libnfs: the source QEMU opens the new top by */
    newTop: Type.Optional(KvmNfsSource),
  }),
  description: 'file backends (local, shared mount point, NFS): create the new top a running VM switches to (its backing name is the snapshot-to-be)',
});

export type LiveTop = Static<typeof PrepareLiveSnapshot.response>;

export const CommitLiveSnapshot = storageCommand('async', 2 * 60_000, {
  name: 'ps/snapshot/live-commit',
  request: SnapReq,
  response: SnapshotInfo,
  description: 'after vm/snapshot: the old live file becomes the snapshot, the new top takes the live path (idempotent)',
});

export const AbortLiveSnapshot = storageCommand('async', 2 * 60_000, {
  name: 'ps/snapshot/live-abort',
  request: SnapReq,
  response: Deleted,
  description: 'drop a prepared top that the VM never switched to',
});

export const VolumeToImage = storageCommand('async', TRANSFER, {
  name: 'ps/volume/to-image',
  request: volumeReq({
    /** image from this snapshot instead of the live volume */
    snapshotUuid: Type.Optional(Uuid()),
    imageUuid: Uuid(),
    imageStore: ImageStoreRef,
    format: Type.Optional(Type.Union([Type.Literal('qcow2'), Type.Literal('raw')])),
  }),
  response: ImageInfo,
  description: 'flatten a volume (qemu-img convert) and upload it to an image store as a new image',
});


// Copy of a local-storage volume to another host (cold migration): the source agent lists and
// hashes the volume's files (and the image cache it is a clone of) and serves them under a
// ticket; the destination agent pulls them, verifies each sha256 and makes the copy live.
/** Where a transferred file goes, relative to the primary storage root. */
const TransferRel = Type.String({
  pattern: '^(volumes/[0-9a-f-]{36}/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}|imagecache/[0-9a-f-]{36}/[0-9a-f-]{36}\\.(qcow2|raw))$',
  maxLength: 256,
});
export const TransferFile = Obj({ rel: TransferRel, size: Bytes(), sha256: Sha256 });
export type TransferFile = Static<typeof TransferFile>;
const Ticket = Type.String({ pattern: '^[0-9a-f]{32}$' });

export const VolumeExport = storageCommand('async', TRANSFER, {
  name: 'ps/volume/export',
  request: VolReq,
  response: Obj({
    ticket: Ticket,
    /** the image cache first (when the volume is a linked clone), then the volume's files */
    files: Type.Array(TransferFile),
    /** the volume's virtual size */
    size: Bytes(),
  }),
  description: 'local / shared-mount-point storage: hash the files of a volume (with its snapshots and the image cache it is a clone of) and serve them for 1 h at GET /export/ps-files/<ticket>/<index> (bearer token, Range)',
});

export const VolumeExportEnd = storageCommand('sync', 30_000, {
  name: 'ps/volume/export-end',
  request: Obj({ ticket: Ticket }),
  response: Obj({ ended: Type.Boolean() }),
  description: 'stop serving an export ticket (idempotent)',
});

export const VolumeImport = storageCommand('async', TRANSFER, {
  name: 'ps/volume/import',
  request: volumeReq({
    from: Obj({
      /** base URL of the source host's storage agent */
      url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 1024 }),
      token: Type.String({ minLength: 1, maxLength: 1024 }),
      ticket: Ticket,
      files: Type.Array(TransferFile, { minItems: 1, maxItems: 1024 }),
    }),
  }),
  response: VolumeInfo,
  description: 'pull a volume exported by another host (ps/volume/export) into this host’s storage: every file sha256-verified, the chain checked, then moved in place at once (an earlier copy is replaced; a cached image already here is kept)',
});

export const VOLUME_TRANSFER_EVENT = 'volume.transfer.progress';
export const VolumeTransferProgress = Obj({
  volumeUuid: Uuid(),
  taskId: Type.String(),
  bytes: Bytes(),
  total: Bytes(),
  percent: Type.Number(),
});

export const commands = [
  ImageStoreInit,
  ImageStoreCapacity,
  ImageStoreDownload,
  ImageStoreCancel,
  ImageStoreDelete,
  ImageStoreImageInfo,
  PsInit,
  PsCapacity,
  PsImageCache,
  PsImageCacheDelete,
  CreateRootVolume,
  CreateEmptyVolume,
  ResizeVolume,
  VolumeInfoCmd,
  DeleteVolume,
  CreateSnapshot,
  ListSnapshots,
  RevertSnapshot,
  DeleteSnapshot,
  PrepareLiveSnapshot,
  CommitLiveSnapshot,
  AbortLiveSnapshot,
  VolumeToImage,
  VolumeExport,
  VolumeExportEnd,
  VolumeImport,
] as const;
