// VPC routers and public-network services (manual 路由资源 / 云路由规格 / VPC路由器 / 虚拟IP /
// 弹性IP / 端口转发): the kinds and their static checks. A VPC router is a namespace on one
// host (docs/vpc.md); everything here is inventory, the host follows through the reconcile
// area 'vrouter' (controller/vpc/module.ts).
//
//   virtual-router-offering  {zoneUuid, publicNetworkUuid, managementNetworkUuid?, isDefault?}
//                            (cpuNum/memorySize/imageUuid accepted and ignored: no appliance VM)
//   vpc-router               {virtualRouterOfferingUuid, dns[]} → hostUuid, publicIp, vipUuid,
//                            l3NetworkUuids[], state Running|Stopped, status Connected|Disconnected
//   vip                      {l3NetworkUuid (Public), requiredIp?} → ip, useFor[], system
//   eip                      {vipUuid, vmNicUuid?} → vipIp, guestIp, vmInstanceUuid, routerUuid
//   port-forwarding-rule     {vipUuid, vipPortStart, vipPortEnd, privatePortStart, privatePortEnd,
//                            protocolType TCP|UDP, allowedCidr?, vmNicUuid?}
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Bytes, Enum, Ipv4, Port, Uuid } from '../model/fields.js';
import { action, emptyAction, type KindDef } from '../model/kind.js';
import { intToIp, parseCidr } from '../model/ipv4.js';
import { routeTable } from './route-table-model.js';

export const ROUTER_STATES = ['Running', 'Stopped'] as const;
export const ROUTER_STATUSES = ['Connected', 'Disconnected'] as const;
export const PF_PROTOCOLS = ['TCP', 'UDP'] as const;
/** VIP uses (manual 虚拟IP): a custom VIP serves one EIP, or any mix of the others. */
export const VIP_USES = ['SNAT', 'EIP', 'PortForwarding', 'LoadBalancer', 'IPsec'] as const;

export const virtualRouterOffering: KindDef = {
  kind: 'virtual-router-offering',
  collection: 'virtual-router-offerings',
  title: 'virtual router offering',
  createSchema: Obj({
    ...baseCreate(),
    zoneUuid: Uuid(),
    publicNetworkUuid: Uuid(),
    managementNetworkUuid: Type.Optional(Uuid()),
    isDefault: Type.Optional(Type.Boolean()),
    cpuNum: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: 'accepted and ignored: routers are namespaces' })),
    memorySize: Type.Optional(Bytes({ description: 'accepted and ignored: routers are namespaces' })),
    imageUuid: Type.Optional(Uuid({ description: 'accepted and ignored: routers are namespaces' })),
  }),
  updateSchema: Obj({ ...baseUpdate(), isDefault: Type.Optional(Type.Boolean()) }),
  parentField: 'zoneUuid',
  parentKind: 'zone',
  refs: [
    { field: 'zoneUuid', kind: 'zone' },
    { field: 'publicNetworkUuid', kind: 'l3-network' },
    { field: 'managementNetworkUuid', kind: 'l3-network' },
  ],
  states: [],
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { isDefault: false },
  normalize: (b, ctx) => {
    const pub = ctx.refs.publicNetworkUuid!;
    if (pub.category !== 'Public') throw invalid('publicNetworkUuid', `L3 network ${pub.name} is ${String(pub.category)}, not a Public network`);
    if (pub.zoneUuid !== b.zoneUuid) throw invalid('publicNetworkUuid', `L3 network ${pub.name} is in another zone`);
    return b;
  },
  actions: {},
};

