// Network resources (white paper §2.1.2.3): L2 networks (zone children, attached to clusters),
// L3 networks (L2 children: DNS, network services, reserved addresses) and IP ranges (L3 children).
import { Type, Obj, Ipv4 } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Enum, Uuid, Hostname } from './fields.js';
import { action, type KindDef } from './kind.js';
import { intToIp, ipToInt, parseCidr, subnetOf } from './ipv4.js';

export const L2_TYPES = ['L2NoVlanNetwork', 'L2VlanNetwork', 'L2VxlanNetworkPool', 'L2VxlanNetwork'] as const;
/** The issue's (and ZStack UI's) short names of the VXLAN types; stored as the L2… names. */
const L2_TYPE_ALIASES: Record<string, string> = { VxlanNetworkPool: 'L2VxlanNetworkPool', VxlanNetwork: 'L2VxlanNetwork' };
/** VNIs a pool may hand out (manual: 1-16777214; the last ones are reserved). */
export const VNI_MIN = 1;
export const VNI_MAX = 16_777_214;
const Vni = (description: string) => Type.Integer({ minimum: VNI_MIN, maximum: VNI_MAX, description });

/** The stored type an L2 create body asks for (explicit, aliased, or implied by its fields). */
export function l2TypeOf(b: Record<string, unknown>): string {
  if (typeof b.type === 'string') return L2_TYPE_ALIASES[b.type] ?? b.type;
  if (b.poolUuid !== undefined) return 'L2VxlanNetwork';
  return b.vlan === undefined ? 'L2NoVlanNetwork' : 'L2VlanNetwork';
}
export const isVxlanPool = (l2: object): boolean => (l2 as { type?: unknown }).type === 'L2VxlanNetworkPool';
export const isVxlanNetwork = (l2: object): boolean => (l2 as { type?: unknown }).type === 'L2VxlanNetwork';
export const L3_CATEGORIES = ['Private', 'Public', 'System'] as const;
/** L3VpcNetwork: its gateway lives on a VPC router (controller/vpc). */
export const L3_TYPES = ['L3BasicNetwork', 'L3VpcNetwork'] as const;
export const NETWORK_SERVICES = ['DHCP', 'DNS', 'UserData', 'SNAT', 'EIP', 'PortForwarding', 'LoadBalancer', 'SecurityGroup', 'IPsec'] as const;
export const NETWORK_PROVIDERS = ['Flat', 'VirtualRouter'] as const;

