// Security groups on a kvm host (kvmagent): the controller sends the host's COMPLETE desired
// firewall (every guarded NIC on it, with its rules already resolved from all its groups, and
// the member set of every remote group those rules name); the agent renders it and applies it
// in one iptables-restore + one ipset restore. Sending the whole state makes apply idempotent
// and lets the reconcile queue repair drift (a flushed chain, a restarted agent) by re-sending.
import { defineCommand } from './command.js';
import { Obj, Type, Uuid, Mac, Ipv4, type Static } from './schema.js';
import { IfName } from './kvm.js';

/** An IPv4 CIDR (a.b.c.d/n); the renderer normalises the host bits. */
export const Cidr4 = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)/(3[0-2]|[12]?\\d)$', ...opts });

export const FirewallRule = Obj({
  protocol: Type.Union([Type.Literal('ALL'), Type.Literal('TCP'), Type.Literal('UDP'), Type.Literal('ICMP')]),
  /** TCP/UDP only; both or neither (neither = every port). */
  startPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  endPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  /** The peer (source for ingress, destination for egress) must be in this CIDR … */
  cidr: Type.Optional(Cidr4()),
  /** … and/or a member of this group (one of `sets`). Both given = both must match. */
  remoteGroupUuid: Type.Optional(Uuid()),
});
export type FirewallRuleT = Static<typeof FirewallRule>;

export const GuardedNic = Obj({
  /** The NIC's host tap device (physdev port on the bridge). */
  tap: IfName(),
  nicUuid: Uuid(),
  mac: Mac(),
  ip: Ipv4(),
  ingress: Type.Array(FirewallRule, { maxItems: 10_000 }),
  egress: Type.Array(FirewallRule, { maxItems: 10_000 }),
  /** false: egress is open (no egress rule of its groups closes it); true: only `egress` + services. */
  egressWhitelist: Type.Boolean(),
  /** The network's own DHCP/DNS servers on this host (DNS to them always allowed). */
  serviceIps: Type.Array(Ipv4(), { maxItems: 16 }),
  /** Drop frames whose source MAC/IP is not the NIC's own (per-L3 option, default off). */
  antiSpoofing: Type.Optional(Type.Boolean()),
});
export type GuardedNicT = Static<typeof GuardedNic>;

export const MemberSet = Obj({
  groupUuid: Uuid(),
  ips: Type.Array(Ipv4(), { maxItems: 65_536 }),
});
export type MemberSetT = Static<typeof MemberSet>;

export const HostFirewall = Obj({
  nics: Type.Array(GuardedNic, { maxItems: 4096 }),
  sets: Type.Array(MemberSet, { maxItems: 4096 }),
});
export type HostFirewallT = Static<typeof HostFirewall>;

export const FirewallApplyResult = Obj({
  nics: Type.Integer({ minimum: 0 }),
  rules: Type.Integer({ minimum: 0, description: 'iptables rules written' }),
  sets: Type.Integer({ minimum: 0 }),
  /** Chains and sets of NICs/groups no longer present that were removed. */
  removedChains: Type.Integer({ minimum: 0 }),
  removedSets: Type.Integer({ minimum: 0 }),
  durationMs: Type.Number({ minimum: 0 }),
});

export const SecurityGroupApply = defineCommand({
  name: 'secgroup/apply',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({ firewall: HostFirewall }),
  response: FirewallApplyResult,
  description: "replace the host's whole security-group firewall (tstack's own chains and sets only)",
});

export const SecurityGroupStatus = defineCommand({
  name: 'secgroup/status',
  agent: 'kvm',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({}),
  response: Obj({
    hooked: Type.Boolean(),
    chains: Type.Array(Type.String()),
    sets: Type.Array(Type.String()),
  }),
  description: "tstack's security-group chains and sets as they are on the host",
});
