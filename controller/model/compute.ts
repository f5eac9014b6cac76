// VMs and their parts (white paper §2.1.2.1): VM instances, NICs, volumes, snapshots.
import { Type, Obj, Ipv4 } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Bytes, Enum, Uuid, Hostname, MiB } from './fields.js';
import { action, changeStateAction, emptyAction, type KindDef } from './kind.js';
import { ENABLED_STATES, SNAPSHOT_STATUSES, VM_STATES, VOLUME_STATUSES } from './states.js';
import { ALLOCATOR_STRATEGIES } from './catalog.js';

export const VM_CREATE_STRATEGIES = ['InstantStart', 'CreateStopped'] as const;
export const HA_LEVELS = ['None', 'NeverStop', 'OnHostFailure'] as const;

const Bps = (description: string) => Type.Optional(Bytes({ minimum: 1024, description }));
export const VolumeQos = () =>
  Obj({
    totalBandwidth: Bps('bytes/s, read and write together'),
    readBandwidth: Bps('bytes/s'),
    writeBandwidth: Bps('bytes/s'),
    totalIops: Type.Optional(Type.Integer({ minimum: 1, description: 'I/O operations per second' })),
  });
export const NicQos = () => Obj({ inboundBandwidth: Bps('bytes/s into the VM'), outboundBandwidth: Bps('bytes/s out of the VM') });

const StaticIp = () => Obj({ l3NetworkUuid: Uuid(), ip: Ipv4() });

