// The route-table kind (manual 路由表; API in route-table.ts). Kept apart from the API so the
// kind registry can load it without the API's imports.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { baseCreate, baseUpdate, Enum, Ipv4, Uuid } from '../model/fields.js';
import { action, type KindDef } from '../model/kind.js';

export const ROUTE_TYPES = ['UserStatic', 'UserBlackHole'] as const;
export interface RouteEntry {
  destination: string;
  type: (typeof ROUTE_TYPES)[number];
  target?: string;
  distance: number;
}

const Cidr = () => Type.String({ minLength: 9, maxLength: 18, description: 'IPv4 CIDR, e.g. 192.168.10.0/24' });

export const routeTable: KindDef = {
  kind: 'route-table',
  collection: 'route-tables',
  title: 'route table',
  createSchema: Obj({ ...baseCreate(), vpcRouterUuids: Type.Optional(Type.Array(Uuid(), { maxItems: 64, uniqueItems: true })) }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [{ field: 'vpcRouterUuids', kind: 'vpc-router', many: true }],
  states: [],
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['routes'],
  defaults: { vpcRouterUuids: [] },
  actions: {
    addRouteEntry: action(
      Obj({
        destination: Cidr(),
        type: Type.Optional(Enum(ROUTE_TYPES)),
        target: Type.Optional(Ipv4({ description: 'UserStatic: the next hop, on one of the router\'s networks' })),
        distance: Type.Optional(Type.Integer({ minimum: 1, maximum: 254, description: 'priority: lower wins (default 128)' })),
      }),
      'Add a route entry (static via a next hop, or blackhole)',
      false,
    ),
    removeRouteEntry: action(Obj({ destination: Cidr() }), 'Remove the route entry of a destination', false),
    attachVpcRouter: action(Obj({ vpcRouterUuid: Uuid() }), 'Attach to a VPC router (a router has at most one route table)', false),
    detachVpcRouter: action(Obj({ vpcRouterUuid: Uuid() }), 'Detach from a VPC router', false),
  },
};

