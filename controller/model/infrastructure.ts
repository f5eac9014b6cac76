// Hardware facilities (white paper §2.1.2.2): zone ⊃ cluster ⊃ host; primary storage (zone child,
// attached to clusters); backup storage (attached to zones).
import { Type, Obj, AbsPath } from '../../shared/protocol/schema.js';
import { baseCreate, baseUpdate, Enum, Port, Url, Uuid, Hostname } from './fields.js';
import { action, changeStateAction, emptyAction, type KindDef } from './kind.js';
import { CONNECTION_STATUSES, ENABLED_STATES, HOST_STATES, PRIMARY_STORAGE_STATES } from './states.js';

export const HYPERVISOR_TYPES = ['KVM'] as const;
export const PRIMARY_STORAGE_TYPES = ['LocalStorage', 'NFS', 'SharedMountPoint', 'Ceph'] as const;
export const BACKUP_STORAGE_TYPES = ['ImageStoreBackupStorage', 'Ceph'] as const;

/** Ceph (url ceph://pool): which cluster and cephx user the agents use; the user's key is read
 *  from the cluster by the storage agent and kept in a libvirt secret for the VMs' RBD disks. */
const cephConn = () => ({
  cephConf: Type.Optional(AbsPath({ description: 'Ceph: ceph.conf of the cluster on the hosts (default /etc/ceph/ceph.conf)' })),
  cephUser: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: "Ceph: cephx user without 'client.' (default admin)" })),
});

