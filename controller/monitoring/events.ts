// Event subscriptions (manual: 事件报警器): events derived from what the controller sees on its
// bus, matched against enabled subscriptions, published to the subscriptions' SNS topics.
//
//   VmStateChanged             a VM's state changed           labels VMUuid, OldState, NewState, HostUuid
//   VmHaStarted                HA started a VM (compute/ha.ts) labels VMUuid, HostUuid
//   HostStatusChanged          Connected ⇄ Disconnected       labels HostUuid, OldStatus, NewStatus
//   PrimaryStorageLowCapacity  available capacity fell below  labels PrimaryStorageUuid, AvailableCapacityInPercent
//                              the threshold (default 10 %)
//   JobFailed                  a job ended Failed             labels JobUuid, JobType, ErrorCode
//
// Each occurrence has a key built from the resource's own data (uuid + lastOpDate + new
// state, or the job uuid), and delivery uuids derive from it: controllers sharing an
// inventory all see the event (relay) but it is delivered once, and a restarted controller
// never re-sends what it sent before. Events that happened while no controller ran are not
// replayed (the bus is not durable).
import { logger } from '../../shared/log.js';
import type { EventBus, NumberedEvent } from '../events/bus.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { publishToTopic } from '../sns/deliveries.js';
import { DEFAULT_EVENT_TEMPLATE, renderTemplate } from '../sns/template.js';
import { EVENT_NAMESPACES } from '../model/monitoring.js';
import { labelsMatch, type LabelCondition } from './labels.js';

const log = logger('events');

export interface RaisedEvent {
  eventName: string;
  namespace: string;
  resourceType: string;
  resourceUuid: string;
  resourceName: string;
  /** Who may be told (admin subscriptions hear everything). */
  ownerAccountUuid: string;
  labels: Record<string, string>;
  detail: string;
  /** Identifies this occurrence across controllers and restarts. */
  key: string;
  time: string;
}

/** What the evaluator remembers of a resource to see a change. */
interface Last {
  state?: string;
  status?: string;
  percent?: number;
  /** a VM's lastHaStartDate */
  ha?: string;
}

const WATCHED = ['vm-instance', 'host', 'primary-storage'];

export function availablePercent(r: Resource): number | undefined {
  const total = Number(r.totalCapacity);
  const avail = Number(r.availableCapacity);
  if (!Number.isFinite(total) || total <= 0 || !Number.isFinite(avail)) return undefined;
  return Math.round((avail / total) * 10_000) / 100;
}

const lastOf = (r: Resource): Last => {
  const l: Last = {};
  if (typeof r.state === 'string') l.state = r.state;
  if (typeof r.status === 'string') l.status = r.status;
  if (typeof r.lastHaStartDate === 'string') l.ha = r.lastHaStartDate;
  const p = r.kind === 'primary-storage' ? availablePercent(r) : undefined;
  if (p !== undefined) l.percent = p;
  return l;
};

