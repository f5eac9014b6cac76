// kvm agent commands (declared once; see command.ts). The kvmagent answers these on port 7070;
// `ping` and `connect` come from common.ts.
import { defineCommand } from './command.js';
import { Obj, Type, Uuid, SafeName, AbsPath, Mac, Ipv4, type Static } from './schema.js';

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** A Linux network interface name (IFNAMSIZ: at most 15 bytes), safe for `ip` and domain XML. */
export const IfName = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$', ...opts });

/** A host name or IPv4 address, optionally with :port (Ceph monitors, NFS servers). */
export const HostPort = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$', ...opts });

export const VmState = Type.Union(
  ['Running', 'Paused', 'Stopping', 'Stopped', 'Crashed', 'Suspended', 'Unknown'].map((s) => Type.Literal(s)),
  { description: 'the hypervisor state of a VM (an absent domain is Stopped)' },
);
export type VmStateT = Static<typeof VmState>;

export const FileSource = Obj({
  type: Type.Literal('file'),
  path: AbsPath(),
  format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
});
export const RbdSource = Obj({
  type: Type.Literal('rbd'),
  /** Ceph names without ':' (QEMU's rbd option separator) or '/'. */
  pool: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }),
  image: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }),
  monitors: Type.Array(HostPort(), { minItems: 1, maxItems: 16 }),
  user: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: "Ceph user without 'client.'" })),
  secretUuid: Type.Optional(Uuid()),
  format: Type.Optional(Type.Union([Type.Literal('raw'), Type.Literal('qcow2')], { description: 'default raw' })),
});
export const NfsSource = Obj({
  type: Type.Literal('nfs'),
  server: HostPort(),
  export: AbsPath(),
  /** Path of the file inside the export; a leading '/' is still inside the export ('/v/x.qcow2' = '<export>/v/x.qcow2'). */
  path: Type.String({ pattern: '^(?!.*(^|/)\\.\\.(/|$))[A-Za-z0-9_./-]{1,1024}$' }),
  format: Type.Optional(Type.Union([Type.Literal('qcow2'), Type.Literal('raw')], { description: 'default qcow2' })),
});
export const VolumeSource = Type.Union([FileSource, RbdSource, NfsSource]);

/**
 * An NFS file's path on the server: the export joined with the path inside it. QEMU's nfs
 * driver MOUNTs the file's directory, so a path without the export names a directory the
 * server does not export (MNT3ERR_ACCES).
 */
export function nfsServerPath(s: { export: string; path: string }): string {
  return `${s.export.replace(/\/+$/, '')}/${s.path.replace(/^\/+/, '')}`;
}
export type VolumeSourceT = Static<typeof VolumeSource>;

export const DiskBus = Type.Union([Type.Literal('virtio'), Type.Literal('scsi'), Type.Literal('ide'), Type.Literal('sata')]);
export const DiskCache = Type.Union(
  ['none', 'writeback', 'writethrough', 'directsync', 'unsafe'].map((s) => Type.Literal(s)),
  { description: "'none' needs O_DIRECT (not on tmpfs)" },
);

/** Disk I/O limits (QEMU throttling; libvirt <iotune>). A total excludes read/write of the same unit. */
export const DiskQos = Obj({
  totalBytesSec: Type.Optional(Type.Integer({ minimum: 1 })),
  readBytesSec: Type.Optional(Type.Integer({ minimum: 1 })),
  writeBytesSec: Type.Optional(Type.Integer({ minimum: 1 })),
  totalIopsSec: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type DiskQosT = Static<typeof DiskQos>;

/** NIC bandwidth from the guest's point of view: inbound = into the VM (libvirt <bandwidth>). */
export const NicQos = Obj({
  inboundBytesSec: Type.Optional(Type.Integer({ minimum: 1024 })),
  outboundBytesSec: Type.Optional(Type.Integer({ minimum: 1024 })),
});
export type NicQosT = Static<typeof NicQos>;

export const VolumeSpec = Obj({
  uuid: Uuid(),
  source: VolumeSource,
  bus: DiskBus,
  cache: DiskCache,
  /** Disk serial the guest sees (/dev/disk/by-id); at most 20 characters for virtio-blk. */
  serial: Type.String({ pattern: '^[A-Za-z0-9_-]{1,20}$' }),
  /** Position on its bus: 0 → vda/sda/hda, 1 → vdb … (the root volume is usually 0). */
  deviceIndex: Type.Integer({ minimum: 0, maximum: 25 }),
  readonly: Type.Optional(Type.Boolean()),
  shareable: Type.Optional(Type.Boolean()),
  qos: Type.Optional(DiskQos),
});
export type VolumeSpecT = Static<typeof VolumeSpec>;

export const NicSpec = Obj({
  uuid: Uuid(),
  mac: Mac(),
  bridge: IfName({ description: 'host bridge the NIC plugs into (must exist)' }),
  model: Type.Union([Type.Literal('virtio'), Type.Literal('e1000'), Type.Literal('rtl8139')]),
  mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9216 })),
  /** Host tap device name; default derived from the NIC uuid ("vn" + 11 hex digits). */
  internalName: Type.Optional(IfName()),
  qos: Type.Optional(NicQos),
});
export type NicSpecT = Static<typeof NicSpec>;

