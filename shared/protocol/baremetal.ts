// Bare-metal agent commands (vrouteragent; docs/baremetal.md). The controller never talks to a
// BMC itself: a host's vrouteragent runs `ipmitool -I lanplus -C 3` through the exec helper, so
// the BMC network only has to be reachable from the hosts that also serve PXE on the
// provisioning L2. The BMC password travels in the request body (agent HTTP + bearer token,
// like a load balancer's private key) and reaches ipmitool through its environment (-E), never
// its command line (which the exec helper logs).
import { invalid } from '../errors.js';
import { defineCommand } from './command.js';
import { Ipv4, Mac, Obj, Type, Uuid, type Static } from './schema.js';
import { Hostname, SshPublicKey } from './vrouter.js';
import { ImageStoreRef } from './storage.js';

/** IPv4 address or DNS name of a BMC; never starts with '-' (it is an ipmitool argument). */
export const BMC_ADDRESS_RE = '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$';
/** IPMI 2.0 user names are at most 16 bytes; printable, no leading '-'. */
export const IPMI_USERNAME_RE = '^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,15}$';
/** IPMI 2.0 passwords are at most 20 bytes. */
export const IPMI_PASSWORD_MAX = 20;

export const BmcTarget = Obj({
  address: Type.String({ pattern: BMC_ADDRESS_RE, maxLength: 253 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  username: Type.String({ pattern: IPMI_USERNAME_RE }),
  password: Type.String({ minLength: 1, maxLength: IPMI_PASSWORD_MAX, pattern: '^[\\x20-\\x7e]+$' }),
});

export const POWER_OPS = ['on', 'off', 'reset', 'status'] as const;
export type PowerOp = (typeof POWER_OPS)[number];
export const BOOT_DEVICES = ['pxe', 'disk'] as const;
export type BootDevice = (typeof BOOT_DEVICES)[number];

const PowerState = Type.Union([Type.Literal('on'), Type.Literal('off')]);

/**
 * Errors (details.step names the operation): IPMI_AUTH_FAILED (the BMC refused the user or
 * password), BMC_UNREACHABLE (no answer from address:port), IPMI_ERROR (anything else the BMC
 * or ipmitool said; stderr in details).
 */
export const IpmiPower = defineCommand({
  name: 'baremetal/ipmi/power',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ bmc: BmcTarget, op: Type.Union(POWER_OPS.map((o) => Type.Literal(o))) }),
  response: Obj({ powerState: PowerState }),
  description: 'chassis power on/off/reset/status through the BMC; answers the power state the BMC reports afterwards',
});

export const IpmiBootDevice = defineCommand({
  name: 'baremetal/ipmi/boot-device',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ bmc: BmcTarget, device: Type.Union(BOOT_DEVICES.map((d) => Type.Literal(d))) }),
  response: Obj({ device: Type.Union(BOOT_DEVICES.map((d) => Type.Literal(d))) }),
  description: 'set the boot device (persistent) through the BMC',
});

// ---- PXE servers --------------------------------------------------------------------------
// A PXE server is desired state, like a flat L3's DHCP: the controller sends the whole spec
// (pxe/apply); the agent renders dnsmasq's configuration (DHCP + TFTP + router advertisements,
// the last because iPXE otherwise waits ~13 s for IPv6 autoconfiguration) with a pure function
// and makes the namespace, dnsmasq and the HTTP endpoint (boot scripts, kernels and ramdisks,
// callbacks) match it. `running: false` keeps the spec and stops the services.

/** One machine the PXE server knows: what its iPXE script boots. */
export const PxeMachine = Obj({
  mac: Mac(),
  /** 'inspect' / 'deploy': the kernel + that ramdisk; 'local': iPXE exits (the firmware boots the next device, the disk). */
  boot: Type.Union([Type.Literal('inspect'), Type.Literal('deploy'), Type.Literal('local')]),
  /** One-time token the ramdisk presents to the callback (and that names its instructions). */
  token: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{16,128}$' })),
  /** boot 'deploy': what the deploy ramdisk does (GET /deploy/<token>/instructions); the files come from baremetal/deploy/prepare. */
  deploy: Type.Optional(
    Obj({
      action: Type.Union([Type.Literal('deploy'), Type.Literal('wipe')]),
      instanceUuid: Uuid(),
      /** deploy: the prepared image (raw, in the agent's image cache). */
      imageUuid: Type.Optional(Uuid()),
      /** The disk to write (a kernel name like vda/sda); default the ramdisk's first disk. */
      rootDevice: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9]{1,31}$' })),
    }),
  ),
});

