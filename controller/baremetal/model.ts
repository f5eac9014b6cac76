// Bare metal (manual 裸机管理; docs/baremetal.md). A chassis is a physical machine known by its
// BMC: ZStack's BaremetalChassis {ipmiAddress, ipmiPort, ipmiUsername, ipmiPassword}, in a
// cluster. The password is sealed with the controller's secret key (controller/auth/secret-box.ts)
// into the internal field `_ipmiPassword` and never returned. Power and boot-device actions go
// through a host's vrouteragent (ipmitool), see ./api.ts.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { BMC_ADDRESS_RE, IPMI_PASSWORD_MAX, IPMI_USERNAME_RE, BOOT_DEVICES } from '../../shared/protocol/baremetal.js';
import { baseCreate, baseUpdate, Enum, Port, Uuid } from '../model/fields.js';
import { action, emptyAction, type KindDef } from '../model/kind.js';

/** What the BMC last reported (Unknown until the first power action or status read). */
export const POWER_STATES = ['On', 'Off', 'Unknown'] as const;
/** Available: free; Inspecting / Provisioning: a workflow owns it; Provisioned: a bare-metal instance runs on it. */
export const CHASSIS_STATUSES = ['Available', 'Inspecting', 'Provisioning', 'Provisioned'] as const;

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
  systemFields: ['zoneUuid', 'powerState', 'bootDevice', 'lastPowerCheck', 'hardware', 'status'],
  defaults: { ipmiPort: 623, powerState: 'Unknown' },
  normalize: (body, ctx) => ({ ...body, zoneUuid: ctx.refs.clusterUuid?.parentUuid }),
  actions: {
    powerOn: emptyAction('Power the machine on through its BMC; answers the chassis with the power state the BMC reports', false),
    powerOff: emptyAction('Power the machine off (hard) through its BMC', false),
    powerReset: emptyAction('Reset the machine through its BMC', false),
    powerStatus: emptyAction('Read the power state from the BMC (stored as powerState)', false),
    setBootDevice: action(Obj({ bootDevice: Enum(BOOT_DEVICES, { description: 'pxe (network) or disk; persistent' }) }), 'Set the boot device through the BMC', false),
  },
};

export const baremetalKinds: KindDef[] = [baremetalChassis];
