// Agent → controller events (POST <controller>/v1/agent-events): VM state changes, download
// progress, reconnect requests. Bounded queue, in order, retried with backoff; the newest
// events win when the controller is away for long.
import { logger } from '../log.js';

export interface AgentEvent {
  type: string;
  hostUuid?: string;
  agent: string;
  time: string;
  data: Record<string, unknown>;
}

const log = logger('events');

export class EventSink {
  private queue: AgentEvent[] = [];
  private sending = false;
  private url?: string;
  private token?: string;
  hostUuid?: string;

  constructor(
    private readonly agent: string,
    private readonly maxQueue = 10_000,
  ) {}

  configure(controllerUrl: string | undefined, token?: string, hostUuid?: string): void {
    this.url = controllerUrl ? controllerUrl.replace(/\/+$/, '') + '/v1/agent-events' : undefined;
    this.token = token;
    if (hostUuid !== undefined) this.hostUuid = hostUuid;
    void this.flush();
  }

  get configured(): boolean {
    return this.url !== undefined;
  }

  emit(type: string, data: Record<string, unknown>): void {
    const ev: AgentEvent = { type, agent: this.agent, time: new Date().toISOString(), data };
    if (this.hostUuid !== undefined) ev.hostUuid = this.hostUuid;
    this.queue.push(ev);
    if (this.queue.length > this.maxQueue) this.queue.splice(0, this.queue.length - this.maxQueue);
    void this.flush();
  }

  private async flush(): Promise<void> {
    if (this.sending || !this.url) return;
    this.sending = true;
    let delay = 200;
    try {
      while (this.queue.length > 0 && this.url) {
        const batch = this.queue.slice(0, 100);
        try {
          const res = await fetch(this.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
            body: JSON.stringify({ events: batch }),
            signal: AbortSignal.timeout(10_000),
          });
          if (res.status >= 500) throw new Error(`HTTP ${res.status}`);
          if (!res.ok) log.warn({ status: res.status }, 'controller refused events; dropping them');
          this.queue.splice(0, batch.length);
          delay = 200;
        } catch (e) {
          log.debug({ err: (e as Error).message, delay }, 'event push failed; retrying');
          await new Promise((r) => setTimeout(r, delay).unref());
          delay = Math.min(delay * 2, 10_000);
        }
      }
    } finally {
      this.sending = false;
    }
  }
}
