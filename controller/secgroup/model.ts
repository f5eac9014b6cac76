// Security groups (manual 7.5.1 安全组): the kind, its rules and their validation.
//
// A group is one resource holding everything about it, so its view is complete and every change
// is one store update (serialised per group by the API handlers):
//   rules[]                  SecurityGroupRule {uuid, type, protocol, startPort, endPort,
//                            allowedCidr?, remoteSecurityGroupUuid?, ipVersion: 4}
//   attachedL3NetworkUuids[] only NICs on these L3 networks may join
//   vmNicUuids[]             member NICs
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Enum, Uuid } from '../model/fields.js';
import { action, type KindDef } from '../model/kind.js';
import { parseCidr, intToIp } from '../model/ipv4.js';
import type { InventoryStore, Resource } from '../store/types.js';

export const RULE_TYPES = ['Ingress', 'Egress'] as const;
export const RULE_PROTOCOLS = ['ALL', 'TCP', 'UDP', 'ICMP'] as const;
export const SG_STATES = ['Enabled', 'Disabled'] as const;
/** Quota name (the tenancy issue enforces quotas; declared here). */
export const SECURITY_GROUP_QUOTA = 'securityGroup.num';
/** Rules per group: keeps one host's rendered ruleset (rules × NICs) within reason. */
export const MAX_RULES = 1000;

export interface SecurityGroupRule {
  uuid: string;
  type: (typeof RULE_TYPES)[number];
  protocol: (typeof RULE_PROTOCOLS)[number];
  /** TCP/UDP: 1–65535; ICMP and ALL: -1. */
  startPort: number;
  endPort: number;
  allowedCidr?: string;
  remoteSecurityGroupUuid?: string;
  ipVersion: 4;
  description?: string;
}

export interface SecurityGroup extends Resource {
  rules: SecurityGroupRule[];
  attachedL3NetworkUuids: string[];
  vmNicUuids: string[];
}

export const RuleInput = () =>
  Obj({
    type: Enum(RULE_TYPES),
    protocol: Enum(RULE_PROTOCOLS),
    startPort: Type.Optional(Type.Integer({ minimum: -1, maximum: 65535 })),
    endPort: Type.Optional(Type.Integer({ minimum: -1, maximum: 65535 })),
    allowedCidr: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    remoteSecurityGroupUuid: Type.Optional(Uuid()),
    ipVersion: Type.Optional(Type.Literal(4)),
    description: Type.Optional(Type.String({ maxLength: 2048 })),
  });

const UuidList = (max: number) => Type.Array(Uuid(), { minItems: 1, maxItems: max, uniqueItems: true });

export const securityGroup: KindDef = {
  kind: 'security-group',
  collection: 'security-groups',
  title: 'security group',
  createSchema: Obj({ ...baseCreate() }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: SG_STATES,
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['rules', 'attachedL3NetworkUuids', 'vmNicUuids'],
  actions: {
    addRules: action(Obj({ rules: Type.Array(RuleInput(), { minItems: 1, maxItems: 100 }) }), 'Add allow rules (applied on every affected host)', false),
    removeRules: action(Obj({ ruleUuids: UuidList(MAX_RULES) }), 'Remove rules by uuid', false),
    attachL3Network: action(Obj({ l3NetworkUuid: Uuid() }), 'Let NICs of an L3 network join', false),
    detachL3Network: action(Obj({ l3NetworkUuid: Uuid() }), 'Detach an L3 network (its NICs leave the group)', false),
    addVmNics: action(Obj({ vmNicUuids: UuidList(1000) }), 'Add VM NICs (on attached L3 networks) to the group', false),
    removeVmNics: action(Obj({ vmNicUuids: UuidList(1000) }), 'Remove VM NICs from the group', false),
  },
};

/** The two rules a new group starts with: members may talk to each other (they can be removed). */
export function defaultRules(groupUuid: string, newUuid: () => string): SecurityGroupRule[] {
  return RULE_TYPES.map((type) => ({ uuid: newUuid(), type, protocol: 'ALL', startPort: -1, endPort: -1, remoteSecurityGroupUuid: groupUuid, ipVersion: 4 }));
}

type RuleIn = { type: SecurityGroupRule['type']; protocol: SecurityGroupRule['protocol']; startPort?: number; endPort?: number; allowedCidr?: string; remoteSecurityGroupUuid?: string; description?: string };

/** Same rule = same match (uuid and description aside). */
export const ruleKey = (r: Omit<SecurityGroupRule, 'uuid'>): string =>
  [r.type, r.protocol, r.startPort, r.endPort, r.allowedCidr ?? '', r.remoteSecurityGroupUuid ?? ''].join('|');

/**
 * Check and normalise rules to add to `group` (field names `rules.<i>.<field>`): TCP/UDP ports
 * 1–65535 with start ≤ end; ICMP and ALL without ports (-1/-1 accepted); a valid IPv4 CIDR
 * (stored normalised); a remote group that exists and has the same owner; no duplicates.
 */
export async function checkRules(store: InventoryStore, group: SecurityGroup, rules: RuleIn[], newUuid: () => string): Promise<SecurityGroupRule[]> {
  const seen = new Set(group.rules.map(ruleKey));
  const out: SecurityGroupRule[] = [];
  for (const [i, r] of rules.entries()) {
    const f = (x: string): string => `rules.${i}.${x}`;
    let startPort = r.startPort;
    let endPort = r.endPort;
    if (r.protocol === 'TCP' || r.protocol === 'UDP') {
      if (startPort === undefined) throw invalid(f('startPort'), `required for ${r.protocol} (1-65535)`);
      if (endPort === undefined) throw invalid(f('endPort'), `required for ${r.protocol} (1-65535)`);
      if (startPort < 1) throw invalid(f('startPort'), `${r.protocol} ports are 1-65535`);
      if (endPort < 1) throw invalid(f('endPort'), `${r.protocol} ports are 1-65535`);
      if (startPort > endPort) throw invalid(f('endPort'), `endPort ${endPort} is below startPort ${startPort}`);
    } else {
      for (const [name, v] of [['startPort', startPort], ['endPort', endPort]] as const) {
        if (v !== undefined && v !== -1) throw invalid(f(name), `${r.protocol} takes no ports (use -1 or leave it out)`);
      }
      startPort = -1;
      endPort = -1;
    }
    const rule: SecurityGroupRule = { uuid: newUuid(), type: r.type, protocol: r.protocol, startPort, endPort, ipVersion: 4 };
    if (r.allowedCidr !== undefined) {
      const c = parseCidr(r.allowedCidr, f('allowedCidr'));
      rule.allowedCidr = `${intToIp(c.network)}/${c.prefix}`;
    }
    if (r.remoteSecurityGroupUuid !== undefined) {
      const remote = await store.get(r.remoteSecurityGroupUuid);
      if (!remote || remote.kind !== 'security-group' || remote.ownerAccountUuid !== group.ownerAccountUuid) {
        throw invalid(f('remoteSecurityGroupUuid'), `no security group ${r.remoteSecurityGroupUuid} of this group's account`);
      }
      rule.remoteSecurityGroupUuid = r.remoteSecurityGroupUuid;
    }
    if (r.description !== undefined) rule.description = r.description;
    const k = ruleKey(rule);
    if (seen.has(k)) throw invalid(`rules.${i}`, 'the group already has this rule');
    seen.add(k);
    out.push(rule);
  }
  if (group.rules.length + out.length > MAX_RULES) throw invalid('rules', `a group has at most ${MAX_RULES} rules`);
  return out;
}
