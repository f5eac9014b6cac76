// Metric alarms (manual: 资源报警器), evaluated with PromQL every `intervalMs`:
//
//   GreaterThan(OrEqualTo) T for period P:  min_over_time(<series>[P]) > T   (held the whole period)
//   LessThan(OrEqualTo)    T for period P:  max_over_time(<series>[P]) < T
//
// Any series meeting it → Alarm; series but none meeting it → OK; no series → InsufficientData.
// A transition is published to the alarm's topics when it enters Alarm (and Alarm → OK with
// enableRecovery); while in Alarm it is re-sent every repeatInterval.
//
// Exactly once across restarts: the notification of transition n has the key
// `alarm|<uuid>|<n>` (n = transitionCount + 1) and is queued BEFORE the alarm is updated; a
// controller that dies in between re-evaluates the same transition n and queues the same key,
// which the delivery's stable uuid makes a no-op. Repeats are keyed by their index since the
// transition. A restarted controller finds the alarm already in Alarm and sends nothing new.
import { logger } from '../../shared/log.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { publishToTopic } from '../sns/deliveries.js';
import { DEFAULT_ALARM_TEMPLATE, renderTemplate } from '../sns/template.js';
import { selector } from './metrics-api.js';
import type { PrometheusManager } from './prometheus.js';

const log = logger('alarms');

export type AlarmStatus = 'OK' | 'Alarm' | 'InsufficientData';

export interface Evaluation {
  status: AlarmStatus;
  value?: number;
  labels?: Record<string, string>;
}

const OPS: Record<string, { fn: 'min_over_time' | 'max_over_time'; cmp: (v: number, t: number) => boolean; sym: string }> = {
  GreaterThan: { fn: 'min_over_time', cmp: (v, t) => v > t, sym: '>' },
  GreaterThanOrEqualTo: { fn: 'min_over_time', cmp: (v, t) => v >= t, sym: '>=' },
  LessThan: { fn: 'max_over_time', cmp: (v, t) => v < t, sym: '<' },
  LessThanOrEqualTo: { fn: 'max_over_time', cmp: (v, t) => v <= t, sym: '<=' },
};

/** The PromQL of an alarm (labels: Equal =, NotEqual !=, Regex =~). */
export function alarmQuery(a: Resource): string {
  const op = OPS[String(a.comparisonOperator)]!;
  const labels = ((a.labels as Array<{ key: string; op?: string; value: string }> | undefined) ?? []).map((l) => ({ key: l.key, op: l.op === 'NotEqual' ? ('!=' as const) : l.op === 'Regex' ? ('=~' as const) : ('=' as const), value: l.value }));
  return `${op.fn}(${selector({ namespace: String(a.namespace), metricName: String(a.metricName), labels })}[${Number(a.period ?? 60)}s])`;
}

/** The status given the query's result (pure). */
export function judge(a: Resource, result: Array<{ metric: Record<string, string>; value: [number, string] }>): Evaluation {
  if (result.length === 0) return { status: 'InsufficientData' };
  const op = OPS[String(a.comparisonOperator)]!;
  const t = Number(a.threshold);
  for (const r of result) {
    const v = Number(r.value[1]);
    if (Number.isFinite(v) && op.cmp(v, t)) return { status: 'Alarm', value: v, labels: r.metric };
  }
  const first = result[0]!;
  return { status: 'OK', value: Number(first.value[1]), labels: first.metric };
}

