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
import { defineCommand } from './command.js';
import { Obj, Type, Uuid, AbsPath, type Static } from './schema.js';
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

export const ImageStoreInit = defineCommand({
  name: 'imagestore/init',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ store: ImageStoreSpec }),
  response: Capacity,
  description: 'prepare an image store (directory or Ceph pool) and register it for export',
});

export const ImageStoreCapacity = defineCommand({
  name: 'imagestore/capacity',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ store: ImageStoreSpec }),
  response: Capacity,
});

export const ImageStoreDownload = defineCommand({
  name: 'imagestore/download',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
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

export const ImageStoreCancel = defineCommand({
  name: 'imagestore/download/cancel',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ imageUuid: Type.Optional(Uuid()), taskId: Type.Optional(Type.String({ maxLength: 128 })) }),
  response: Obj({ cancelled: Type.Integer({ description: 'number of transfers cancelled' }) }),
  description: 'cancel a running image download or image-cache pull, by image uuid or task id',
});

export const ImageStoreDelete = defineCommand({
  name: 'imagestore/delete',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({ store: ImageStoreSpec, imageUuid: Uuid() }),
  response: Obj({ deleted: Type.Boolean() }),
});

export const ImageStoreImageInfo = defineCommand({
  name: 'imagestore/image/info',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ store: ImageStoreSpec, imageUuid: Uuid() }),
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
const volKey = (r: { ps: { uuid: string }; volumeUuid: string }): string => `ps:${r.ps.uuid}:vol:${r.volumeUuid}`;
export const volumeQueueKey = volKey;

export const PsInit = defineCommand({
  name: 'ps/init',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 120_000,
  request: Obj(PsReq),
  response: Obj({ ...Capacity.properties, access: Type.Optional(Type.String({ description: 'nfs: mount | libnfs' })) }),
  description: 'prepare a primary storage on this host (create dirs, mount NFS, check the Ceph pool)',
});

export const PsCapacity = defineCommand({
  name: 'ps/capacity',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 120_000,
  request: Obj(PsReq),
  response: Capacity,
});

export const PsImageCache = defineCommand({
  name: 'ps/image-cache',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
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

export const PsImageCacheDelete = defineCommand({
  name: 'ps/image-cache/delete',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({ ...PsReq, imageUuid: Uuid() }),
  response: Obj({ deleted: Type.Boolean() }),
});

export const CreateRootVolume = defineCommand({
  name: 'ps/volume/create-root',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({
    ...PsReq,
    volumeUuid: Uuid(),
    imageUuid: Uuid(),
    /** grow the root volume beyond the image's virtual size */
    size: Type.Optional(Bytes()),
  }),
  response: VolumeInfo,
  description: 'root volume as a linked clone of the cached image (qcow2 backing file / rbd clone): O(1)',
});

export const CreateEmptyVolume = defineCommand({
  name: 'ps/volume/create-empty',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid(), size: Bytes({ minimum: 1 }) }),
  response: VolumeInfo,
  description: 'thin data volume of a size',
});

export const ResizeVolume = defineCommand({
  name: 'ps/volume/resize',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid(), size: Bytes({ minimum: 1 }) }),
  response: VolumeInfo,
  description: 'grow a volume (shrinking is refused)',
});

export const FlattenVolume = defineCommand({
  name: 'ps/volume/flatten',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid() }),
  response: VolumeInfo,
  description: 'make a linked clone standalone: copy in what it reads from the image cache (qemu-img rebase -b "" / rbd flatten); the volume must have no snapshots and no running VM',
});

export const VolumeInfoCmd = defineCommand({
  name: 'ps/volume/info',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid() }),
  response: VolumeInfo,
});

export const DeleteVolume = defineCommand({
  name: 'ps/volume/delete',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid() }),
  response: Obj({ deleted: Type.Boolean() }),
  description: 'delete a volume and all its snapshots (idempotent)',
});

export const CreateSnapshot = defineCommand({
  name: 'ps/snapshot/create',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 10 * 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid(), snapshotUuid: Uuid() }),
  response: SnapshotInfo,
  description: 'offline snapshot: file backends freeze the live file as the snapshot and put a new qcow2 overlay on top',
});

export const ListSnapshots = defineCommand({
  name: 'ps/snapshot/list',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid() }),
  response: Obj({
    snapshots: Type.Array(SnapshotInfo),
    /** the snapshot the live volume currently sits on (after a revert: that snapshot) */
    currentUuid: Type.Optional(Uuid()),
  }),
});

export const RevertSnapshot = defineCommand({
  name: 'ps/snapshot/revert',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 60 * 60_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid(), snapshotUuid: Uuid() }),
  response: VolumeInfo,
  description: 'discard the live data and return the volume to a snapshot (the volume must not be in use)',
});

export const DeleteSnapshot = defineCommand({
  name: 'ps/snapshot/delete',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid(), snapshotUuid: Uuid() }),
  response: Obj({ deleted: Type.Boolean() }),
  description: 'delete a snapshot, merging its data into what depends on it (qemu-img commit / rebase)',
});

// Live snapshot of a file volume of a running VM: prepare here, vm/snapshot (reuseExisting) on
// the kvmagent, commit here. A prepared top that QEMU never switched to is dropped by abort.
const SnapReq = Obj({ ...PsReq, volumeUuid: Uuid(), snapshotUuid: Uuid() });

export const PrepareLiveSnapshot = defineCommand({
  name: 'ps/snapshot/live-prepare',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 2 * 60_000,
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

export const CommitLiveSnapshot = defineCommand({
  name: 'ps/snapshot/live-commit',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 2 * 60_000,
  request: SnapReq,
  response: SnapshotInfo,
  description: 'after vm/snapshot: the old live file becomes the snapshot, the new top takes the live path (idempotent)',
});

export const AbortLiveSnapshot = defineCommand({
  name: 'ps/snapshot/live-abort',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 2 * 60_000,
  request: SnapReq,
  response: Obj({ deleted: Type.Boolean() }),
  description: 'drop a prepared top that the VM never switched to',
});

export const VolumeToImage = defineCommand({
  name: 'ps/volume/to-image',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
  request: Obj({
    ...PsReq,
    volumeUuid: Uuid(),
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

export const VolumeExport = defineCommand({
  name: 'ps/volume/export',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
  request: Obj({ ...PsReq, volumeUuid: Uuid() }),
  response: Obj({
    ticket: Ticket,
    /** the image cache first (when the volume is a linked clone), then the volume's files */
    files: Type.Array(TransferFile),
    /** the volume's virtual size */
    size: Bytes(),
  }),
  description: 'local / shared-mount-point storage: hash the files of a volume (with its snapshots and the image cache it is a clone of) and serve them for 1 h at GET /export/ps-files/<ticket>/<index> (bearer token, Range)',
});

export const VolumeExportEnd = defineCommand({
  name: 'ps/volume/export-end',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ ticket: Ticket }),
  response: Obj({ ended: Type.Boolean() }),
  description: 'stop serving an export ticket (idempotent)',
});

export const VolumeImport = defineCommand({
  name: 'ps/volume/import',
  agent: 'storage',
  mode: 'async',
  timeoutMs: 6 * 3600_000,
  request: Obj({
    ...PsReq,
    volumeUuid: Uuid(),
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