export const PxeServerSpec = Obj({
  pxeServerUuid: Uuid(),
  /** The provisioning L2's bridge on this host (must exist). */
  bridge: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$' }),
  /** The server's own address on the provisioning network (outside the DHCP range). */
  serverIp: Ipv4(),
  dhcpRangeBegin: Ipv4(),
  dhcpRangeEnd: Ipv4(),
  dhcpRangeNetmask: Ipv4(),
  /** HTTP port of the boot endpoint inside the namespace. */
  httpPort: Type.Integer({ minimum: 1, maximum: 65535 }),
  running: Type.Boolean(),
  machines: Type.Array(PxeMachine, { maxItems: 4096 }),
  /** While a chassis of the zone is inspected: machines not in `machines` boot the inspection ramdisk with this token. */
  discoveryToken: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{16,128}$' })),
});
export type PxeServerSpecT = Static<typeof PxeServerSpec>;

/** What the inspection ramdisk reports (scripts/baremetal/inspect-rcS). */
export const InspectionReport = Obj({
  cpuNum: Type.Integer({ minimum: 0, maximum: 65_536 }),
  /** Sum of the firmware's System RAM ranges (a little under the installed memory). */
  memoryBytes: Type.Integer({ minimum: 0 }),
  disks: Type.Array(Obj({ name: Type.String({ pattern: '^[a-z0-9]{1,32}$' }), size: Type.Integer({ minimum: 0 }) }), { maxItems: 256 }),
  nics: Type.Array(Obj({ name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,15}$' }), mac: Mac() }), { maxItems: 256 }),
});
export type InspectionReportT = Static<typeof InspectionReport>;

/** What the deploy ramdisk reports (scripts/baremetal/deploy-rcS): done, or the step that failed and why. */
export const DeployReport = Obj({
  ok: Type.Boolean(),
  /** The ramdisk's step that failed: instructions, disk, image, checksum, configdrive, wipe. */
  step: Type.Optional(Type.String({ pattern: '^[a-z-]{1,32}$' })),
  message: Type.Optional(Type.String({ maxLength: 2000 })),
  disk: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9]{0,31}$' })),
  /** Seconds the ramdisk spent writing (image + config drive) or wiping. */
  seconds: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type DeployReportT = Static<typeof DeployReport>;

export const PxeServerState = Obj({
  pxeServerUuid: Type.String(),
  namespace: Type.String(),
  running: Type.Boolean(),
  dnsmasqPid: Type.Optional(Type.Integer()),
  http: Type.Boolean(),
  /** Boot scripts served, latest first (MAC, what it got, when). */
  recentBoots: Type.Array(Obj({ mac: Type.String(), boot: Type.String(), at: Type.String() })),
  /** What ramdisks reported to /callback/<token> (each token once), latest first. */
  reports: Type.Array(Obj({ token: Type.String(), at: Type.String(), report: InspectionReport })),
  /** What deploy ramdisks reported (each token once), latest first. */
  deployReports: Type.Optional(Type.Array(Obj({ token: Type.String(), at: Type.String(), report: DeployReport }))),
});

export const PxeApply = defineCommand({
  name: 'baremetal/pxe/apply',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ server: PxeServerSpec }),
  response: Obj({ state: PxeServerState, changed: Type.Boolean() }),
  description: "make a PXE server's namespace, dnsmasq and HTTP endpoint match its spec",
});

export const PxeDelete = defineCommand({
  name: 'baremetal/pxe/delete',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ pxeServerUuid: Uuid() }),
  response: Obj({ deleted: Type.Boolean() }),
  description: 'stop a PXE server and remove its namespace and files (idempotent)',
});

export const PxeStatus = defineCommand({
  name: 'baremetal/pxe/status',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 15_000,
  request: Obj({ pxeServerUuid: Uuid() }),
  response: Obj({ state: Type.Optional(PxeServerState) }),
  description: 'what runs of a PXE server on this host',
});

