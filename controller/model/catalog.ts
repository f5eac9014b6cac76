// Cloud resource pool templates (white paper §2.1.2.1): images, instance offerings, disk offerings.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Bytes, Enum, Url, Uuid, MiB } from './fields.js';
import { changeStateAction, type KindDef } from './kind.js';
import { ENABLED_STATES, IMAGE_STATUSES } from './states.js';

export const MEDIA_TYPES = ['RootVolumeTemplate', 'ISO', 'DataVolumeTemplate'] as const;
export const IMAGE_FORMATS = ['qcow2', 'raw', 'iso'] as const;
export const PLATFORMS = ['Linux', 'Windows', 'Other', 'Paravirtualization'] as const;
export const ALLOCATOR_STRATEGIES = ['least-used', 'random', 'first-fit'] as const;

export const image: KindDef = {
  kind: 'image',
  collection: 'images',
  title: 'image',
  createSchema: Obj({
    ...baseCreate(),
    url: Type.Optional(Url()),
    /** an image of a VM's root volume (RootVolumeTemplate) instead of a download */
    rootVolumeUuid: Type.Optional(Uuid()),
    /** an image of a volume (mediaType says which template; default by the volume's type) */
    volumeUuid: Type.Optional(Uuid()),
    /** an image of a volume snapshot */
    volumeSnapshotUuid: Type.Optional(Uuid()),
    mediaType: Type.Optional(Enum(MEDIA_TYPES)),
    format: Type.Optional(Enum(IMAGE_FORMATS)),
    platform: Type.Optional(Enum(PLATFORMS)),
    guestOsType: Type.Optional(Type.String({ maxLength: 64 })),
    architecture: Type.Optional(Enum(['x86_64', 'aarch64'] as const)),
    backupStorageUuids: Type.Array(Uuid(), { minItems: 1, maxItems: 16, uniqueItems: true }),
    md5sum: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{32}$' })),
    system: Type.Optional(Type.Boolean()),
  }),
  updateSchema: Obj({ ...baseUpdate(), platform: Type.Optional(Enum(PLATFORMS)), guestOsType: Type.Optional(Type.String({ maxLength: 64 })) }),
  refs: [
    { field: 'backupStorageUuids', kind: 'backup-storage', many: true },
    { field: 'rootVolumeUuid', kind: 'volume' },
    { field: 'volumeUuid', kind: 'volume' },
    { field: 'volumeSnapshotUuid', kind: 'volume-snapshot' },
  ],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  statuses: IMAGE_STATUSES,
  initialStatus: 'Downloading',
  adminOnly: false,
  createMode: 'async',
  deleteMode: 'async',
  systemFields: ['status', 'size', 'actualSize', 'progress', 'backupStorageRefs'],
  defaults: { platform: 'Linux', architecture: 'x86_64', system: false },
  check: (b) => {
    const sources = (['url', 'rootVolumeUuid', 'volumeUuid', 'volumeSnapshotUuid'] as const).filter((f) => b[f] !== undefined);
    if (sources.length !== 1) throw invalid(sources[1] ?? 'url', 'give exactly one of url, rootVolumeUuid, volumeUuid, volumeSnapshotUuid');
    if (b.url === undefined) {
      if (b.format !== undefined && b.format !== 'qcow2') throw invalid('format', 'an image of a volume is qcow2');
      if (b.mediaType === 'ISO') throw invalid('mediaType', 'an image of a volume is a RootVolumeTemplate or a DataVolumeTemplate');
      if (b.rootVolumeUuid !== undefined && b.mediaType !== undefined && b.mediaType !== 'RootVolumeTemplate') throw invalid('mediaType', 'an image of a root volume is a RootVolumeTemplate');
      return;
    }
    if (b.format === undefined) throw invalid('format', 'required with url');
    if (b.format === 'iso' && b.mediaType !== undefined && b.mediaType !== 'ISO') throw invalid('mediaType', "format 'iso' needs mediaType 'ISO'");
    if (b.mediaType === 'ISO' && b.format !== 'iso') throw invalid('format', "mediaType 'ISO' needs format 'iso'");
    if (!/^(https?|ftp|sftp|file):\/\//.test(String(b.url)) && !String(b.url).startsWith('/')) {
      throw invalid('url', 'must be an http(s)://, ftp://, sftp://, file:// URL or an absolute path on the image server');
    }
  },
  normalize: (b, ctx) => {
    if (b.url !== undefined) return b.format === 'iso' ? { ...b, mediaType: 'ISO' } : { ...b, mediaType: b.mediaType ?? 'RootVolumeTemplate' };
    // an image of a volume: by default the template of what the volume is
    const volType = (ctx.refs.rootVolumeUuid ?? ctx.refs.volumeUuid)?.type ?? ctx.refs.volumeSnapshotUuid?.volumeType;
    return { ...b, format: 'qcow2', mediaType: b.mediaType ?? (volType === 'Data' ? 'DataVolumeTemplate' : 'RootVolumeTemplate') };
  },
  actions: { changeState: changeStateAction() },
};

export const instanceOffering: KindDef = {
  kind: 'instance-offering',
  collection: 'instance-offerings',
  title: 'instance offering',
  createSchema: Obj({
    ...baseCreate(),
    cpuNum: Type.Integer({ minimum: 1, maximum: 1024 }),
    memorySize: Bytes({ minimum: 16 * MiB, description: 'bytes' }),
    allocatorStrategy: Type.Optional(Enum(ALLOCATOR_STRATEGIES)),
    /** QoS of the VMs made from it (a volume's or NIC's own setQos wins): bytes/s */
    volumeTotalBandwidth: Type.Optional(Bytes({ minimum: 1024, description: 'root volume I/O, bytes/s' })),
    networkInboundBandwidth: Type.Optional(Bytes({ minimum: 1024, description: 'into each NIC, bytes/s' })),
    networkOutboundBandwidth: Type.Optional(Bytes({ minimum: 1024, description: 'out of each NIC, bytes/s' })),
  }),
  updateSchema: Obj({ ...baseUpdate(), allocatorStrategy: Type.Optional(Enum(ALLOCATOR_STRATEGIES)) }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { allocatorStrategy: 'least-used' },
  actions: { changeState: changeStateAction() },
};

export const diskOffering: KindDef = {
  kind: 'disk-offering',
  collection: 'disk-offerings',
  title: 'disk offering',
  createSchema: Obj({
    ...baseCreate(),
    diskSize: Bytes({ minimum: MiB, description: 'bytes' }),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  actions: { changeState: changeStateAction() },
};
