// The status query every service of a VPC router (haproxy, charon) answers the same way: sync,
// by router uuid, whether the service runs, then the service's own fields.
import { defineCommand } from './command.js';
import type { TProperties } from '@sinclair/typebox';
import { Obj, Type, Uuid } from './schema.js';

export function routerServiceStatus<P extends TProperties>(def: { name: string; description: string; fields: P }) {
  return defineCommand({
    name: def.name,
    agent: 'vrouter',
    mode: 'sync',
    timeoutMs: 15_000,
    request: Obj({ routerUuid: Uuid() }),
    response: Obj({ running: Type.Boolean(), ...def.fields }),
    description: def.description,
  });
}
