// Load balancers on VPC routers (manual 负载均衡): the listeners a router serves are part of its
// desired state (RouterSpec.loadBalancers, sent whole by vrouter/apply). The agent renders one
// haproxy configuration per router (vrouteragent/render/haproxy.ts), checks it with
// `haproxy -c` and reloads haproxy seamlessly; haproxy's own health checks take dead backends
// out. vrouter/lb/status reads the per-server state from haproxy's stats socket.
import { routerServiceStatus } from './router-service.js';
import { Ipv4, Obj, OneOf, Type, Uuid, type Static } from './schema.js';

export const LB_PROTOCOLS = ['tcp', 'udp', 'http', 'https'] as const;
export const LB_ALGORITHMS = ['roundrobin', 'leastconn', 'source'] as const;
/** "tcp:default" (connect) or "http:/path" (GET, 2xx/3xx is healthy). */
export const HEALTH_TARGET_RE = '^(tcp:default|http:/[A-Za-z0-9._~!$&\'()*+,;=:@%/?-]{0,200})$';

const PortNum = () => Type.Integer({ minimum: 1, maximum: 65535 });
const Seconds = (max: number) => Type.Integer({ minimum: 1, maximum: max });

export const RouterLbBackend = Obj({
  /** The VM NIC (its uuid names the haproxy server, so the state survives reloads). */
  vmNicUuid: Uuid(),
  ip: Ipv4(),
});

export const RouterLbListener = Obj({
  listenerUuid: Uuid(),
  vip: Ipv4(),
  protocol: OneOf(LB_PROTOCOLS),
  port: PortNum(),
  instancePort: PortNum(),
  algorithm: OneOf(LB_ALGORITHMS),
  idleTimeoutSec: Seconds(86_400),
  healthyThreshold: Type.Integer({ minimum: 1, maximum: 10 }),
  unhealthyThreshold: Type.Integer({ minimum: 1, maximum: 10 }),
  healthCheckIntervalSec: Seconds(3_600),
  healthCheckTimeoutSec: Seconds(300),
  healthCheckTarget: Type.String({ pattern: HEALTH_TARGET_RE }),
  maxConnection: Type.Integer({ minimum: 1, maximum: 100_000 }),
  /** https only: certificate (+ chain) and private key, PEM, as haproxy's `crt` file wants them. */
  certificate: Type.Optional(Obj({ certificateUuid: Uuid(), pem: Type.String({ minLength: 1, maxLength: 65_536 }) })),
  backends: Type.Array(RouterLbBackend, { maxItems: 1024 }),
});
export type RouterLbListenerT = Static<typeof RouterLbListener>;

export const LbServerStatus = Obj({
  vmNicUuid: Type.String(),
  ip: Type.String(),
  /** haproxy's view: UP, DOWN, MAINT, NOLB, "no check" … */
  status: Type.String(),
  /** The last health check's result (e.g. "L4OK", "L4CON", "L7STS"), if any. */
  checkStatus: Type.Optional(Type.String()),
  /** Seconds since the last UP/DOWN change. */
  lastChangeSec: Type.Optional(Type.Integer()),
  currentSessions: Type.Optional(Type.Integer()),
  totalSessions: Type.Optional(Type.Integer()),
});

export const LbStatus = routerServiceStatus({
  name: 'vrouter/lb/status',
  fields: { listeners: Type.Array(Obj({ listenerUuid: Type.String(), servers: Type.Array(LbServerStatus) })) },
  description: "per-listener backend state of a VPC router's load balancer, read from haproxy's stats socket",
});
