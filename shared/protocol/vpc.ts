// VPC routers (vrouteragent): a router is a network namespace on one host with a public
// interface on the public network's bridge and one gateway interface per attached VPC network.
// The controller sends the router's COMPLETE desired state (vrouter/apply): interfaces and
// addresses, the default route, SNAT, EIP 1:1 NAT, port forwarding (DNAT) and the DNS
// forwarder; the agent validates it whole, renders it with pure functions and applies it
// (addresses/links idempotently, netfilter in one iptables-restore inside the namespace).
// Re-sending the same state changes nothing and repairs drift (a deleted namespace, a flushed
// table), which is what the controller's reconcile queue does periodically.
import { defineCommand } from './command.js';
import { Ipv4, Mac, Obj, Type, Uuid, type Static } from './schema.js';
import { IfName } from './kvm.js';
import { Cidr, DnsRecord } from './vrouter.js';
import { RouterLbListener } from './lb.js';
import { RouterIpsecConnection } from './ipsec.js';

const Prefix = () => Type.Integer({ minimum: 1, maximum: 30 });
const PortNum = () => Type.Integer({ minimum: 1, maximum: 65535 });

export const RouterPublic = Obj({
  /** Bridge of the public network's L2 on this host. */
  bridge: IfName(),
  /** The router's system VIP (its public address; SNAT source). */
  ip: Ipv4(),
  prefix: Prefix(),
  /** Next hop for everything outside (the public range's gateway). */
  gateway: Type.Optional(Ipv4()),
  mac: Type.Optional(Mac()),
});

export const RouterNetwork = Obj({
  l3NetworkUuid: Uuid(),
  bridge: IfName(),
  /** The network's gateway address: it lives on this interface. */
  ip: Ipv4(),
  cidr: Cidr(),
  mac: Type.Optional(Mac()),
  /** SNAT this network's traffic to the outside as the router's public IP (default true). */
  snat: Type.Optional(Type.Boolean()),
});

export const RouterEip = Obj({
  /** Public address (a VIP of the public network). */
  eip: Ipv4(),
  /** The VM NIC's address on one of the router's networks. */
  privateIp: Ipv4(),
});

export const RouterPortForward = Obj({
  vip: Ipv4(),
  protocol: Type.Union([Type.Literal('TCP'), Type.Literal('UDP')]),
  vipPortStart: PortNum(),
  vipPortEnd: PortNum(),
  privateIp: Ipv4(),
  privatePortStart: PortNum(),
  privatePortEnd: PortNum(),
  /** Only sources in this CIDR are forwarded. */
  allowedCidr: Type.Optional(Cidr()),
});

/** A route of the router's route table (manual 路由表): static via a next hop, or blackhole. */
export const RouterRoute = Obj({
  destination: Cidr(),
  type: Type.Union([Type.Literal('Static'), Type.Literal('Blackhole')]),
  /** Static: the next hop, an address on one of the router's networks (or the public one). */
  nextHop: Type.Optional(Ipv4()),
  /** Route priority (manual: 1-254, lower wins): the kernel metric. */
  metric: Type.Optional(Type.Integer({ minimum: 1, maximum: 254 })),
});

export const RouterSpec = Obj({
  routerUuid: Uuid(),
  public: RouterPublic,
  networks: Type.Array(RouterNetwork, { maxItems: 64 }),
  /** Further public addresses the router answers for (custom VIPs of EIPs and port forwards). */
  vips: Type.Array(Ipv4(), { maxItems: 1024 }),
  eips: Type.Array(RouterEip, { maxItems: 1024 }),
  portForwards: Type.Array(RouterPortForward, { maxItems: 4096 }),
  /**
   * The VIP uuids of the router's addresses (the system VIP and custom VIPs): each one's traffic
   * through the public interface is counted and exported as ZStack/VIP metrics labelled VipUUID.
   */
  vipUuids: Type.Optional(Type.Array(Obj({ ip: Ipv4(), vipUuid: Uuid() }), { maxItems: 1025 })),
  /** DNS forwarder on the gateway addresses: upstream servers and the names of the networks' VMs. */
  dns: Type.Optional(Obj({ forwarders: Type.Array(Ipv4(), { maxItems: 8 }), records: Type.Array(DnsRecord, { maxItems: 65_536 }) })),
  /** Load-balancer listeners (haproxy in the namespace; shared/protocol/lb.ts). */
  loadBalancers: Type.Optional(Type.Array(RouterLbListener, { maxItems: 1024 })),
  /** Routes of the route table attached to the router (absent: none). */
  routes: Type.Optional(Type.Array(RouterRoute, { maxItems: 1024 })),
  /** IPsec site-to-site connections (charon in the namespace; shared/protocol/ipsec.ts). */
  ipsec: Type.Optional(Type.Array(RouterIpsecConnection, { maxItems: 256 })),
});
export type RouterSpecT = Static<typeof RouterSpec>;

export const RouterInfo = Obj({
  routerUuid: Type.String(),
  namespace: Type.String(),
  interfaces: Type.Array(Obj({ name: Type.String(), hostVeth: Type.String(), bridge: Type.String() })),
  dnsmasqPid: Type.Optional(Type.Integer()),
});

export const RouterApply = defineCommand({
  name: 'vrouter/apply',
  agent: 'vrouter',
  timeoutMs: 60_000,
  request: Obj({ router: RouterSpec }),
  response: Obj({ router: RouterInfo, changed: Type.Boolean(), natRules: Type.Integer({ minimum: 0 }), durationMs: Type.Number({ minimum: 0 }) }),
  description:
    'make a VPC router namespace match its complete desired state (interfaces, addresses, default route, SNAT, EIP, port forwarding, DNS forwarder): validated whole, netfilter replaced in one iptables-restore, a missing namespace or link recreated',
});

export const RouterDelete = defineCommand({
  name: 'vrouter/delete',
  agent: 'vrouter',
  timeoutMs: 60_000,
  request: Obj({ routerUuid: Uuid() }),
  response: Obj({ deleted: Type.Boolean() }),
  description: 'delete a VPC router namespace, its links and state (idempotent)',
});

export const RouterStatus = defineCommand({
  name: 'vrouter/status',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({}),
  response: Obj({ routers: Type.Array(Obj({ routerUuid: Type.String(), namespace: Type.String(), present: Type.Boolean() })) }),
  description: 'the VPC routers this host runs, and whether each namespace exists',
});