export const ConsoleSpec = Obj({
  type: Type.Literal('vnc'),
  /** Address the VNC server listens on (default 127.0.0.1). */
  listen: Type.Optional(Ipv4()),
  /** VNC password: at most 8 printable ASCII characters (VNC uses only 8). */
  password: Type.Optional(Type.String({ pattern: '^[\\x21-\\x7e]{1,8}$' })),
});

export const BootDev = Type.Union([Type.Literal('hd'), Type.Literal('cdrom'), Type.Literal('network')]);

export const VmSpec = Obj({
  uuid: Uuid(),
  name: SafeName({ description: 'display name; letters, digits and _.:- only' }),
  cpuNum: Type.Integer({ minimum: 1, maximum: 256 }),
  /** vCPUs the VM may be raised to while running (default cpuNum). */
  maxCpuNum: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  /** Bytes; at least 16 MiB; rounded up to KiB. */
  memorySize: Type.Integer({ minimum: 16 * 1024 * 1024 }),
  /** Bytes the balloon may grow the VM to while running (default memorySize). */
  maxMemorySize: Type.Optional(Type.Integer({ minimum: 16 * 1024 * 1024 })),
  cpuMode: Type.Union([Type.Literal('default'), Type.Literal('host-model'), Type.Literal('host-passthrough'), Type.Literal('custom')]),
  cpuModel: Type.Optional(SafeName({ description: "with cpuMode 'custom', e.g. Haswell-noTSX" })),
  virtType: Type.Union([Type.Literal('kvm'), Type.Literal('qemu')]),
  machine: Type.Optional(Type.Union([Type.Literal('pc'), Type.Literal('q35')], { description: 'default pc' })),
  rootVolume: VolumeSpec,
  dataVolumes: Type.Array(VolumeSpec, { maxItems: 24 }),
  /** ISO files, attached as CD-ROMs in order. */
  cdroms: Type.Array(AbsPath(), { maxItems: 3 }),
  /** CD-ROM drives for ISOs (default cdroms.length): empty ones take ISOs later (vm/attach-iso). */
  isoSlots: Type.Optional(Type.Integer({ minimum: 0, maximum: 3 })),
  /** NoCloud config drive (ISO labelled cidata), attached as an extra read-only CD-ROM. */
  configDrive: Type.Optional(AbsPath()),
  nics: Type.Array(NicSpec, { maxItems: 16 }),
  bootOrder: Type.Array(BootDev, { minItems: 1, maxItems: 3 }),
  console: Type.Optional(ConsoleSpec),
  /** Serial port 0 is written to this file (the guest's console log). */
  serialLogPath: Type.Optional(AbsPath()),
});
export type VmSpecT = Static<typeof VmSpec>;

