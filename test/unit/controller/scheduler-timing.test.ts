// The scheduler's time grid (controller/scheduler/timing.ts): slots of simple and cron
// triggers, what one step fires, skips and leaves next; bounded cron input.
import { strict as assert } from 'node:assert';
import { TStackError } from '../../../shared/errors.js';
import { parseCron, parseStartTime, planFire, slotAtOrAfter, type TriggerTiming } from '../../../controller/scheduler/timing.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const simple = (o: Partial<TriggerTiming> = {}): TriggerTiming => ({ schedulerType: 'simple', schedulerInterval: 3600, startTime: T0, ...o });
const H = 3600_000;

describe('scheduler timing', () => {
  it('simple: slots on the grid from startTime, repeatCount of them', () => {
    assert.equal(slotAtOrAfter(simple(), T0 - 5000), T0);
    assert.equal(slotAtOrAfter(simple(), T0 + 1), T0 + H);
    assert.equal(slotAtOrAfter(simple({ repeatCount: 2 }), T0 + H + 1), undefined);
  });

  it('the manual\'s example: 10 hourly snapshots from 12:00, off at 14:30, on at 18:30 → 19:00, 20:00, 21:00 run', () => {
    const t = simple({ repeatCount: 10 });
    // enabled again at 18:30 with 15:00 as the next unhandled slot: 15…18 have expired
    const p = planFire(t, T0 + 3 * H, 3, T0 + 6.5 * H)!;
    assert.deepEqual(p, { missed: 4, next: T0 + 7 * H });
    assert.deepEqual(planFire(t, T0 + 9 * H, 6, T0 + 9 * H + 2000), { fire: T0 + 9 * H, missed: 0 }, 'the 10th slot fires; then the trigger is done');
  });

  it('one step: nothing before the slot, the slot when due, the latest of several due within grace', () => {
    const t = simple({ schedulerInterval: 10 });
    assert.equal(planFire(t, T0, 0, T0 - 1), undefined);
    assert.deepEqual(planFire(t, T0, 0, T0), { fire: T0, missed: 0, next: T0 + 10_000 });
    assert.deepEqual(planFire(t, T0, 0, T0 + 35_000), { fire: T0 + 30_000, missed: 3, next: T0 + 40_000 });
    assert.deepEqual(planFire(t, T0, 0, T0 + 35_000, 1000), { missed: 4, next: T0 + 40_000 }, 'beyond the grace nothing fires');
    assert.equal(planFire(t, undefined, 0, T0), undefined, 'completed');
  });

  it('cron (UTC): 5 or 6 fields, next times, repeatCount counts fires', () => {
    const t: TriggerTiming = { schedulerType: 'cron', cron: '0 3 * * *', startTime: T0 };
    assert.equal(slotAtOrAfter(t, T0), Date.UTC(2030, 0, 2, 3, 0, 0));
    const s: TriggerTiming = { schedulerType: 'cron', cron: '*/15 * * * * *', startTime: T0, repeatCount: 2 };
    assert.equal(slotAtOrAfter(s, T0), T0, 'a slot at startTime itself counts');
    assert.deepEqual(planFire(s, T0, 0, T0 + 1000), { fire: T0, missed: 0, next: T0 + 15_000 });
    assert.deepEqual(planFire(s, T0 + 15_000, 1, T0 + 16_000), { fire: T0 + 15_000, missed: 0 }, 'the second fire completes it');
    assert.deepEqual(planFire({ ...s, repeatCount: undefined }, T0, 0, T0 + 61_000), { fire: T0 + 60_000, missed: 4, next: T0 + 75_000 });
  });

  it('bad cron and start times: 400 naming the field', () => {
    const field = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof TStackError && e.code === 'INVALID_ARGUMENT', String(e));
        return String(e.details?.field);
      }
      return undefined;
    };
    for (const c of ['61 * * * *', '* * *', '* * * * * * *', 'a b c d e', `${'1,'.repeat(70)}1 * * * *`, '* * * * *\n* * * * *']) assert.equal(field(() => parseCron(c, T0)), 'cron', c);
    assert.equal(field(() => parseStartTime('next tuesday')), 'startTime');
    assert.equal(field(() => parseStartTime(-1)), 'startTime');
    assert.equal(parseStartTime(T0 / 1000), T0);
    assert.equal(parseStartTime('2030-01-01T12:00:00Z'), T0);
  });
});
