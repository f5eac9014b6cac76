// Load balancers (manual 负载均衡 ~12345, advanced settings ~12529): a load balancer sits on one
// VIP (a custom VIP or a router's system VIP) and serves its listeners from the VPC router that
// owns the VIP or the backends; all its backends are NICs of one VPC network. The kinds and
// their static checks; the handlers are in api.ts, the router's part of it in desired.ts.
//
//   load-balancer           {name, vipUuid} → vipIp, vpcRouterUuid, l3NetworkUuid (of the backends)
//   load-balancer-listener  {name, loadBalancerUuid, protocol, loadBalancerPort, instancePort,
//                           certificateUuid? (https), balancerAlgorithm, connectionIdleTimeout,
//                           healthyThreshold, unhealthyThreshold, healthCheckInterval,
//                           healthCheckTimeout, healthCheckTarget, maxConnection, vmNicUuids?}
//                           actions addVmNics / removeVmNics {vmNicUuids}, getStatus
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { HEALTH_TARGET_RE, LB_ALGORITHMS, LB_PROTOCOLS } from '../../shared/protocol/lb.js';
import { baseCreate, baseUpdate, Enum, Port, Uuid } from '../model/fields.js';
import { action, emptyAction, type KindDef } from '../model/kind.js';

/** The manual's defaults (负载均衡 高级设置). */
export const LISTENER_DEFAULTS = {
  balancerAlgorithm: 'roundrobin',
  connectionIdleTimeout: 60,
  healthyThreshold: 2,
  unhealthyThreshold: 2,
  healthCheckInterval: 5,
  healthCheckTimeout: 2,
  healthCheckTarget: 'tcp:default',
  maxConnection: 5000,
} as const;

const NicUuids = () => Type.Array(Uuid(), { minItems: 1, maxItems: 256, uniqueItems: true });

export const loadBalancer: KindDef = {
  kind: 'load-balancer',
  collection: 'load-balancers',
  title: 'load balancer',
  createSchema: Obj({ ...baseCreate(), vipUuid: Uuid() }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [{ field: 'vipUuid', kind: 'vip' }],
  states: ['Enabled', 'Disabled'],
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['vipIp', 'vpcRouterUuid', 'l3NetworkUuid'],
  actions: {},
};

export const loadBalancerListener: KindDef = {
  kind: 'load-balancer-listener',
  collection: 'load-balancer-listeners',
  title: 'load balancer listener',
  createSchema: Obj({
    ...baseCreate(),
    loadBalancerUuid: Uuid(),
    protocol: Enum(LB_PROTOCOLS),
    loadBalancerPort: Port(),
    instancePort: Port(),
    certificateUuid: Type.Optional(Uuid({ description: 'https only: the certificate TLS is terminated with' })),
    balancerAlgorithm: Type.Optional(Enum(LB_ALGORITHMS)),
    connectionIdleTimeout: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: 'seconds (default 60)' })),
    healthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'checks passed before a backend is UP (default 2)' })),
    unhealthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'checks failed before a backend is DOWN (default 2)' })),
    healthCheckInterval: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600, description: 'seconds (default 5)' })),
    healthCheckTimeout: Type.Optional(Type.Integer({ minimum: 1, maximum: 300, description: 'seconds (default 2)' })),
    healthCheckTarget: Type.Optional(Type.String({ pattern: HEALTH_TARGET_RE, description: '"tcp:default" (connect) or "http:/path" (GET, 2xx/3xx healthy)' })),
    maxConnection: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'concurrent connections (default 5000)' })),
    vmNicUuids: Type.Optional(NicUuids()),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  parentField: 'loadBalancerUuid',
  parentKind: 'load-balancer',
  refs: [
    { field: 'loadBalancerUuid', kind: 'load-balancer' },
    { field: 'certificateUuid', kind: 'certificate' },
  ],
  states: [],
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { ...LISTENER_DEFAULTS },
  systemFields: ['vipIp'],
  check: (b) => {
    if (b.protocol === 'udp') throw invalid('protocol', 'udp listeners are not implemented yet: the router\'s haproxy (2.6) proxies TCP, HTTP and HTTPS only');
    if (b.protocol === 'https' && b.certificateUuid === undefined) throw invalid('certificateUuid', 'an https listener needs a certificate');
    if (b.protocol !== 'https' && b.certificateUuid !== undefined) throw invalid('certificateUuid', `a ${String(b.protocol)} listener takes no certificate (https only)`);
    const interval = Number(b.healthCheckInterval ?? LISTENER_DEFAULTS.healthCheckInterval);
    const timeout = Number(b.healthCheckTimeout ?? LISTENER_DEFAULTS.healthCheckTimeout);
    if (timeout > interval) throw invalid('healthCheckTimeout', `${timeout} s is longer than healthCheckInterval ${interval} s`);
  },
  actions: {
    addVmNics: action(Obj({ vmNicUuids: NicUuids() }), 'Add backends (VM NICs, all on the load balancer\'s one VPC network)', false),
    removeVmNics: action(Obj({ vmNicUuids: NicUuids() }), 'Remove backends', false),
    getStatus: emptyAction('The listener with each backend\'s health as haproxy sees it (UP/DOWN), read from the router', false),
  },
};

export const lbKinds: KindDef[] = [loadBalancer, loadBalancerListener];