/** What libvirt says a domain has now (parsed from its live XML). */
export const VmDevices = Obj({
  volumes: Type.Array(
    Obj({
      /** tstack volume uuid, when the disk was attached by tstack. */
      uuid: Type.Optional(Type.String()),
      device: Type.String({ description: 'disk or cdrom' }),
      target: Type.String({ description: 'guest device name, e.g. vdb' }),
      bus: Type.String(),
      source: Type.Optional(Type.String({ description: 'file path, or protocol:name for network disks' })),
      serial: Type.Optional(Type.String()),
      /** CD-ROM drives for ISOs: their slot number (vm/attach-iso). */
      isoSlot: Type.Optional(Type.Integer()),
    }),
  ),
  nics: Type.Array(
    Obj({
      uuid: Type.Optional(Type.String()),
      mac: Type.String(),
      bridge: Type.Optional(Type.String()),
      internalName: Type.Optional(Type.String()),
      model: Type.Optional(Type.String()),
    }),
  ),
});
export type VmDevicesT = Static<typeof VmDevices>;

export const VmStatus = Obj({
  uuid: Type.String(),
  domainName: Type.String(),
  state: VmState,
  /** libvirt's reason, e.g. "shutdown", "crashed", "ioerror" (when known). */
  reason: Type.Optional(Type.String()),
  cpuNum: Type.Optional(Type.Integer()),
  memorySize: Type.Optional(Type.Integer({ description: 'bytes' })),
  devices: Type.Optional(VmDevices),
});
export type VmStatusT = Static<typeof VmStatus>;

const VmRef = { uuid: Uuid() };
const vmKey = (r: { uuid: string }): string => `vm:${r.uuid.toLowerCase()}`;
/** Serial queue key for VM commands: one operation at a time per VM. */
export const vmQueueKey = vmKey;

// ---------------------------------------------------------------------------------------------
// Host

export const HostFacts = defineCommand({
  name: 'host/facts',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({}),
  response: Obj({
    hostname: Type.String(),
    cpu: Obj({
      manufacturer: Type.String(),
      model: Type.String(),
      arch: Type.String(),
      sockets: Type.Integer(),
      cores: Type.Integer(),
      threads: Type.Integer(),
      mhz: Type.Number(),
      flags: Type.Array(Type.String()),
    }),
    memory: Obj({ total: Type.Integer({ description: 'bytes' }) }),
    os: Obj({ distro: Type.String(), release: Type.String(), kernel: Type.String(), arch: Type.String() }),
    nics: Type.Array(
      Obj({
        name: Type.String(),
        mac: Type.String(),
        speedMbps: Type.Optional(Type.Number()),
        state: Type.String(),
        mtu: Type.Optional(Type.Integer()),
        ipv4: Type.Array(Type.String()),
        virtual: Type.Boolean(),
      }),
    ),
    disks: Type.Array(Obj({ name: Type.String(), type: Type.String(), size: Type.Integer() })),
    hypervisor: Obj({
      libvirtVersion: Type.String(),
      qemuVersion: Type.String(),
      kvmDevice: Type.Boolean({ description: '/dev/kvm exists' }),
      /** virtTypes this host offers; 'qemu' (TCG) always works, 'kvm' needs /dev/kvm. */
      virtTypes: Type.Array(Type.String()),
      defaultVirtType: Type.String(),
    }),
    kernelFeatures: Obj({ vlan8021q: Type.Boolean(), vxlan: Type.Boolean(), bridge: Type.Boolean() }),
  }),
  description: 'host facts: CPU, memory, OS, NICs, disks, hypervisor versions',
});

export const HostCapacity = defineCommand({
  name: 'host/capacity',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({}),
  response: Obj({
    cpuNum: Type.Integer({ description: 'logical CPUs of the host' }),
    cpuUsed: Type.Integer({ description: 'vCPUs of running domains' }),
    totalMemory: Type.Integer({ description: 'bytes' }),
    usedMemory: Type.Integer({ description: 'bytes given to running domains' }),
    availableMemory: Type.Integer({ description: 'bytes the kernel reports as available' }),
    vmCount: Type.Integer(),
  }),
  description: 'CPU and memory: totals and what running VMs use',
});

// ---------------------------------------------------------------------------------------------
// VM lifecycle

export const VmStart = defineCommand({
  name: 'vm/start',
  agent: 'kvm',
  timeoutMs: 5 * 60_000,
  request: Obj({ spec: VmSpec }),
  response: Obj({
    uuid: Type.String(),
    domainName: Type.String(),
    state: VmState,
    /** True when the domain was already running (nothing was changed). */
    alreadyRunning: Type.Boolean(),
    vnc: Type.Optional(Obj({ host: Type.String(), port: Type.Integer() })),
    devices: VmDevices,
  }),
  description: 'define the domain from a typed spec and start it',
});

