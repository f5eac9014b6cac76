// Deliveries: a message for one endpoint, persisted before it is sent (kind 'sns-delivery',
// parent the endpoint). Lifecycle:
//
//   Pending ──(a worker takes it: CAS)──▶ Sending ──▶ Succeeded
//      ▲                                     │
//      └──── attempts < max: backoff ◀───────┤
//                                            └──▶ Failed (attempts exhausted; lastError kept)
//
// The CAS Pending→Sending lets several controllers share the work without sending twice; a
// delivery left Sending by a controller that died is put back to Pending after `staleMs`
// (at-least-once: it may then be sent again). Each delivery's uuid is derived from what
// caused it (publish's `key`), so a notification published twice exists once.
import { logger } from '../../shared/log.js';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { stableUuid } from './ids.js';
import { httpSender, type Message, type Sender } from './senders.js';
import { endpointPassword, SEALED_PASSWORD } from './endpoint-secret.js';
import type { SecretBox } from '../auth/secret-box.js';

const log = logger('sns');

export const DELIVERY_KIND = 'sns-delivery';

export interface DeliveryOptions {
  /** Attempts before a delivery is Failed (default 5). */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt up to maxBackoffMs (default 2 s, 5 min). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-attempt timeout (default 10 s). */
  timeoutMs?: number;
  /** A Sending delivery older than this is taken back (default 2 min). */
  staleMs?: number;
  /** Poll interval for due retries (default 1 s). */
  pollMs?: number;
  senders?: Partial<Record<'HTTP' | 'Email', Sender>>;
  /** Opens the endpoints' sealed passwords (endpoint-secret.ts); without it senders get none. */
  secretBox?: SecretBox;
}

export interface PublishSource {
  type: 'alarm' | 'event';
  uuid: string;
}

/**
 * Queue `m` for every enabled endpoint subscribed to the topic. `key` identifies the
 * notification (same key → same deliveries); returns the deliveries created now.
 */
export async function publishToTopic(store: InventoryStore, topicUuid: string, m: Message, key: string, source: PublishSource): Promise<Resource[]> {
  const topic = await store.get(topicUuid);
  if (!topic || topic.kind !== 'sns-topic') {
    log.warn({ topic: topicUuid, source }, 'notification for a topic that no longer exists; dropped');
    return [];
  }
  if (topic.state === 'Disabled') return [];
  const out: Resource[] = [];
  const now = new Date().toISOString();
  for (const epUuid of (topic.endpointUuids as string[] | undefined) ?? []) {
    const ep = await store.get(epUuid);
    if (!ep || ep.kind !== 'sns-endpoint' || ep.state === 'Disabled') continue;
    const d: Resource = {
      uuid: stableUuid(`${key}|${topicUuid}|${epUuid}`),
      kind: DELIVERY_KIND,
      name: m.subject.slice(0, 255),
      createDate: now,
      lastOpDate: now,
      ownerAccountUuid: topic.ownerAccountUuid,
      tags: [],
      parentUuid: epUuid,
      state: 'Pending',
      topicUuid,
      endpointUuid: epUuid,
      endpointType: ep.type,
      subject: m.subject,
      message: m.message,
      payload: m.payload,
      attempts: 0,
      nextAttemptAt: now,
      sourceType: source.type,
      sourceUuid: source.uuid,
    };
    try {
      out.push(await store.create(d));
    } catch (e) {
      if (e instanceof TStackError && e.code === 'CONFLICT') continue; // already queued (another controller, or before a restart)
      throw e;
    }
  }
  return out;
}