export const vpcRouter: KindDef = {
  kind: 'vpc-router',
  collection: 'vpc-routers',
  title: 'VPC router',
  createSchema: Obj({
    ...baseCreate(),
    virtualRouterOfferingUuid: Uuid(),
    dns: Type.Optional(Type.Array(Ipv4(), { maxItems: 8, uniqueItems: true })),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [{ field: 'virtualRouterOfferingUuid', kind: 'virtual-router-offering' }],
  states: ROUTER_STATES,
  initialState: 'Running',
  statuses: ROUTER_STATUSES,
  initialStatus: 'Disconnected',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { dns: [] },
  systemFields: ['hostUuid', 'publicIp', 'publicNetworkUuid', 'vipUuid', 'l3NetworkUuids', 'zoneUuid'],
  actions: {
    attachL3Network: action(Obj({ l3NetworkUuid: Uuid() }), 'Attach a VPC network: its gateway becomes an interface of the router', false),
    detachL3Network: action(Obj({ l3NetworkUuid: Uuid() }), 'Detach a VPC network (refused while it has VMs)', false),
    reconnect: emptyAction('Re-apply the whole router to its host now', false),
    start: emptyAction('Start the router (its namespace is created)', false),
    stop: emptyAction('Stop the router (its namespace is deleted; the inventory stays)', false),
    addDns: action(Obj({ dns: Ipv4() }), 'Add an upstream DNS server of the router\'s forwarder', false),
    removeDns: action(Obj({ dns: Ipv4() }), 'Remove an upstream DNS server', false),
  },
};

export const vip: KindDef = {
  kind: 'vip',
  collection: 'vips',
  title: 'virtual IP',
  createSchema: Obj({ ...baseCreate(), l3NetworkUuid: Uuid(), requiredIp: Type.Optional(Ipv4()) }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [{ field: 'l3NetworkUuid', kind: 'l3-network' }],
  states: ['Enabled', 'Disabled'],
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['ip', 'netmask', 'gateway', 'useFor', 'system', 'vpcRouterUuid'],
  normalize: (b, ctx) => {
    const l3 = ctx.refs.l3NetworkUuid!;
    if (l3.category !== 'Public') throw invalid('l3NetworkUuid', `L3 network ${l3.name} is ${String(l3.category)}: a VIP comes from a Public network`);
    return b;
  },
  actions: {},
};

/** What EIPs and port-forwarding rules share: a service on a VIP, bound to a VM NIC behind a router. */
const vipService = {
  refs: [
    { field: 'vipUuid', kind: 'vip' },
    { field: 'vmNicUuid', kind: 'vm-nic' },
  ],
  states: ['Enabled', 'Disabled'],
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['vipIp', 'guestIp', 'vmInstanceUuid', 'vpcRouterUuid'],
} satisfies Partial<KindDef>;

export const eip: KindDef = {
  kind: 'eip',
  indexes: ['vipUuid', 'vmNicUuid'],
  collection: 'eips',
  title: 'elastic IP',
  createSchema: Obj({ ...baseCreate(), vipUuid: Uuid(), vmNicUuid: Type.Optional(Uuid()) }),
  updateSchema: Obj({ ...baseUpdate() }),
  ...vipService,
  actions: {
    attach: action(Obj({ vmNicUuid: Uuid() }), 'Attach to a VM NIC (on a network of a VPC router)', false),
    detach: emptyAction('Detach from its VM NIC', false),
  },
};

export const portForwardingRule: KindDef = {
  kind: 'port-forwarding-rule',
  indexes: ['vipUuid', 'vmNicUuid'],
  collection: 'port-forwarding-rules',
  title: 'port forwarding rule',
  createSchema: Obj({
    ...baseCreate(),
    vipUuid: Uuid(),
    vipPortStart: Port(),
    vipPortEnd: Type.Optional(Port()),
    privatePortStart: Port(),
    privatePortEnd: Type.Optional(Port()),
    protocolType: Enum(PF_PROTOCOLS),
    allowedCidr: Type.Optional(Type.String({ minLength: 9, maxLength: 18 })),
    vmNicUuid: Type.Optional(Uuid()),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  ...vipService,
  /** Manual 端口转发 (~12332): ranges of equal length, end ≥ start, a valid source CIDR. */
  check: (b) => {
    const vs = Number(b.vipPortStart);
    const ve = Number(b.vipPortEnd ?? vs);
    const ps = Number(b.privatePortStart);
    const pe = Number(b.privatePortEnd ?? ps);
    if (ve < vs) throw invalid('vipPortEnd', `${ve} is below vipPortStart ${vs}`);
    if (pe < ps) throw invalid('privatePortEnd', `${pe} is below privatePortStart ${ps}`);
    if (ve - vs !== pe - ps) throw invalid('privatePortEnd', `the private range ${ps}-${pe} must be as long as the VIP range ${vs}-${ve}`);
    if (vs !== ps && ve - vs + 1 > 1024) throw invalid('vipPortEnd', 'a range mapped to other port numbers has at most 1024 ports');
    if (b.allowedCidr !== undefined) parseCidr(String(b.allowedCidr), 'allowedCidr');
  },
  normalize: (b) => {
    const out: Record<string, unknown> = { ...b, vipPortEnd: b.vipPortEnd ?? b.vipPortStart, privatePortEnd: b.privatePortEnd ?? b.privatePortStart };
    if (b.allowedCidr !== undefined) {
      const c = parseCidr(String(b.allowedCidr), 'allowedCidr');
      out.allowedCidr = `${intToIp(c.network)}/${c.prefix}`;
    }
    return out;
  },
  actions: {
    attach: action(Obj({ vmNicUuid: Uuid() }), 'Forward to a VM NIC (on a network of the VIP\'s router)', false),
    detach: emptyAction('Stop forwarding (the rule stays)', false),
  },
};

export const vpcKinds: KindDef[] = [virtualRouterOffering, vpcRouter, vip, eip, portForwardingRule, routeTable];