export const VmStop = defineCommand({
  name: 'vm/stop',
  agent: 'kvm',
  timeoutMs: 10 * 60_000,
  request: Obj({
    ...VmRef,
    /** grace: ACPI power button, then force after timeoutMs; cold: ACPI, fail after timeoutMs; force: pull the plug. */
    type: Type.Union([Type.Literal('grace'), Type.Literal('cold'), Type.Literal('force')]),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000, description: 'default 60 s' })),
  }),
  response: Obj({ uuid: Type.String(), state: VmState, forced: Type.Boolean(), wasRunning: Type.Boolean() }),
  description: 'shut a VM down (ACPI, then force) and remove its domain definition',
});

export const VmReboot = defineCommand({
  name: 'vm/reboot',
  agent: 'kvm',
  timeoutMs: 5 * 60_000,
  request: Obj({ ...VmRef, type: Type.Optional(Type.Union([Type.Literal('acpi'), Type.Literal('reset')], { description: 'default acpi' })) }),
  response: Obj({ uuid: Type.String(), state: VmState }),
  description: 'reboot a running VM (ACPI or hard reset)',
});

export const VmPause = defineCommand({
  name: 'vm/pause',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj(VmRef),
  response: Obj({ uuid: Type.String(), state: VmState }),
});

export const VmResume = defineCommand({
  name: 'vm/resume',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj(VmRef),
  response: Obj({ uuid: Type.String(), state: VmState }),
});

export const VmDestroy = defineCommand({
  name: 'vm/destroy',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj(VmRef),
  response: Obj({ uuid: Type.String(), existed: Type.Boolean() }),
  description: 'power off at once and undefine; an absent domain is success',
});

export const VmGetState = defineCommand({
  name: 'vm/state',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj(VmRef),
  response: VmStatus,
  description: 'state and devices of one VM (absent → Stopped)',
});

export const VmSync = defineCommand({
  name: 'vm/sync',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ includeForeign: Type.Optional(Type.Boolean({ description: 'also list domains tstack did not create' })) }),
  response: Obj({
    vms: Type.Array(VmStatus),
    foreign: Type.Array(Obj({ name: Type.String(), uuid: Type.String(), state: VmState })),
  }),
  description: 'every tstack domain on the host with its state',
});

export const VmConsole = defineCommand({
  name: 'vm/console',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj(VmRef),
  response: Obj({ uuid: Type.String(), protocol: Type.Literal('vnc'), host: Type.String(), port: Type.Integer() }),
  description: 'where the VNC console of a running VM listens',
});

// ---------------------------------------------------------------------------------------------
// Live changes

export const VmAttachVolume = defineCommand({
  name: 'vm/attach-volume',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj({ ...VmRef, volume: VolumeSpec }),
  response: Obj({ uuid: Type.String(), volumeUuid: Type.String(), target: Type.String(), alreadyAttached: Type.Boolean() }),
  description: 'hot-plug a data volume (live and persistent)',
});

export const VmDetachVolume = defineCommand({
  name: 'vm/detach-volume',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj({ ...VmRef, volumeUuid: Uuid(), timeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 110_000 })) }),
  response: Obj({ uuid: Type.String(), volumeUuid: Type.String(), wasAttached: Type.Boolean() }),
  description: 'hot-unplug a data volume; waits until the guest releases it',
});

export const VmAttachNic = defineCommand({
  name: 'vm/attach-nic',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj({ ...VmRef, nic: NicSpec }),
  response: Obj({ uuid: Type.String(), nicUuid: Type.String(), internalName: Type.String(), alreadyAttached: Type.Boolean() }),
});

export const VmDetachNic = defineCommand({
  name: 'vm/detach-nic',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj({ ...VmRef, nicUuid: Uuid(), timeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 110_000 })) }),
  response: Obj({ uuid: Type.String(), nicUuid: Type.String(), wasAttached: Type.Boolean() }),
});

