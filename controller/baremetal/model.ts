// Bare metal (manual 裸机管理; docs/baremetal.md). A chassis is a physical machine known by its
// BMC: ZStack's BaremetalChassis {ipmiAddress, ipmiPort, ipmiUsername, ipmiPassword}, in a
// cluster. The password is sealed with the controller's secret key (controller/auth/secret-box.ts)
// into the internal field `_ipmiPassword` and never returned. Power and boot-device actions go
// through a host's vrouteragent (ipmitool), see ./api.ts.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { BMC_ADDRESS_RE, IPMI_PASSWORD_MAX, IPMI_USERNAME_RE, BOOT_DEVICES, checkPxeRange } from '../../shared/protocol/baremetal.js';
import { Ipv4 } from '../../shared/protocol/schema.js';
import { baseCreate, baseUpdate, Enum, Port, Uuid } from '../model/fields.js';
import { action, emptyAction, type KindDef } from '../model/kind.js';
import { ENABLED_STATES } from '../model/states.js';
import { invalid } from '../../shared/errors.js';
import { baremetalInstance } from './instance-model.js';

/** What the BMC last reported (Unknown until the first power action or status read). */
export const POWER_STATES = ['On', 'Off', 'Unknown'] as const;
/** Available: free; Inspecting / Provisioning: a workflow owns it; Provisioned: a bare-metal instance runs on it. */
export const CHASSIS_STATUSES = ['Available', 'Inspecting', 'Provisioning', 'Provisioned', 'Deleting'] as const;

const IpmiAddress = () => Type.String({ minLength: 1, maxLength: 253, pattern: BMC_ADDRESS_RE, description: 'IPv4 address or DNS name of the BMC' });
const IpmiUsername = () => Type.String({ pattern: IPMI_USERNAME_RE, description: 'BMC user (IPMI 2.0: at most 16 characters)' });
const IpmiPassword = () => Type.String({ minLength: 1, maxLength: IPMI_PASSWORD_MAX, pattern: '^[\\x20-\\x7e]+$', description: 'BMC password (IPMI 2.0: at most 20 printable ASCII characters); stored encrypted, never returned' });

export const baremetalChassis: KindDef = {
  kind: 'baremetal-chassis',
  collection: 'baremetal-chassis',
  title: 'bare-metal chassis',
  createSchema: Obj({
    ...baseCreate(),
    clusterUuid: Uuid(),
    ipmiAddress: IpmiAddress(),
    ipmiPort: Type.Optional(Port()),
    ipmiUsername: IpmiUsername(),
    ipmiPassword: IpmiPassword(),
  }),
  updateSchema: Obj({
    ...baseUpdate(),
    ipmiAddress: Type.Optional(IpmiAddress()),
    ipmiPort: Type.Optional(Port()),
    ipmiUsername: Type.Optional(IpmiUsername()),
    ipmiPassword: Type.Optional(IpmiPassword()),
  }),
  parentField: 'clusterUuid',
  parentKind: 'cluster',
  refs: [{ field: 'clusterUuid', kind: 'cluster' }],
  states: [],
  statuses: CHASSIS_STATUSES,
  initialStatus: 'Available',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  secretFields: ['ipmiPassword'],
  systemFields: ['zoneUuid', 'powerState', 'bootDevice', 'lastPowerCheck', 'hardware', 'status', 'instanceUuid'],
  defaults: { ipmiPort: 623, powerState: 'Unknown' },
  normalize: (body, ctx) => ({ ...body, zoneUuid: ctx.refs.clusterUuid?.parentUuid }),
  actions: {
    powerOn: emptyAction('Power the machine on through its BMC; answers the chassis with the power state the BMC reports', false),
    powerOff: emptyAction('Power the machine off (hard) through its BMC', false),
    powerReset: emptyAction('Reset the machine through its BMC', false),
    powerStatus: emptyAction('Read the power state from the BMC (stored as powerState)', false),
    setBootDevice: action(Obj({ bootDevice: Enum(BOOT_DEVICES, { description: 'pxe (network) or disk; persistent' }) }), 'Set the boot device through the BMC', false),
    inspect: action(
      Obj({ timeoutSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, description: 'how long to wait for the inspection ramdisk (default 600)' })) }),
      "Discover the hardware: PXE-boot the zone's inspection ramdisk, store its report as `hardware`, power off",
      true,
    ),
  },
};

export const PXE_SERVER_STATUSES = ['Starting', 'Running', 'Stopped', 'Error'] as const;
/** The boot endpoint's port inside the PXE server's own namespace. */
export const PXE_HTTP_PORT = 80;

/** The server's own address: given, or the subnet's first host address when that is outside the range. */
export function pxeServerIp(b: Record<string, unknown>): string {
  if (typeof b.dhcpInterfaceAddress === 'string') return b.dhcpInterfaceAddress;
  const o = String(b.dhcpRangeBegin).split('.').map(Number);
  const m = String(b.dhcpRangeNetmask).split('.').map(Number);
  const first = o.map((x, i) => x & m[i]!);
  first[3] = first[3]! + 1;
  return first.join('.');
}

export const baremetalPxeServer: KindDef = {
  kind: 'baremetal-pxe-server',
  collection: 'baremetal-pxe-servers',
  title: 'bare-metal PXE server',
  createSchema: Obj({
    ...baseCreate(),
    zoneUuid: Uuid(),
    hostUuid: Uuid({ description: 'the host whose vrouteragent runs it (and talks to the BMCs of the zone)' }),
    l2NetworkUuid: Uuid({ description: 'the provisioning L2 network the machines PXE-boot on' }),
    dhcpRangeBegin: Ipv4(),
    dhcpRangeEnd: Ipv4(),
    dhcpRangeNetmask: Ipv4(),
    dhcpInterfaceAddress: Type.Optional(Ipv4({ description: "the server's address on the provisioning network (default: the subnet's first host address)" })),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'zoneUuid',
  parentKind: 'zone',
  refs: [
    { field: 'zoneUuid', kind: 'zone' },
    { field: 'hostUuid', kind: 'host' },
    { field: 'l2NetworkUuid', kind: 'l2-network' },
  ],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  statuses: PXE_SERVER_STATUSES,
  initialStatus: 'Starting',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['status', 'namespace', 'lastError', 'recentBoots'],
  check: (b) => {
    checkPxeRange({ serverIp: pxeServerIp(b), dhcpRangeBegin: String(b.dhcpRangeBegin), dhcpRangeEnd: String(b.dhcpRangeEnd), dhcpRangeNetmask: String(b.dhcpRangeNetmask) }, '', 'dhcpInterfaceAddress');
  },
  normalize: (body, ctx) => {
    if (ctx.refs.hostUuid?.zoneUuid !== body.zoneUuid) throw invalid('hostUuid', `host ${String(body.hostUuid)} is not in zone ${String(body.zoneUuid)}`);
    if (ctx.refs.l2NetworkUuid?.zoneUuid !== body.zoneUuid) throw invalid('l2NetworkUuid', `L2 network ${String(body.l2NetworkUuid)} is not in zone ${String(body.zoneUuid)}`);
    return { ...body, dhcpInterfaceAddress: pxeServerIp(body) };
  },
  actions: {
    start: emptyAction('Start the PXE server (state Enabled): DHCP, TFTP and HTTP serve again', false),
    stop: emptyAction('Stop the PXE server (state Disabled): its namespace and dnsmasq are removed; the definition stays', false),
  },
};

export const baremetalKinds: KindDef[] = [baremetalChassis, baremetalPxeServer, baremetalInstance];