export const vmInstance: KindDef = {
  kind: 'vm-instance',
  indexes: ['lastHostUuid', 'instanceOfferingUuid'],
  // a host's Running VMs, paged (issue 19)
  compoundIndexes: [['hostUuid', 'state']],
  collection: 'vm-instances',
  title: 'VM instance',
  createSchema: Obj({
    ...baseCreate(),
    instanceOfferingUuid: Type.Optional(Uuid()),
    cpuNum: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    memorySize: Type.Optional(Bytes({ minimum: 16 * MiB, description: 'bytes' })),
    imageUuid: Uuid(),
    l3NetworkUuids: Type.Array(Uuid(), { minItems: 1, maxItems: 16, uniqueItems: true }),
    defaultL3NetworkUuid: Type.Optional(Uuid()),
    staticIps: Type.Optional(Type.Array(StaticIp(), { maxItems: 16 })),
    rootDiskOfferingUuid: Type.Optional(Uuid()),
    rootDiskSize: Type.Optional(Bytes({ minimum: MiB })),
    dataDiskOfferingUuids: Type.Optional(Type.Array(Uuid(), { maxItems: 16 })),
    dataVolumeTemplateUuids: Type.Optional(Type.Array(Uuid(), { maxItems: 16, description: 'DataVolumeTemplate images: one data volume made from each (after those of dataDiskOfferingUuids)' })),
    zoneUuid: Type.Optional(Uuid()),
    clusterUuid: Type.Optional(Uuid()),
    hostUuid: Type.Optional(Uuid()),
    primaryStorageUuidForRootVolume: Type.Optional(Uuid()),
    affinityGroupUuid: Type.Optional(Uuid({ description: 'the affinity group the VM joins (placement honours it)' })),
    strategy: Type.Optional(Enum(VM_CREATE_STRATEGIES)),
    allocatorStrategy: Type.Optional(Enum(ALLOCATOR_STRATEGIES)),
    haLevel: Type.Optional(Enum(HA_LEVELS)),
    hostname: Type.Optional(Hostname()),
    userData: Type.Optional(Type.String({ maxLength: 64 * 1024, description: 'cloud-init user-data, served to the guest by the metadata service: #cloud-config (e.g. chpasswd: list: | root:<password> for a console login) or a #! script' })),
    consolePassword: Type.Optional(Type.String({ minLength: 6, maxLength: 18, pattern: '^[\\x21-\\x7e]+$', description: 'VNC console password (VNC uses its first 8 characters); generated when absent; the console proxy types it, nobody else needs it' })),
    securityGroupUuids: Type.Optional(Type.Array(Uuid(), { maxItems: 16, uniqueItems: true, description: 'security groups its NICs join (each NIC the groups attached to its L3)' })),
    sshKey: Type.Optional(Type.String({ maxLength: 16 * 1024, pattern: '^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\\n\\r]*)?$' })),
  }),
  updateSchema: Obj({
    ...baseUpdate(),
    haLevel: Type.Optional(Enum(HA_LEVELS)),
    defaultL3NetworkUuid: Type.Optional(Uuid()),
  }),
  refs: [
    { field: 'instanceOfferingUuid', kind: 'instance-offering' },
    { field: 'imageUuid', kind: 'image' },
    { field: 'l3NetworkUuids', kind: 'l3-network', many: true },
    { field: 'rootDiskOfferingUuid', kind: 'disk-offering' },
    { field: 'dataDiskOfferingUuids', kind: 'disk-offering', many: true },
    { field: 'dataVolumeTemplateUuids', kind: 'image', many: true },
    { field: 'zoneUuid', kind: 'zone' },
    { field: 'clusterUuid', kind: 'cluster' },
    { field: 'hostUuid', kind: 'host' },
    { field: 'primaryStorageUuidForRootVolume', kind: 'primary-storage' },
    { field: 'securityGroupUuids', kind: 'security-group', many: true },
    { field: 'affinityGroupUuid', kind: 'affinity-group' },
  ],
  states: VM_STATES,
  initialState: 'Created',
  adminOnly: false,
  createMode: 'async',
  deleteMode: 'async',
  systemFields: ['hostUuid', 'lastHostUuid', 'rootVolumeUuid', 'vmNics', 'allVolumes', 'clusterUuid', 'zoneUuid', 'internalId', 'hypervisorType'],
  defaults: { strategy: 'InstantStart', haLevel: 'None' },
  check: (b) => {
    if (b.instanceOfferingUuid === undefined) {
      if (b.cpuNum === undefined) throw invalid('cpuNum', 'required when no instanceOfferingUuid is given');
      if (b.memorySize === undefined) throw invalid('memorySize', 'required when no instanceOfferingUuid is given');
    } else if (b.cpuNum !== undefined || b.memorySize !== undefined) {
      throw invalid(b.cpuNum !== undefined ? 'cpuNum' : 'memorySize', 'give either instanceOfferingUuid or cpuNum+memorySize');
    }
    const l3s = b.l3NetworkUuids as string[];
    if (b.defaultL3NetworkUuid !== undefined && !l3s.includes(String(b.defaultL3NetworkUuid))) {
      throw invalid('defaultL3NetworkUuid', 'must be one of l3NetworkUuids');
    }
    for (const [i, s] of ((b.staticIps as Array<{ l3NetworkUuid: string }> | undefined) ?? []).entries()) {
      if (!l3s.includes(s.l3NetworkUuid)) throw invalid(`staticIps.${i}.l3NetworkUuid`, 'must be one of l3NetworkUuids');
    }
  },
  normalize: (b, ctx) => {
    const out: Record<string, unknown> = { ...b, defaultL3NetworkUuid: b.defaultL3NetworkUuid ?? (b.l3NetworkUuids as string[])[0] };
    const offering = ctx.refs.instanceOfferingUuid;
    if (offering) {
      out.cpuNum = offering.cpuNum;
      out.memorySize = offering.memorySize;
      out.allocatorStrategy ??= offering.allocatorStrategy;
    }
    const img = ctx.refs.imageUuid;
    if (img?.mediaType === 'ISO' && b.rootDiskOfferingUuid === undefined && b.rootDiskSize === undefined) {
      throw invalid('rootDiskOfferingUuid', 'an ISO image needs rootDiskOfferingUuid or rootDiskSize for the root volume');
    }
    if (img && img.mediaType === 'DataVolumeTemplate') throw invalid('imageUuid', 'a DataVolumeTemplate image cannot boot a VM');
    // requested placement is kept as requested*; hostUuid/clusterUuid/zoneUuid are where it runs
    for (const f of ['zoneUuid', 'clusterUuid', 'hostUuid'] as const) {
      if (out[f] !== undefined) {
        out[`requested${f[0]!.toUpperCase()}${f.slice(1)}`] = out[f];
        delete out[f];
      }
    }
    return out;
  },
  actions: {
    start: action(Obj({ hostUuid: Type.Optional(Uuid()) }), 'Start the VM (optionally on a given host)'),
    stop: action(Obj({ type: Type.Optional(Enum(['grace', 'cold'] as const)) }), 'Stop the VM: grace = ACPI shutdown then force, cold = power off'),
    reboot: emptyAction('Reboot the VM'),
    pause: emptyAction('Pause the VM (keeps memory)'),
    resume: emptyAction('Resume a paused VM'),
    recover: emptyAction('Recover a destroyed (not yet expunged) VM to Stopped'),
    expunge: emptyAction('Remove a destroyed VM for good: root volume, NICs and IPs'),
    attachVolume: action(Obj({ volumeUuid: Uuid() }), 'Attach a data volume'),
    detachVolume: action(Obj({ volumeUuid: Uuid() }), 'Detach a data volume'),
    attachL3Network: action(Obj({ l3NetworkUuid: Uuid(), staticIp: Type.Optional(Ipv4()) }), 'Add a NIC on an L3 network'),
    detachL3Network: action(Obj({ vmNicUuid: Uuid() }), 'Remove a NIC'),
    migrate: action(Obj({ hostUuid: Type.Optional(Uuid()) }), 'Migrate to another host: live when Running/Paused; cold (its local-storage volumes copied) when Stopped'),
    setHaLevel: action(Obj({ level: Enum(HA_LEVELS) }), 'HA (ZStack levels): NeverStop restarts the VM when it stops unasked or its host fails, OnHostFailure only on a host failure, None never'),
  },
};