/** The events one bus event raises, given what was known of the resource before (pure). */
export function deriveEvents(e: NumberedEvent, before: Last | undefined, o: { lowCapacityPercent: number }): RaisedEvent[] {
  if (e.type === 'job.finished') {
    if (e.job.state !== 'Failed') return [];
    const code = e.job.error?.code ?? 'UNKNOWN';
    return [
      {
        eventName: 'JobFailed',
        namespace: EVENT_NAMESPACES.JobFailed!,
        resourceType: 'job',
        resourceUuid: e.job.uuid,
        resourceName: e.job.type,
        ownerAccountUuid: e.accountUuid,
        labels: { JobUuid: e.job.uuid, JobType: e.job.type, ErrorCode: code, ...(e.job.resourceUuid ? { ResourceUuid: e.job.resourceUuid } : {}) },
        detail: `failed: ${code}: ${e.job.error?.message ?? ''}`.trim(),
        key: `JobFailed|${e.job.uuid}`,
        time: e.job.finishDate ?? e.time,
      },
    ];
  }
  if (e.type !== 'resource.updated' || !before) return [];
  const r = e.resource;
  const base = { resourceUuid: r.uuid, resourceName: r.name, ownerAccountUuid: r.ownerAccountUuid, time: r.lastOpDate || e.time };
  if (r.kind === 'vm-instance' && typeof r.lastHaStartDate === 'string' && before.ha !== r.lastHaStartDate) {
    // the HA start's own update also changes the state: both events
    const ha: RaisedEvent = {
      ...base,
      eventName: 'VmHaStarted',
      namespace: EVENT_NAMESPACES.VmHaStarted!,
      resourceType: 'vm-instance',
      labels: { VMUuid: r.uuid, ...(typeof r.hostUuid === 'string' ? { HostUuid: r.hostUuid } : {}) },
      detail: `HA started the VM${typeof r.hostUuid === 'string' ? ` on host ${r.hostUuid}` : ''}`,
      key: `VmHaStarted|${r.uuid}|${r.lastHaStartDate}`,
    };
    return [...deriveEvents(e, { ...before, ha: r.lastHaStartDate }, o), ha];
  }
  if (r.kind === 'vm-instance' && typeof r.state === 'string' && before.state !== undefined && before.state !== r.state) {
    return [
      {
        ...base,
        eventName: 'VmStateChanged',
        namespace: EVENT_NAMESPACES.VmStateChanged!,
        resourceType: 'vm-instance',
        labels: { VMUuid: r.uuid, OldState: before.state, NewState: r.state, ...(typeof r.hostUuid === 'string' ? { HostUuid: r.hostUuid } : {}) },
        detail: `state ${before.state} → ${r.state}`,
        key: `VmStateChanged|${r.uuid}|${r.lastOpDate}|${r.state}`,
      },
    ];
  }
  if (r.kind === 'host' && (r.status === 'Connected' || r.status === 'Disconnected') && before.status !== undefined && before.status !== r.status && (before.status === 'Connected' || before.status === 'Disconnected' || r.status === 'Disconnected')) {
    return [
      {
        ...base,
        eventName: 'HostStatusChanged',
        namespace: EVENT_NAMESPACES.HostStatusChanged!,
        resourceType: 'host',
        labels: { HostUuid: r.uuid, OldStatus: before.status, NewStatus: r.status },
        detail: `status ${before.status} → ${r.status}`,
        key: `HostStatusChanged|${r.uuid}|${r.lastOpDate}|${r.status}`,
      },
    ];
  }
  if (r.kind === 'primary-storage') {
    const p = availablePercent(r);
    if (p !== undefined && p < o.lowCapacityPercent && (before.percent === undefined || before.percent >= o.lowCapacityPercent)) {
      return [
        {
          ...base,
          eventName: 'PrimaryStorageLowCapacity',
          namespace: EVENT_NAMESPACES.PrimaryStorageLowCapacity!,
          resourceType: 'primary-storage',
          labels: { PrimaryStorageUuid: r.uuid, AvailableCapacityInPercent: String(p) },
          detail: `available capacity ${p}% is below ${o.lowCapacityPercent}%`,
          key: `PrimaryStorageLowCapacity|${r.uuid}|${r.lastOpDate}`,
        },
      ];
    }
  }
  return [];
}

export interface EventEvaluatorOptions {
  /** PrimaryStorageLowCapacity fires below this available percentage (default 10). */
  lowCapacityPercent?: number;
}

export class EventEvaluator {
  private last = new Map<string, Last>();
  private off?: () => void;
  private readonly lowCapacityPercent: number;
  /**
   * How many event subscriptions exist (undefined: count again). With none, an event costs no
   * query (issue 19: one per VM state change, two per create). Creates count up; a delete makes
   * it unknown; `subsGen` keeps a count that raced with a create from being kept.
   */
  private subs: number | undefined;
  private subsGen = 0;

  constructor(
    private readonly store: InventoryStore,
    private readonly bus: EventBus,
    private readonly adminAccountUuid: () => string,
    /** Called after deliveries were queued (wake the delivery worker). */
    private readonly onQueued: () => void,
    o: EventEvaluatorOptions = {},
  ) {
    this.lowCapacityPercent = o.lowCapacityPercent ?? 10;
  }