export const VmSetCpuMemory = defineCommand({
  name: 'vm/set-cpu-memory',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj({
    ...VmRef,
    cpuNum: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
    memorySize: Type.Optional(Type.Integer({ minimum: 16 * 1024 * 1024, description: 'bytes' })),
  }),
  response: Obj({
    uuid: Type.String(),
    cpuNum: Type.Integer({ description: 'vCPUs the VM has now' }),
    memorySize: Type.Integer({ description: 'bytes the guest has now (what the balloon reached)' }),
    /** The balloon target that was set (memorySize differs while, or when, the guest does not follow it). */
    memoryTarget: Type.Integer(),
    /** What did not (yet) take effect in the guest, in words an operator can act on. */
    warnings: Type.Array(Type.String()),
  }),
  description: 'change vCPUs (up to maxCpuNum) and memory (balloon, up to maxMemorySize) of a running VM',
});

export const VmAttachIso = defineCommand({
  name: 'vm/attach-iso',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj({ ...VmRef, isoPath: AbsPath(), slot: Type.Optional(Type.Integer({ minimum: 0, maximum: 2, description: 'default: the first empty slot' })) }),
  response: Obj({ uuid: Type.String(), slot: Type.Integer(), target: Type.String(), alreadyAttached: Type.Boolean() }),
  description: 'insert an ISO into an empty CD-ROM slot (running or not); the VM needs spec.isoSlots',
});

export const VmDetachIso = defineCommand({
  name: 'vm/detach-iso',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj({ ...VmRef, isoPath: Type.Optional(AbsPath()), slot: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 })) }),
  response: Obj({ uuid: Type.String(), ejected: Type.Array(Type.Integer({ description: 'slots emptied' })) }),
  description: 'eject an ISO (by path or slot; neither: all ISOs)',
});

export const VmResizeVolume = defineCommand({
  name: 'vm/resize-volume',
  agent: 'kvm',
  timeoutMs: 2 * 60_000,
  request: Obj({ ...VmRef, volumeUuid: Uuid(), size: Type.Integer({ minimum: 1024 * 1024, description: 'new virtual size in bytes; never smaller' }) }),
  response: Obj({ uuid: Type.String(), volumeUuid: Type.String(), size: Type.Integer(), changed: Type.Boolean() }),
  description: 'grow a volume of a running VM (the guest sees the new size at once)',
});

export const VmSetVolumeQos = defineCommand({
  name: 'vm/set-volume-qos',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj({ ...VmRef, volumeUuid: Uuid(), qos: DiskQos }),
  response: Obj({ uuid: Type.String(), volumeUuid: Type.String(), qos: DiskQos }),
  description: 'set the I/O limits of a volume of a running VM, live and in its config (an empty qos removes them)',
});

export const VmSetNicQos = defineCommand({
  name: 'vm/set-nic-qos',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj({ ...VmRef, nicUuid: Uuid(), qos: NicQos }),
  response: Obj({ uuid: Type.String(), nicUuid: Type.String(), qos: NicQos }),
  description: 'set the bandwidth of a NIC of a running VM, live and in its config (an empty qos removes it)',
});

export const VmSetConsolePassword = defineCommand({
  name: 'vm/set-console-password',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: Obj({ ...VmRef, password: Type.Optional(Type.String({ pattern: '^[\\x21-\\x7e]{1,8}$', description: 'absent: remove the password' })) }),
  response: Obj({ uuid: Type.String(), hasPassword: Type.Boolean() }),
  description: 'set or remove the VNC password of a VM, live and in its config',
});

export const VmSnapshot = defineCommand({
  name: 'vm/snapshot',
  agent: 'kvm',
  timeoutMs: 5 * 60_000,
  request: Obj({
    ...VmRef,
    /** Each listed volume switches to a new top file; the old file becomes the snapshot. */
    volumes: Type.Array(
      Obj({
        volumeUuid: Uuid(),
        newTopPath: AbsPath(),
        /** A volume QEMU opens over NFS (libnfs) switches to this source; newTopPath is its path on the server. */
        newTop: Type.Optional(NfsSource),
        /** The storage agent already created newTopPath (a qcow2 whose backing file is the current one). */
        reuseExisting: Type.Optional(Type.Boolean()),
      }),
      { minItems: 1, maxItems: 25 },
    ),
    /** required: fail without a guest agent; preferred (default): quiesce when the guest agent answers; no. */
    quiesce: Type.Optional(Type.Union([Type.Literal('required'), Type.Literal('preferred'), Type.Literal('no')])),
  }),
  response: Obj({
    uuid: Type.String(),
    quiesced: Type.Boolean(),
    volumes: Type.Array(Obj({ volumeUuid: Type.String(), snapshotPath: Type.String(), newTopPath: Type.String() })),
  }),
  description: 'live external disk-only snapshot of file and NFS (libnfs) volumes (atomic across the listed volumes)',
});