export const vmNic: KindDef = {
  kind: 'vm-nic',
  collection: 'vm-nics',
  title: 'VM NIC',
  createSchema: Obj({ vmInstanceUuid: Uuid(), l3NetworkUuid: Uuid(), ip: Type.Optional(Ipv4()) }),
  updateSchema: Obj({}),
  parentField: 'vmInstanceUuid',
  parentKind: 'vm-instance',
  refs: [
    { field: 'vmInstanceUuid', kind: 'vm-instance' },
    { field: 'l3NetworkUuid', kind: 'l3-network' },
  ],
  states: [],
  adminOnly: false,
  createMode: 'none',
  deleteMode: 'async',
  systemFields: ['ip', 'mac', 'netmask', 'gateway', 'deviceId', 'internalName', 'ipRangeUuid', 'qos'],
  actions: {
    setQos: action(NicQos(), 'Limit the bandwidth of the NIC (bytes/s, as the VM sees it); applied live when its VM runs'),
    deleteQos: emptyAction('Remove the bandwidth limits of the NIC'),
  },
};

export const volume: KindDef = {
  kind: 'volume',
  collection: 'volumes',
  title: 'volume',
  createSchema: Obj({
    ...baseCreate(),
    diskOfferingUuid: Type.Optional(Uuid()),
    diskSize: Type.Optional(Bytes({ minimum: MiB })),
    /** a DataVolumeTemplate image: the volume starts with its data */
    imageUuid: Type.Optional(Uuid()),
    primaryStorageUuid: Type.Optional(Uuid()),
    format: Type.Optional(Enum(['qcow2', 'raw'] as const)),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [
    { field: 'diskOfferingUuid', kind: 'disk-offering' },
    { field: 'imageUuid', kind: 'image' },
    { field: 'primaryStorageUuid', kind: 'primary-storage' },
  ],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  statuses: VOLUME_STATUSES,
  initialStatus: 'NotInstantiated',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'async',
  systemFields: ['status', 'type', 'vmInstanceUuid', 'deviceId', 'installPath', 'size', 'actualSize', 'rootImageUuid', 'qos'],
  defaults: { format: 'qcow2', type: 'Data' },
  check: (b) => {
    const given = (['diskOfferingUuid', 'diskSize', 'imageUuid'] as const).filter((f) => b[f] !== undefined);
    if (given.length !== 1) throw invalid(given[1] ?? 'diskSize', 'give exactly one of diskOfferingUuid, diskSize, imageUuid');
  },
  normalize: (b, ctx) => {
    const img = ctx.refs.imageUuid;
    if (!img) return { ...b, size: b.diskSize ?? ctx.refs.diskOfferingUuid?.diskSize };
    if (img.mediaType !== 'DataVolumeTemplate') throw invalid('imageUuid', `image ${img.name} is a ${String(img.mediaType)}; a volume needs a DataVolumeTemplate`);
    if (img.status !== 'Ready') throw invalid('imageUuid', `image ${img.name} is ${String(img.status)}, not Ready`);
    return { ...b, size: img.size };
  },
  actions: {
    changeState: changeStateAction(),
    resize: action(Obj({ size: Bytes({ minimum: MiB }) }), 'Grow the volume to size bytes (never shrinks)'),
    createSnapshot: action(Obj({ name: Type.String({ minLength: 1, maxLength: 255 }), description: Type.Optional(Type.String({ maxLength: 2048 })) }), 'Take a snapshot'),
    setQos: action(VolumeQos(), 'Limit the I/O of the volume (bytes/s, IOPS); applied live when its VM runs'),
    deleteQos: emptyAction('Remove the I/O limits of the volume'),
  },
};

export const volumeSnapshot: KindDef = {
  kind: 'volume-snapshot',
  collection: 'volume-snapshots',
  title: 'volume snapshot',
  createSchema: Obj({ ...baseCreate(), volumeUuid: Uuid() }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'volumeUuid',
  parentKind: 'volume',
  refs: [{ field: 'volumeUuid', kind: 'volume' }],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  statuses: SNAPSHOT_STATUSES,
  initialStatus: 'Creating',
  adminOnly: false,
  createMode: 'async',
  deleteMode: 'async',
  systemFields: ['status', 'primaryStorageUuid', 'installPath', 'size', 'parentSnapshotUuid', 'latest', 'volumeType'],
  actions: {
    revert: emptyAction('Revert the volume to this snapshot (the VM must be stopped)'),
  },
};
