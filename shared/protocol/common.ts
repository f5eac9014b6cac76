// Commands every agent answers.
import { defineCommand } from './command.js';
import { Obj, Type } from './schema.js';

export const AgentInfo = Obj({
  agent: Type.String(),
  version: Type.String(),
  protocolVersion: Type.Integer(),
  capabilities: Type.Array(Type.String()),
  bootId: Type.String({ description: 'changes when the host reboots' }),
  startedAt: Type.String({ description: 'when this agent process started' }),
  hostUuid: Type.Optional(Type.String()),
  hypervisor: Type.Optional(
    Obj(
      {
        libvirt: Type.Optional(Type.String({ maxLength: 64 })),
        qemu: Type.Optional(Type.String({ maxLength: 64 })),
      },
      { description: 'hypervisor versions (kvmagent; absent while libvirt is unreachable). Also sent as capability tokens version:libvirt=… / version:qemu=… for older controllers' },
    ),
  ),
});

export const Ping = defineCommand({
  name: 'ping',
  agent: 'any',
  mode: 'sync',
  timeoutMs: 10_000,
  request: Obj({}),
  response: AgentInfo,
  description: 'liveness, versions, capabilities and boot id',
});

export const Connect = defineCommand({
  name: 'connect',
  agent: 'any',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({
    hostUuid: Type.String({ minLength: 1, maxLength: 64 }),
    controllerUrl: Type.String({ pattern: '^https?://' }),
    eventToken: Type.Optional(Type.String({ description: 'bearer token for POST /v1/agent-events' })),
  }),
  response: AgentInfo,
  description: 'bind the agent to a controller: events go to controllerUrl',
});

/** Test/diagnostic command: echoes after an optional delay; `fail` makes it fail. */
export const Echo = defineCommand({
  name: 'echo',
  agent: 'any',
  mode: 'async',
  timeoutMs: 60_000,
  request: Obj({
    message: Type.String({ maxLength: 4096 }),
    delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
    fail: Type.Optional(Type.Boolean()),
    queueKey: Type.Optional(Type.String({ maxLength: 128 })),
  }),
  response: Obj({ message: Type.String(), runs: Type.Integer(), startedAt: Type.Number(), finishedAt: Type.Number() }),
  description: 'diagnostics: echo a message, optionally after a delay',
});