// ---- provisioning (image-based, like Ironic's direct deploy) -----------------------------
// The provisioning network is isolated: the deploy ramdisk reaches only the PXE server. So the
// PXE server's agent pulls the image from the image store (its HTTP export, bearer token that
// never leaves the hosts), converts it to raw once (the busybox ramdisk has no qemu-img) and
// serves it with its sha256, and builds the instance's config drive (NoCloud 'cidata' ISO);
// the ramdisk streams both onto the disk and checks the checksums.

export const ConfigDriveInput = Obj({
  hostname: Hostname(),
  sshKeys: Type.Optional(Type.Array(SshPublicKey(), { maxItems: 32 })),
  userData: Type.Optional(Type.String({ maxLength: 65_536 })),
  /** Root password in clear over the agent channel (like the BMC password); the drive holds its sha512-crypt hash only. */
  rootPassword: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\x20-\\x7e]+$' })),
  /** The instance's static address on the provisioning network (network-config v2). */
  network: Obj({ mac: Mac(), ip: Ipv4(), netmask: Ipv4(), gateway: Type.Optional(Ipv4()) }),
});

export const DeployPrepare = defineCommand({
  name: 'baremetal/deploy/prepare',
  agent: 'vrouter',
  mode: 'async',
  timeoutMs: 60 * 60_000,
  request: Obj({
    instanceUuid: Uuid(),
    image: Obj({
      imageUuid: Uuid(),
      imageStore: ImageStoreRef,
      md5: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{32}$' })),
      sha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })),
    }),
    configDrive: ConfigDriveInput,
  }),
  response: Obj({
    image: Obj({ sizeBytes: Type.Integer({ minimum: 0 }), sha256: Type.String(), cached: Type.Boolean() }),
    configDrive: Obj({ sizeBytes: Type.Integer({ minimum: 0 }), sha256: Type.String() }),
  }),
  description: "pull an image from the image store into this host's raw image cache (once) and build an instance's config drive, for the deploy ramdisk",
});

export const DeployCleanup = defineCommand({
  name: 'baremetal/deploy/cleanup',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ instanceUuid: Uuid() }),
  response: Obj({ removed: Type.Boolean() }),
  description: "remove an instance's config drive (it holds its keys and password hash) from this host",
});

const ip4 = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);

/**
 * A PXE server's addresses (controller and agent check the same): a contiguous netmask /8–/30,
 * the DHCP range inside the server's subnet and without its network/broadcast address, the
 * server outside the range. Errors name `<prefix><field>`.
 */
export function checkPxeRange(s: { serverIp: string; dhcpRangeBegin: string; dhcpRangeEnd: string; dhcpRangeNetmask: string }, prefix = '', serverField = 'serverIp'): void {
  const mask = ip4(s.dhcpRangeNetmask);
  const bits = mask.toString(2).padStart(32, '0');
  const len = bits.indexOf('0') === -1 ? 32 : bits.indexOf('0');
  if (!/^1*0*$/.test(bits) || len < 8 || len > 30) throw invalid(`${prefix}dhcpRangeNetmask`, 'not a contiguous netmask between /8 and /30');
  const net = Math.floor(ip4(s.serverIp) / 2 ** (32 - len)) * 2 ** (32 - len);
  const bcast = net + 2 ** (32 - len) - 1;
  const [ip, b, e] = [ip4(s.serverIp), ip4(s.dhcpRangeBegin), ip4(s.dhcpRangeEnd)];
  const inNet = (x: number): boolean => x >= net && x <= bcast;
  if (ip === net || ip === bcast) throw invalid(`${prefix}${serverField}`, 'is the network or broadcast address');
  if (!inNet(b)) throw invalid(`${prefix}dhcpRangeBegin`, `not in the server's subnet ${s.serverIp}/${len}`);
  if (!inNet(e)) throw invalid(`${prefix}dhcpRangeEnd`, `not in the server's subnet ${s.serverIp}/${len}`);
  if (b > e) throw invalid(`${prefix}dhcpRangeEnd`, 'before dhcpRangeBegin');
  if (b === net || e === bcast) throw invalid(`${prefix}dhcpRangeBegin`, 'the range includes the network or broadcast address');
  if (ip >= b && ip <= e) throw invalid(`${prefix}${serverField}`, 'inside the DHCP range');
}