export const VmMigrate = defineCommand({
  name: 'vm/migrate',
  agent: 'kvm',
  timeoutMs: 30 * 60_000,
  request: Obj({
    ...VmRef,
    /** The destination host's management address: its libvirtd (qemu+tcp, port 16509) and QEMU's migration stream. */
    destAddress: Ipv4(),
    /** VNC listen address on the destination (the domain's own address is the source's). */
    destConsoleListen: Type.Optional(Ipv4()),
    /** Local storage: copy the disks too (the destination volumes must exist, same virtual size). */
    copyStorage: Type.Optional(Type.Boolean()),
    /** Shared storage libvirt cannot prove coherent (a shared mount point on ext4): migrate anyway. */
    unsafe: Type.Optional(Type.Boolean()),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1_000, maximum: 1_800_000, description: 'default 10 min; the job is aborted after it' })),
  }),
  response: Obj({ uuid: Type.String(), durationMs: Type.Integer() }),
  description: 'live-migrate a running VM peer-to-peer to another host; on success the domain runs (persistent) there and is gone here',
});

// ---------------------------------------------------------------------------------------------
// L2 networks on the host

export const L2Type = Type.Union([Type.Literal('NoVlan'), Type.Literal('Vlan'), Type.Literal('Vxlan')]);

export const BridgeRequest = Obj({
  type: L2Type,
  /** Host NIC the bridge (NoVlan/Vlan) or the VXLAN tunnel (optional) sits on. */
  physicalInterface: Type.Optional(IfName()),
  vlan: Type.Optional(Type.Integer({ minimum: 1, maximum: 4094 })),
  vni: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_777_215 })),
  /** VXLAN: this host's tunnel endpoint address. */
  vtepIp: Type.Optional(Ipv4()),
  /** VXLAN: unicast peers (head-end replication) … */
  peers: Type.Optional(Type.Array(Ipv4(), { maxItems: 1024 })),
  /** … or a multicast group (needs physicalInterface). */
  group: Type.Optional(Ipv4()),
  dstPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'default 4789' })),
  mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9216 })),
  /** Override the derived bridge name (must be a valid interface name). */
  bridgeName: Type.Optional(IfName()),
  l2NetworkUuid: Type.Optional(Uuid()),
});
export type BridgeRequestT = Static<typeof BridgeRequest>;

const BridgeResult = Obj({
  bridgeName: Type.String(),
  /** The VLAN sub-interface or VXLAN device enslaved to the bridge, if any. */
  memberName: Type.Optional(Type.String()),
  /** create: whether anything had to be created; check: whether everything is in place. */
  changed: Type.Boolean(),
  exists: Type.Boolean(),
  problems: Type.Array(Type.String()),
});

const bridgeKey = (): string => 'network';

export const BridgeCreate = defineCommand({
  name: 'network/bridge/create',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: BridgeRequest,
  response: BridgeResult,
  description: 'create (idempotently) the bridge of a NoVlan, Vlan or Vxlan L2 network',
});

export const BridgeDelete = defineCommand({
  name: 'network/bridge/delete',
  agent: 'kvm',
  timeoutMs: 60_000,
  request: BridgeRequest,
  response: BridgeResult,
  description: 'delete the bridge and its VLAN/VXLAN member; never the physical interface',
});

export const BridgeCheck = defineCommand({
  name: 'network/bridge/check',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 30_000,
  request: BridgeRequest,
  response: BridgeResult,
  description: 'report whether the bridge and its member exist as requested',
});

export const networkQueueKey = bridgeKey;

/** Event types the kvmagent pushes to POST /v1/agent-events. */
export const KvmEvents = {
  /** data: { vmUuid, domainName, from, to, reason?, cause: 'external' } */
  vmStateChanged: 'vm.state-changed',
} as const;