  async start(): Promise<void> {
    for (const kind of WATCHED) for (const r of (await this.store.list({ kind, limit: 1_000_000 })).items) this.last.set(r.uuid, lastOf(r));
    this.off = this.bus.subscribe((e) => this.onEvent(e));
  }

  private noteSubscriptions(e: NumberedEvent): void {
    if (!('kind' in e) || e.kind !== 'event-subscription') return;
    this.subsGen++;
    if (e.type === 'resource.created' && this.subs !== undefined) this.subs++;
    else if (e.type === 'resource.deleted') this.subs = undefined;
  }

  private async anySubscription(): Promise<boolean> {
    if (this.subs === undefined) {
      const gen = this.subsGen;
      const n = (await this.store.list({ kind: 'event-subscription', limit: 1 })).total;
      if (gen === this.subsGen) this.subs = n;
      else return true; // changed meanwhile: look this time, count again next time
    }
    return this.subs > 0;
  }

  stop(): void {
    this.off?.();
  }

  /** Handle one bus event (exposed for tests). */
  async onEvent(e: NumberedEvent): Promise<void> {
    this.noteSubscriptions(e);
    let before: Last | undefined;
    if (e.type === 'resource.created' || e.type === 'resource.updated' || e.type === 'resource.deleted') {
      if (!WATCHED.includes(e.kind)) return;
      before = this.last.get(e.uuid);
      if (e.type === 'resource.deleted') this.last.delete(e.uuid);
      else this.last.set(e.uuid, lastOf(e.resource));
    }
    for (const ev of deriveEvents(e, before, { lowCapacityPercent: this.lowCapacityPercent })) await this.dispatch(ev);
  }

  async dispatch(ev: RaisedEvent): Promise<number> {
    if (!(await this.anySubscription())) return 0;
    const subs = await this.store.list({
      kind: 'event-subscription',
      filters: [
        { field: 'eventName', op: '=', value: ev.eventName },
        { field: 'state', op: '=', value: 'Enabled' },
      ],
    });
    let queued = 0;
    for (const s of subs.items) {
      if (s.ownerAccountUuid !== this.adminAccountUuid() && s.ownerAccountUuid !== ev.ownerAccountUuid) continue;
      if (!labelsMatch(s.labels as LabelCondition[] | undefined, ev.labels)) continue;
      const vars = {
        EVENT_NAME: ev.eventName,
        NAMESPACE: ev.namespace,
        RESOURCE_TYPE: ev.resourceType,
        RESOURCE_UUID: ev.resourceUuid,
        RESOURCE_NAME: ev.resourceName,
        EVENT_DETAIL: ev.detail,
        EVENT_TIME: ev.time,
        SUBSCRIPTION_NAME: s.name,
        SUBSCRIPTION_UUID: s.uuid,
      };
      const message = renderTemplate(typeof s.messageTemplate === 'string' ? s.messageTemplate : DEFAULT_EVENT_TEMPLATE, vars);
      const payload = { type: 'event', eventName: ev.eventName, namespace: ev.namespace, resourceType: ev.resourceType, resourceUuid: ev.resourceUuid, labels: ev.labels, subscriptionUuid: s.uuid, time: ev.time };
      for (const a of (s.actions as Array<{ actionType: string; actionUuid: string }> | undefined) ?? []) {
        if (a.actionType !== 'sns') continue;
        try {
          const d = await publishToTopic(this.store, a.actionUuid, { subject: `${ev.eventName}: ${ev.resourceName || ev.resourceUuid}`, message, payload }, `event|${s.uuid}|${ev.key}`, { type: 'event', uuid: s.uuid });
          queued += d.length;
        } catch (err) {
          log.warn({ err: (err as Error).message, subscription: s.uuid, event: ev.key }, 'could not queue an event notification');
        }
      }
    }
    if (queued > 0) this.onQueued();
    return queued;
  }
}
