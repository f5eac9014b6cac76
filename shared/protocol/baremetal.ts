// Bare-metal agent commands (vrouteragent; docs/baremetal.md). The controller never talks to a
// BMC itself: a host's vrouteragent runs `ipmitool -I lanplus -C 3` through the exec helper, so
// the BMC network only has to be reachable from the hosts that also serve PXE on the
// provisioning L2. The BMC password travels in the request body (agent HTTP + bearer token,
// like a load balancer's private key) and reaches ipmitool through its environment (-E), never
// its command line (which the exec helper logs).
import { defineCommand } from './command.js';
import { Obj, Type } from './schema.js';

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