/** Interface names as the kernel allows them (IFNAMSIZ 15, no '/', no spaces). */
const IfName = () => Type.String({ minLength: 1, maxLength: 15, pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' });

export const l2Network: KindDef = {
  kind: 'l2-network',
  collection: 'l2-networks',
  title: 'L2 network',
  createSchema: Obj({
    ...baseCreate(),
    zoneUuid: Uuid(),
    type: Type.Optional(Enum([...L2_TYPES, ...Object.keys(L2_TYPE_ALIASES)])),
    /** NoVlan/Vlan: the host NIC; VXLAN: optional underlay NIC (the VTEP address decides). */
    physicalInterface: Type.Optional(IfName()),
    vlan: Type.Optional(Type.Integer({ minimum: 1, maximum: 4094 })),
    vniStartInclusive: Type.Optional(Vni('VXLAN pool: first VNI it hands out')),
    vniEndInclusive: Type.Optional(Vni('VXLAN pool: last VNI it hands out')),
    poolUuid: Type.Optional(Uuid({ description: 'VXLAN network: its VXLAN pool' })),
    vni: Type.Optional(Vni('VXLAN network: its VNI (allocated from the pool unless given; unique in the pool)')),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'zoneUuid',
  parentKind: 'zone',
  refs: [
    { field: 'zoneUuid', kind: 'zone' },
    { field: 'poolUuid', kind: 'l2-network' },
  ],
  states: [],
  // a normal account creates VXLAN networks in pools shared with it (controller/network
  // createL2 refuses it anything else) and updates/deletes its own; the rest is the admin's
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  check: (b) => {
    const type = l2TypeOf(b);
    const vx = type === 'L2VxlanNetworkPool' || type === 'L2VxlanNetwork';
    if (!vx && b.physicalInterface === undefined) throw invalid('physicalInterface', `required for an ${type}`);
    if (type === 'L2VlanNetwork' && b.vlan === undefined) throw invalid('vlan', 'an L2VlanNetwork needs a vlan id (1-4094)');
    if (type === 'L2NoVlanNetwork' && b.vlan !== undefined) throw invalid('vlan', 'an L2NoVlanNetwork has no vlan; use type L2VlanNetwork');
    if (vx && b.vlan !== undefined) throw invalid('vlan', `an ${type} has no vlan`);
    const poolFields = ['vniStartInclusive', 'vniEndInclusive'];
    const netFields = ['poolUuid', 'vni'];
    for (const f of type === 'L2VxlanNetworkPool' ? netFields : type === 'L2VxlanNetwork' ? poolFields : [...poolFields, ...netFields]) {
      if (b[f] !== undefined) throw invalid(f, `not a field of an ${type}`);
    }
    if (type === 'L2VxlanNetworkPool') {
      for (const f of poolFields) if (b[f] === undefined) throw invalid(f, `required for a VXLAN pool (${VNI_MIN}-${VNI_MAX})`);
      if (Number(b.vniStartInclusive) > Number(b.vniEndInclusive)) throw invalid('vniEndInclusive', 'must be at least vniStartInclusive');
    }
    if (type === 'L2VxlanNetwork' && b.poolUuid === undefined) throw invalid('poolUuid', 'required for a VxlanNetwork: the VXLAN pool its VNI comes from');
  },
  normalize: async (b, ctx) => {
    const type = l2TypeOf(b);
    if (type === 'L2VxlanNetworkPool') return { ...b, type };
    if (type === 'L2VxlanNetwork') {
      const pool = ctx.refs.poolUuid!;
      if (!isVxlanPool(pool)) throw invalid('poolUuid', `L2 network ${pool.name} (${pool.uuid}) is not a VXLAN pool`);
      if (pool.parentUuid !== b.zoneUuid) throw invalid('zoneUuid', `the VXLAN pool ${pool.name} is in zone ${String(pool.parentUuid)}`);
      if (b.vni !== undefined && (Number(b.vni) < Number(pool.vniStartInclusive) || Number(b.vni) > Number(pool.vniEndInclusive))) {
        throw invalid('vni', `${String(b.vni)} is outside the VNI range ${String(pool.vniStartInclusive)}-${String(pool.vniEndInclusive)} of pool ${pool.name}`);
      }
      return { ...b, type };
    }
    // one L2 per (interface, vlan) in a zone: two would be the same broadcast domain
    const same = await ctx.store.list({
      kind: 'l2-network',
      filters: [
        { field: 'parentUuid', op: '=', value: String(b.zoneUuid) },
        { field: 'physicalInterface', op: '=', value: String(b.physicalInterface) },
        { field: 'vlan', op: '=', value: (b.vlan as number | undefined) ?? null },
      ],
      limit: 1,
    });
    if (same.total > 0) {
      const o = same.items[0]!;
      throw invalid('physicalInterface', `L2 network ${o.name} (${o.uuid}) already uses ${String(b.physicalInterface)}${b.vlan === undefined ? '' : ` vlan ${String(b.vlan)}`} in this zone`);
    }
    return { ...b, type };
  },
  actions: {},
};

const ReservedRange = () => Obj({ startIp: Ipv4(), endIp: Ipv4() });

export const l3Network: KindDef = {
  kind: 'l3-network',
  collection: 'l3-networks',
  title: 'L3 network',
  createSchema: Obj({
    ...baseCreate(),
    l2NetworkUuid: Uuid(),
    type: Type.Optional(Enum(L3_TYPES)),
    category: Type.Optional(Enum(L3_CATEGORIES)),
    system: Type.Optional(Type.Boolean()),
    dnsDomain: Type.Optional(Hostname()),
    dns: Type.Optional(Type.Array(Ipv4(), { maxItems: 8, uniqueItems: true })),
    networkServices: Type.Optional(Type.Array(Enum(NETWORK_SERVICES), { uniqueItems: true })),
    provider: Type.Optional(Enum(NETWORK_PROVIDERS)),
    reservedIpRanges: Type.Optional(Type.Array(ReservedRange(), { maxItems: 64 })),
    antiSpoofing: Type.Optional(Type.Boolean({ description: 'security groups: guarded NICs may send only from their own IP and MAC (default false)' })),
  }),
  updateSchema: Obj({
    ...baseUpdate(),
    dnsDomain: Type.Optional(Hostname()),
    dns: Type.Optional(Type.Array(Ipv4(), { maxItems: 8, uniqueItems: true })),
    reservedIpRanges: Type.Optional(Type.Array(ReservedRange(), { maxItems: 64 })),
    antiSpoofing: Type.Optional(Type.Boolean()),
  }),
  parentField: 'l2NetworkUuid',
  parentKind: 'l2-network',
  refs: [{ field: 'l2NetworkUuid', kind: 'l2-network' }],
  states: [],
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'async',
  defaults: { type: 'L3BasicNetwork', category: 'Private', system: false, dns: [], networkServices: ['DHCP', 'DNS', 'UserData'], provider: 'Flat', reservedIpRanges: [] },
  check: (b) => {
    if (b.type === 'L3VpcNetwork' && b.category !== undefined && b.category !== 'Private') throw invalid('category', 'a VPC network (L3VpcNetwork) is Private');
    for (const [i, r] of ((b.reservedIpRanges as Array<{ startIp: string; endIp: string }> | undefined) ?? []).entries()) {
      if (ipToInt(r.startIp) > ipToInt(r.endIp)) throw invalid(`reservedIpRanges.${i}.endIp`, 'endIp is before startIp');
    }
  },
  normalize: (b, ctx) => {
    if (isVxlanPool(ctx.refs.l2NetworkUuid ?? {})) throw invalid('l2NetworkUuid', 'a VXLAN pool carries no L3 network; create a VxlanNetwork from the pool and use it');
    return { ...b, zoneUuid: ctx.refs.l2NetworkUuid?.parentUuid };
  },
  actions: {
    addDns: action(Obj({ dns: Ipv4() }), 'Add a DNS server handed out by DHCP', false),
    removeDns: action(Obj({ dns: Ipv4() }), 'Remove a DNS server', false),
  },
};

/**
 * An IP range: either startIp/endIp/netmask/gateway (ZStack AddIpRange) or networkCidr (+ optional
 * gateway; default the first address; the range is everything but network, gateway and broadcast).
 * All ranges of one L3 share netmask and gateway and never overlap.
 */
export const ipRange: KindDef = {
  kind: 'ip-range',
  collection: 'ip-ranges',
  title: 'IP range',
  createSchema: Obj({
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    description: Type.Optional(Type.String({ maxLength: 2048 })),
    tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 64 })),
    l3NetworkUuid: Uuid(),
    startIp: Type.Optional(Ipv4()),
    endIp: Type.Optional(Ipv4()),
    netmask: Type.Optional(Ipv4()),
    gateway: Type.Optional(Ipv4()),
    networkCidr: Type.Optional(Type.String({ pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$' })),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'l3NetworkUuid',
  parentKind: 'l3-network',
  refs: [{ field: 'l3NetworkUuid', kind: 'l3-network' }],
  states: [],
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  check: (b) => {
    if (b.networkCidr !== undefined) {
      for (const f of ['startIp', 'endIp', 'netmask']) if (b[f] !== undefined) throw invalid(f, 'give either networkCidr or startIp/endIp/netmask/gateway, not both');
      return;
    }
    for (const f of ['startIp', 'endIp', 'netmask', 'gateway']) if (b[f] === undefined) throw invalid(f, 'required (or give networkCidr)');
  },
  normalize: async (b, ctx) => {
    const r = normalizeIpRange(b);
    const others = await ctx.store.byParent('ip-range', String(b.l3NetworkUuid));
    for (const o of others) {
      if (o.netmask !== r.netmask || o.gateway !== r.gateway) {
        throw invalid('gateway', `the L3 network's other range ${String(o.startIp)}-${String(o.endIp)} uses netmask ${String(o.netmask)} gateway ${String(o.gateway)}; all ranges of an L3 network share them`);
      }
      if (ipToInt(r.startIp) <= ipToInt(String(o.endIp)) && ipToInt(String(o.startIp)) <= ipToInt(r.endIp)) {
        throw invalid('startIp', `overlaps range ${String(o.startIp)}-${String(o.endIp)} (${o.uuid}) of the same L3 network`);
      }
    }
    return { ...b, ...r, name: b.name ?? `${r.startIp}-${r.endIp}` };
  },
  actions: {},
};

export interface NormalRange {
  startIp: string;
  endIp: string;
  netmask: string;
  gateway: string;
  networkCidr: string;
}

export function normalizeIpRange(b: Record<string, unknown>): NormalRange {
  if (b.networkCidr !== undefined) {
    const c = parseCidr(String(b.networkCidr));
    if (c.prefix > 30) throw invalid('networkCidr', 'needs at least a /30 (network, gateway, one address, broadcast)');
    const gateway = b.gateway === undefined ? c.network + 1 : ipToInt(String(b.gateway), 'gateway');
    if (gateway < c.network + 1 || gateway > c.broadcast - 1) throw invalid('gateway', `not a host address of ${String(b.networkCidr)}`);
    const first = c.network + 1 === gateway ? c.network + 2 : c.network + 1;
    const last = c.broadcast - 1 === gateway ? c.broadcast - 2 : c.broadcast - 1;
    return { startIp: intToIp(first), endIp: intToIp(last), netmask: c.netmask, gateway: intToIp(gateway), networkCidr: `${intToIp(c.network)}/${c.prefix}` };
  }
  const start = ipToInt(String(b.startIp), 'startIp');
  const end = ipToInt(String(b.endIp), 'endIp');
  if (start > end) throw invalid('endIp', 'endIp is before startIp');
  const s = subnetOf(String(b.gateway), String(b.netmask), 'gateway', 'netmask');
  if (s.prefix > 30) throw invalid('netmask', 'needs at least a /30');
  if (start < s.network || end > s.broadcast) throw invalid('startIp', `range is not inside ${intToIp(s.network)}/${s.prefix} (gateway ${String(b.gateway)} netmask ${String(b.netmask)})`);
  const gw = ipToInt(String(b.gateway), 'gateway');
  if (gw === s.network || gw === s.broadcast) throw invalid('gateway', 'the gateway cannot be the network or broadcast address');
  return { startIp: String(b.startIp), endIp: String(b.endIp), netmask: s.netmask, gateway: String(b.gateway), networkCidr: `${intToIp(s.network)}/${s.prefix}` };
}