export class DeliveryWorker {
  private timer?: NodeJS.Timeout;
  private running = false;
  private again = false;
  private stopped = false;
  private readonly o: Required<Omit<DeliveryOptions, 'senders' | 'secretBox'>>;
  private readonly box: SecretBox | undefined;
  private readonly senders: Partial<Record<string, Sender>>;
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly store: InventoryStore,
    readonly controllerId: string,
    o: DeliveryOptions = {},
  ) {
    this.o = { maxAttempts: o.maxAttempts ?? 5, backoffMs: o.backoffMs ?? 2_000, maxBackoffMs: o.maxBackoffMs ?? 300_000, timeoutMs: o.timeoutMs ?? 10_000, staleMs: o.staleMs ?? 120_000, pollMs: o.pollMs ?? 1_000 };
    this.senders = { HTTP: httpSender, ...o.senders };
    this.box = o.secretBox;
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.o.pollMs);
    this.timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.inflight]);
  }

  /** Look for due deliveries now (new ones were just queued). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.pass()
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'delivery pass failed'))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  backoff(attempt: number): number {
    return Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** Math.max(0, attempt - 1));
  }

  private async pass(): Promise<void> {
    const now = new Date().toISOString();
    const stale = new Date(Date.now() - this.o.staleMs).toISOString();
    const sending = await this.store.list({ kind: DELIVERY_KIND, filters: [{ field: 'state', op: '=', value: 'Sending' }, { field: 'sendingSince', op: '<', value: stale }], limit: 100 });
    for (const d of sending.items) {
      await this.store.transition(d.uuid, 'Sending', 'Pending', { controllerId: undefined }).catch(() => undefined);
      log.warn({ delivery: d.uuid, controller: d.controllerId }, 'delivery was left Sending (its controller stopped?); retrying it');
    }
    const due = await this.store.list({ kind: DELIVERY_KIND, filters: [{ field: 'state', op: '=', value: 'Pending' }, { field: 'nextAttemptAt', op: '<=', value: now }], limit: 50, sort: { field: 'nextAttemptAt', dir: 'asc' } });
    for (const d of due.items) {
      if (this.stopped) return;
      let mine: Resource;
      try {
        mine = await this.store.transition(d.uuid, 'Pending', 'Sending', { controllerId: this.controllerId, sendingSince: new Date().toISOString() });
      } catch {
        continue; // another controller took it, or it was deleted
      }
      const p = this.send(mine).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  private async send(d: Resource): Promise<void> {
    const attempts = Number(d.attempts ?? 0) + 1;
    let error: string | undefined;
    try {
      const ep = await this.store.get(String(d.endpointUuid));
      if (!ep || ep.kind !== 'sns-endpoint') throw new Error('the endpoint was deleted');
      const sender = this.senders[String(ep.type)];
      if (!sender) throw new Error(`no sender for ${String(ep.type)} endpoints is configured on this controller`);
      // the sender sees the password in clear, in memory only
      const password = this.box ? endpointPassword(this.box, ep) : undefined;
      const { [SEALED_PASSWORD]: _sealed, ...plain } = ep;
      await sender(password !== undefined ? { ...plain, _password: password } : plain, { subject: String(d.subject), message: String(d.message), payload: { ...(d.payload as Record<string, unknown>), deliveryUuid: d.uuid } }, AbortSignal.timeout(this.o.timeoutMs));
    } catch (e) {
      error = (e as Error).message || String(e);
    }
    const done = { attempts, controllerId: undefined, sendingSince: undefined, lastAttemptDate: new Date().toISOString() };
    if (error === undefined) {
      await this.store.transition(d.uuid, 'Sending', 'Succeeded', { ...done, lastError: undefined }).catch(() => undefined);
      log.info({ delivery: d.uuid, endpoint: d.endpointUuid, attempts }, 'notification delivered');
    } else if (attempts >= this.o.maxAttempts) {
      await this.store.transition(d.uuid, 'Sending', 'Failed', { ...done, lastError: error }).catch(() => undefined);
      log.warn({ delivery: d.uuid, endpoint: d.endpointUuid, attempts, err: error }, 'notification failed; giving up');
    } else {
      const next = new Date(Date.now() + this.backoff(attempts)).toISOString();
      await this.store.transition(d.uuid, 'Sending', 'Pending', { ...done, lastError: error, nextAttemptAt: next }).catch(() => undefined);
      log.info({ delivery: d.uuid, endpoint: d.endpointUuid, attempts, next, err: error }, 'notification not delivered; will retry');
    }
  }
}
