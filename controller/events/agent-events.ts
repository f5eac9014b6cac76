// Agents push events to POST /v1/agent-events with `Authorization: Bearer <event token>`.
// The host code gives every connected agent an event token (common.Connect's eventToken) and
// registers it here, bound to the host's uuid; events are stamped with that uuid (an agent
// cannot speak for another host) and published on the bus (bus.onAgentEvent(type, fn)).
import { createHash, randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { Obj, Type, validate } from '../../shared/protocol/schema.js';
import type { EventBus } from './bus.js';

const sha = (t: string): string => createHash('sha256').update(t).digest('hex');

export const AgentEventsBody = Obj({
  events: Type.Array(
    Type.Object({
      type: Type.String({ minLength: 1, maxLength: 128 }),
      hostUuid: Type.Optional(Type.String()),
      agent: Type.String({ maxLength: 64 }),
      time: Type.String({ maxLength: 64 }),
      data: Type.Record(Type.String(), Type.Unknown()),
    }),
    { maxItems: 1000 },
  ),
});

export class AgentRegistry {
  /** Token hash → host; one token per host, so `byHost` finds a host's entry without a scan (1,000 hosts bound again after a restart). */
  private tokens = new Map<string, string>();
  private byHost = new Map<string, string>();

  /** Bind an event token to a host; returns the token (a fresh random one when not given). */
  register(hostUuid: string, token = randomBytes(24).toString('base64url')): string {
    this.unregister(hostUuid);
    const h = sha(token);
    this.tokens.set(h, hostUuid);
    this.byHost.set(hostUuid, h);
    return token;
  }

  unregister(hostUuid: string): void {
    const h = this.byHost.get(hostUuid);
    if (h === undefined) return;
    this.byHost.delete(hostUuid);
    if (this.tokens.get(h) === hostUuid) this.tokens.delete(h);
  }

  hostOf(token: string | undefined): string | undefined {
    return token ? this.tokens.get(sha(token)) : undefined;
  }

  /** Authenticate, validate and publish a batch; returns how many events were accepted. */
  accept(bus: EventBus, token: string | undefined, body: unknown): number {
    const hostUuid = this.hostOf(token);
    if (!hostUuid) throw new TStackError('UNAUTHORIZED', 'agent events need the event token the controller gave the agent at connect time');
    const b = validate(AgentEventsBody, body, 'agent events');
    for (const e of b.events) bus.publishAgentEvent({ ...e, hostUuid });
    return b.events.length;
  }
}
