// When a scheduler trigger fires (pure: no clock, no store). A trigger's fire times are a fixed
// grid — simple: startTime + k·schedulerInterval for k < repeatCount (unbounded without one);
// cron: the expression's times from startTime on (UTC), at most repeatCount fires — and the
// stored `nextFireTime` is the next grid slot not yet handled. A slot is fired when it is due
// and at most `graceMs` late; a slot found later than that (the controller was down, the
// trigger's jobs were all disabled…) is skipped and counted as missed, never run late and never
// run twice: as in the manual (定时任务), expired runs do not execute and the rest of the grid
// goes on. When several slots are due at once, only the latest one within grace fires.
import { CronExpressionParser, type CronExpression } from 'cron-parser';
import { invalid } from '../../shared/errors.js';

export const SCHEDULER_TYPES = ['simple', 'cron'] as const;
/** How late a slot may still be fired (default for the scheduler; tests may narrow it). */
export const MISFIRE_GRACE_MS = 60_000;
/** Cron expressions: 5 fields (minute…) or 6 (second…), at most this long. */
export const MAX_CRON_LENGTH = 128;

export interface TriggerTiming {
  schedulerType: (typeof SCHEDULER_TYPES)[number];
  /** Seconds between fires (simple). */
  schedulerInterval?: number;
  repeatCount?: number;
  /** Epoch ms of the first slot (simple) or from which the cron times count. */
  startTime: number;
  cron?: string;
}

/** A cron expression that cron-parser reads, bounded (length, fields, characters); throws 400 naming `field`. */
export function parseCron(expr: string, from: number, field = 'cron'): CronExpression {
  if (expr.length > MAX_CRON_LENGTH) throw invalid(field, `at most ${MAX_CRON_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\x00-\x1f]/.test(expr)) throw invalid(field, 'control characters are not allowed');
  const n = expr.trim().split(/\s+/).length;
  if (n !== 5 && n !== 6) throw invalid(field, `expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got ${n}`);
  try {
    return CronExpressionParser.parse(expr, { currentDate: new Date(from), tz: 'UTC', strict: false });
  } catch (e) {
    throw invalid(field, `not a valid cron expression: ${(e as Error).message}`);
  }
}

/** The first cron time at or after `from` (undefined when the expression has none). */
function cronAtOrAfter(expr: string, from: number): number | undefined {
  const c = parseCron(expr, from - 1);
  return c.hasNext() ? c.next().getTime() : undefined;
}

/** The first slot at or after `from` (and at or after startTime), or undefined when the grid is over. */
export function slotAtOrAfter(t: TriggerTiming, from: number): number | undefined {
  const at = Math.max(from, t.startTime);
  if (t.schedulerType === 'cron') return cronAtOrAfter(t.cron!, at);
  const iv = t.schedulerInterval! * 1000;
  const k = Math.ceil((at - t.startTime) / iv);
  return t.repeatCount !== undefined && k >= t.repeatCount ? undefined : t.startTime + k * iv;
}

/** The latest slot at or before `now` and at or after `from` (simple: by arithmetic; cron: walking, bounded). */
function latestDue(t: TriggerTiming, from: number, now: number): { slot: number; skipped: number } {
  if (t.schedulerType === 'simple') {
    const iv = t.schedulerInterval! * 1000;
    let k = Math.floor((now - t.startTime) / iv);
    if (t.repeatCount !== undefined) k = Math.min(k, t.repeatCount - 1);
    const k0 = Math.round((from - t.startTime) / iv);
    return { slot: t.startTime + k * iv, skipped: Math.max(0, k - k0) };
  }
  const c = parseCron(t.cron!, from);
  let slot = from;
  let skipped = 0;
  // a cron due many times over (a long outage): count up to a bound, then jump to the last one
  while (c.hasNext()) {
    const n = c.next().getTime();
    if (n > now) break;
    if (++skipped > 10_000) {
      const back = CronExpressionParser.parse(t.cron!, { currentDate: new Date(now + 1), tz: 'UTC' });
      slot = back.hasPrev() ? back.prev().getTime() : slot;
      break;
    }
    slot = n;
  }
  return { slot, skipped };
}

export interface FirePlan {
  /** The slot to fire now (its epoch ms identifies the fire), if any. */
  fire?: number;
  /** Slots passed over without firing. */
  missed: number;
  /** The next slot after this step; undefined: the trigger is completed. */
  next?: number;
}

/**
 * One scheduler step for a trigger whose next unhandled slot is `nextFireTime` (fires counts
 * the fires so far, for cron's repeatCount). Nothing due: undefined.
 */
export function planFire(t: TriggerTiming, nextFireTime: number | undefined, fires: number, now: number, graceMs = MISFIRE_GRACE_MS): FirePlan | undefined {
  if (nextFireTime === undefined || nextFireTime > now) return undefined;
  const { slot, skipped } = latestDue(t, nextFireTime, now);
  const fire = now - slot <= graceMs ? slot : undefined;
  const missed = skipped + (fire === undefined ? 1 : 0);
  let next = slotAtOrAfter(t, slot + 1);
  if (t.schedulerType === 'cron' && t.repeatCount !== undefined && fires + (fire !== undefined ? 1 : 0) >= t.repeatCount) next = undefined;
  return { ...(fire !== undefined ? { fire } : {}), missed, ...(next !== undefined ? { next } : {}) };
}

/** startTime as given (ISO 8601, or epoch seconds / ms) → epoch ms; throws 400 naming the field. */
export function parseStartTime(v: unknown, field = 'startTime'): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0) throw invalid(field, 'expected epoch seconds or an ISO 8601 date');
    return v > 1e11 ? Math.round(v) : Math.round(v * 1000);
  }
  if (typeof v !== 'string' || v.length > 64 || !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(v)) throw invalid(field, 'expected an ISO 8601 date (2026-01-31T12:00:00Z) or epoch seconds');
  const ms = Date.parse(v.replace(' ', 'T'));
  if (Number.isNaN(ms)) throw invalid(field, `not a date: ${v}`);
  return ms;
}
