// The controller's internal event bus: resource changes (from the observed store), job
// progress (from the job manager) and agents' events (POST /v1/agent-events). The SSE
// endpoint streams the first two to API clients; controller code subscribes to all three.
import { EventEmitter } from 'node:events';
import type { Resource } from '../store/types.js';
import type { JobView } from '../jobs/jobs.js';
import { logger } from '../../shared/log.js';

const log = logger('event-bus');

export type ResourceEventType = 'resource.created' | 'resource.updated' | 'resource.deleted';

export interface ResourceEvent {
  type: ResourceEventType;
  kind: string;
  uuid: string;
  ownerAccountUuid: string;
  /** The resource after the change (before it, for deletes). */
  resource: Resource;
  time: string;
}

export interface JobEvent {
  type: 'job.created' | 'job.progress' | 'job.finished';
  accountUuid: string;
  job: JobView;
  time: string;
}

/** As pushed by an agent (shared/agent/events.ts); hostUuid is the one bound to the agent's token. */
export interface AgentEventIn {
  type: string;
  hostUuid?: string;
  agent: string;
  time: string;
  data: Record<string, unknown>;
}

export type ApiEvent = ResourceEvent | JobEvent;

type Listener<T> = (e: T) => void | Promise<void>;

export type NumberedEvent = ApiEvent & { id: number };

export class EventBus {
  private ee = new EventEmitter();
  private seq = 0;
  /** Identifies this process's numbering: SSE ids are `<epoch>.<seq>`. */
  readonly epoch = Date.now().toString(36);
  private recent: NumberedEvent[] = [];

  constructor(private readonly keep = 2000) {
    this.ee.setMaxListeners(0);
  }

  /** Resource and job events (what SSE clients see). Returns an unsubscribe function. */
  subscribe(fn: Listener<NumberedEvent>): () => void {
    return this.on('api', fn);
  }

  /** `remote`: the event comes from another controller (relayed), not from this process. */
  publish(e: ApiEvent, o: { remote?: boolean } = {}): void {
    const n: NumberedEvent = { ...e, id: ++this.seq };
    this.recent.push(n);
    // shift, not splice(0, 1): V8 drops an array's first element in place, where splice moves
    // all 2,000 (issue 19: 1.8 % of the controller's busy time during 2,000 creates)
    while (this.recent.length > this.keep) this.recent.shift();
    this.ee.emit('api', n);
    if (!o.remote) this.ee.emit('local', n);
  }

  /** Events that originate in this process (what a relay forwards to other controllers). */
  onLocal(fn: Listener<NumberedEvent>): () => void {
    return this.on('local', fn);
  }

  /**
   * Events after `lastId` (`<epoch>.<seq>`) still in memory, or undefined when some are lost
   * (another controller process, or too long ago): the client must re-read what it watches.
   */
  since(lastId: string): NumberedEvent[] | undefined {
    const m = /^([0-9a-z]+)\.(\d+)$/.exec(lastId);
    if (!m || m[1] !== this.epoch) return undefined;
    const after = Number(m[2]);
    if (after > this.seq) return undefined;
    const first = this.recent[0];
    if (after < this.seq && (!first || first.id > after + 1)) return undefined;
    return this.recent.filter((e) => e.id > after);
  }

  /** Agents' events; `type` '*' for all. Listener errors are logged, never thrown at the agent. */
  onAgentEvent(type: string, fn: Listener<AgentEventIn>): () => void {
    return this.on(`agent:${type}`, fn);
  }

  publishAgentEvent(e: AgentEventIn): void {
    this.ee.emit(`agent:${e.type}`, e);
    this.ee.emit('agent:*', e);
  }

  private on<T>(name: string, fn: Listener<T>): () => void {
    const wrapped = (e: T): void => {
      try {
        const r = fn(e);
        if (r && typeof (r as Promise<void>).catch === 'function') (r as Promise<void>).catch((err: unknown) => log.warn({ err, event: name }, 'event listener failed'));
      } catch (err) {
        log.warn({ err, event: name }, 'event listener failed');
      }
    };
    this.ee.on(name, wrapped);
    return () => this.ee.off(name, wrapped);
  }
}