export const zone: KindDef = {
  kind: 'zone',
  collection: 'zones',
  title: 'zone',
  createSchema: Obj({ ...baseCreate() }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  actions: {
    changeState: changeStateAction(),
    attachBackupStorage: action(Obj({ backupStorageUuid: Uuid() }), 'Attach a backup storage (image server) to this zone', false),
    detachBackupStorage: action(Obj({ backupStorageUuid: Uuid() }), 'Detach a backup storage from this zone', false),
  },
};

export const cluster: KindDef = {
  kind: 'cluster',
  collection: 'clusters',
  title: 'cluster',
  createSchema: Obj({ ...baseCreate(), zoneUuid: Uuid(), hypervisorType: Type.Optional(Enum(HYPERVISOR_TYPES)) }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'zoneUuid',
  parentKind: 'zone',
  refs: [{ field: 'zoneUuid', kind: 'zone' }],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { hypervisorType: 'KVM' },
  actions: {
    changeState: changeStateAction(),
    attachPrimaryStorage: action(Obj({ primaryStorageUuid: Uuid() }), 'Attach a primary storage: every host of the cluster mounts it', true),
    detachPrimaryStorage: action(Obj({ primaryStorageUuid: Uuid() }), 'Detach a primary storage (refused while VMs of the cluster use it)', true),
    attachL2Network: action(
      Obj({
        l2NetworkUuid: Uuid(),
        vtepCidr: Type.Optional(Type.String({ maxLength: 18, description: "VXLAN pool only (required): the CIDR holding each host's tunnel endpoint address, e.g. 192.168.98.0/24" })),
      }),
      'Attach an L2 network: every host of the cluster gets its bridge (a VXLAN pool: with the VTEP CIDR; its VXLAN networks follow)',
      true,
    ),
    detachL2Network: action(Obj({ l2NetworkUuid: Uuid() }), 'Detach an L2 network (refused while VMs of the cluster use it)', true),
  },
};

export const host: KindDef = {
  kind: 'host',
  // a host add checks that its address is new (issue 19: scanning every host made 1,000 adds quadratic)
  indexes: ['managementIp'],
  collection: 'hosts',
  title: 'host',
  createSchema: Obj({
    ...baseCreate(),
    clusterUuid: Uuid(),
    managementIp: Hostname({ description: 'IPv4 address or DNS name the controller reaches the host on' }),
    username: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z_][a-z0-9_.-]*$' })),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    sshPrivateKey: Type.Optional(Type.String({ minLength: 1, maxLength: 16384, description: 'OpenSSH/PEM private key, instead of password (never stored)' })),
    sshPort: Type.Optional(Port()),
    agentPort: Type.Optional(Port()),
    virtType: Type.Optional(Enum(['kvm', 'qemu'] as const, { description: 'kvm (hardware) or qemu (TCG emulation)' })),
    ssh: Type.Optional(Type.Boolean({ description: 'false: a host of tstack-simulator, whose agents already run: no SSH deploy; give agentPort and agentToken' })),
    agentToken: Type.Optional(Type.String({ minLength: 16, maxLength: 256, pattern: '^[A-Za-z0-9_.~+/=-]+$', description: 'with ssh: false, the bearer token of the host\'s agents (never stored in the API view)' })),
  }),
  updateSchema: Obj({ ...baseUpdate(), virtType: Type.Optional(Enum(['kvm', 'qemu'] as const)) }),
  parentField: 'clusterUuid',
  parentKind: 'cluster',
  refs: [{ field: 'clusterUuid', kind: 'cluster' }],
  states: HOST_STATES,
  initialState: 'Enabled',
  statuses: CONNECTION_STATUSES,
  initialStatus: 'Connecting',
  adminOnly: true,
  createMode: 'async',
  deleteMode: 'async',
  secretFields: ['password', 'sshPrivateKey', 'agentToken'],
  systemFields: ['status', 'zoneUuid', 'hypervisorType', 'simulated', 'totalCpu', 'totalMemory', 'cpuSockets', 'cpuModelName', 'architecture', 'osDistribution', 'osVersion', 'kernelVersion', 'ipv4Addresses'],
  defaults: { username: 'root', sshPort: 22, agentPort: 7070, virtType: 'kvm' },
  normalize: (body, ctx) => ({ ...body, zoneUuid: ctx.refs.clusterUuid?.parentUuid, hypervisorType: ctx.refs.clusterUuid?.hypervisorType ?? 'KVM' }),
  actions: {
    changeState: changeStateAction(['enable', 'disable', 'maintain']),
    reconnect: emptyAction('Reconnect: re-deploy/verify the agent and refresh facts'),
  },
};

export const primaryStorage: KindDef = {
  kind: 'primary-storage',
  collection: 'primary-storage',
  title: 'primary storage',
  createSchema: Obj({
    ...baseCreate(),
    zoneUuid: Uuid(),
    type: Enum(PRIMARY_STORAGE_TYPES),
    url: Url(),
    mountOptions: Type.Optional(Type.String({ maxLength: 1024, pattern: '^[A-Za-z0-9_,=.:/-]*$' })),
    ...cephConn(),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'zoneUuid',
  parentKind: 'zone',
  refs: [{ field: 'zoneUuid', kind: 'zone' }],
  states: PRIMARY_STORAGE_STATES,
  initialState: 'Enabled',
  statuses: CONNECTION_STATUSES,
  initialStatus: 'Connecting',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['status', 'totalCapacity', 'availableCapacity', 'totalPhysicalCapacity', 'availablePhysicalCapacity'],
  actions: {
    changeState: changeStateAction(['enable', 'disable', 'maintain']),
    reconnect: emptyAction('Reconnect to the storage on every attached host and refresh capacity'),
  },
};

export const backupStorage: KindDef = {
  kind: 'backup-storage',
  collection: 'backup-storage',
  title: 'backup storage',
  createSchema: Obj({
    ...baseCreate(),
    type: Type.Optional(Enum(BACKUP_STORAGE_TYPES)),
    url: Url(),
    hostname: Hostname({ description: 'IPv4 address or DNS name of the image server' }),
    agentPort: Type.Optional(Port()),
    ...cephConn(),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  statuses: CONNECTION_STATUSES,
  initialStatus: 'Connecting',
  adminOnly: true,
  createMode: 'async',
  deleteMode: 'sync',
  systemFields: ['status', 'totalCapacity', 'availableCapacity'],
  defaults: { type: 'ImageStoreBackupStorage', agentPort: 7171 },
  actions: {
    changeState: changeStateAction(),
    reconnect: emptyAction('Reconnect to the image server agent and refresh capacity'),
  },
};