export class AlarmEvaluator {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(
    private readonly store: InventoryStore,
    private readonly prometheus: () => PrometheusManager | undefined,
    private readonly onQueued: () => void,
    private readonly o: { intervalMs?: number } = {},
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.pass(), this.o.intervalMs ?? 10_000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Evaluate every enabled alarm once. */
  async pass(): Promise<void> {
    const prom = this.prometheus();
    if (!prom || this.running) return;
    this.running = true;
    try {
      const alarms = await this.store.list({ kind: 'alarm', filters: [{ field: 'state', op: '=', value: 'Enabled' }], limit: 10_000 });
      for (const a of alarms.items) {
        // a window reaching back before Prometheus (re)started lacks samples through no fault
        // of the metric: judging it would flap a firing alarm to InsufficientData at restart
        if (Date.now() - prom.startedAt < (Number(a.period ?? 60) + 5) * 1000) continue;
        try {
          await this.evaluate(a, judge(a, await prom.query(alarmQuery(a))));
        } catch (e) {
          log.warn({ alarm: a.uuid, err: (e as Error).message }, 'alarm evaluation failed');
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Apply one evaluation: transition, notify, repeat (see the header for the once-only rule). */
  async evaluate(a: Resource, ev: Evaluation, now = Date.now()): Promise<void> {
    const from = (a.status as AlarmStatus | undefined) ?? 'InsufficientData';
    const n = Number(a.transitionCount ?? 0);
    const nowIso = new Date(now).toISOString();
    if (ev.status !== from) {
      const notify = ev.status === 'Alarm' || (ev.status === 'OK' && from === 'Alarm' && a.enableRecovery === true);
      if (notify) await this.notify(a, from, ev, `alarm|${a.uuid}|${n + 1}`, nowIso);
      const history = [...((a.history as unknown[] | undefined) ?? []), { time: nowIso, from, to: ev.status, value: ev.value ?? null }].slice(-100);
      const patch: Partial<Resource> = { status: ev.status, transitionCount: n + 1, lastTransitionDate: nowIso, history, currentValue: ev.value };
      if (notify) patch.lastNotifyDate = nowIso;
      await this.store.update(a.uuid, patch);
      return;
    }
    if (ev.status === 'Alarm' && a.lastTransitionDate) {
      const every = Number(a.repeatInterval ?? 1800) * 1000;
      const since = now - Date.parse(String(a.lastNotifyDate ?? a.lastTransitionDate));
      if (since >= every) {
        const k = Math.floor((now - Date.parse(String(a.lastTransitionDate))) / every);
        await this.notify(a, from, ev, `alarm|${a.uuid}|${n}|repeat|${k}`, nowIso);
        await this.store.update(a.uuid, { lastNotifyDate: nowIso, currentValue: ev.value });
        return;
      }
    }
    if (ev.value !== undefined && ev.value !== a.currentValue) await this.store.update(a.uuid, { currentValue: ev.value });
  }

  private async notify(a: Resource, from: AlarmStatus, ev: Evaluation, key: string, time: string): Promise<void> {
    const labels = Object.entries(ev.labels ?? {})
      .filter(([k]) => !['__name__', 'job', 'instance', 'component'].includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const vars = {
      ALARM_NAME: a.name,
      ALARM_UUID: a.uuid,
      ALARM_CURRENT_STATUS: ev.status,
      ALARM_PREVIOUS_STATUS: from,
      ALARM_CURRENT_VALUE: ev.value,
      ALARM_THRESHOLD: Number(a.threshold),
      ALARM_COMPARISON_OPERATOR: String(a.comparisonOperator),
      ALARM_NAMESPACE: String(a.namespace),
      ALARM_METRIC: String(a.metricName),
      ALARM_LABELS: labels ? `{${labels}}` : '',
      ALARM_PERIOD: Number(a.period ?? 60),
      ALARM_TIME: time,
    };
    const message = renderTemplate(typeof a.messageTemplate === 'string' ? a.messageTemplate : DEFAULT_ALARM_TEMPLATE, vars);
    const payload = { type: 'alarm', alarmUuid: a.uuid, alarmName: a.name, status: ev.status, previousStatus: from, value: ev.value ?? null, threshold: Number(a.threshold), comparisonOperator: a.comparisonOperator, namespace: a.namespace, metricName: a.metricName, labels: ev.labels ?? {}, time };
    let queued = 0;
    for (const act of (a.actions as Array<{ actionType: string; actionUuid: string }> | undefined) ?? []) {
      if (act.actionType !== 'sns') continue;
      queued += (await publishToTopic(this.store, act.actionUuid, { subject: `Alarm ${a.name}: ${ev.status}`, message, payload }, key, { type: 'alarm', uuid: a.uuid })).length;
    }
    if (queued > 0) this.onQueued();
  }
}
