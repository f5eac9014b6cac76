// The scheduler: every `tickMs` it looks at the Running triggers in the store, fires the due
// ones (timing.ts decides which slot, if any) and runs each Enabled job loaded on a fired
// trigger as the API would: the job type's action handler, as a job (/v1/jobs) owned by the
// scheduler job's account, with that account's rights. All state is in the store (the trigger's
// nextFireTime, fireCount, missedFires; the job's last run), so a restarted controller goes on
// where the last one stopped. Each fire is claimed in the store first (namespace
// 'scheduler-fire', key <trigger>:<slot ms>), so no slot fires twice — not across a restart
// (crash between claim and state update: the slot is not fired again) nor with several
// controllers on one store. The cost of that order is at-most-once: a controller that dies
// between the claim and starting the jobs loses that one fire (recorded as the trigger's
// lastFireTime without job runs), which for start/stop/reboot/snapshot is the safe side.
import { randomUUID } from 'node:crypto';
import { logger } from '../../shared/log.js';
import { validate } from '../../shared/protocol/schema.js';
import type { ControllerContext } from '../context.js';
import type { Principal } from '../auth/accounts.js';
import type { Resource } from '../store/types.js';
import { JOB_TYPES, type JobType } from './model.js';
import { MISFIRE_GRACE_MS, planFire } from './timing.js';
import { timingOf } from './api.js';

const log = logger('scheduler');
const CLAIMS = 'scheduler-fire';

export interface SchedulerOptions {
  /** How often due triggers are looked for (default 5 s; 0: no timer, call tick() — tests). */
  tickMs?: number;
  /** The clock (epoch ms; default Date.now): tests drive the grid with their own. */
  now?: () => number;
  /** How late a slot may still fire (default timing.MISFIRE_GRACE_MS). */
  graceMs?: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class Scheduler {
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private stopped = false;
  private readonly runs = new Set<Promise<unknown>>();
  readonly now: () => number;

  constructor(
    private readonly ctx: ControllerContext,
    private readonly o: SchedulerOptions = {},
  ) {
    this.now = o.now ?? Date.now;
  }

  start(): void {
    const ms = this.o.tickMs ?? 5_000;
    if (ms <= 0) return;
    this.timer = setInterval(() => void this.tick(), ms);
    this.timer.unref();
  }

  /** Stop ticking; waits for the tick in progress and for the runs it started to be recorded. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.ticking;
    await Promise.allSettled([...this.runs]);
  }

  /** Fire what is due now (one tick at a time; an overlapping call waits for the running one). */
  tick(): Promise<void> {
    this.ticking ??= this.doTick()
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'scheduler tick failed'))
      .finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async doTick(): Promise<void> {
    if (this.stopped) return;
    const triggers = (await this.ctx.store.list({ kind: 'scheduler-trigger', filters: [{ field: 'status', op: '=', value: 'Running' }], limit: 100_000 })).items;
    for (const t of triggers) {
      try {
        await this.step(t);
      } catch (e) {
        log.warn({ trigger: t.uuid, err: (e as Error).message }, 'scheduler trigger step failed');
      }
    }
  }

  private async step(t: Resource): Promise<void> {
    const store = this.ctx.store;
    const now = this.now();
    const next = typeof t.nextFireTime === 'string' ? Date.parse(t.nextFireTime) : undefined;
    const plan = planFire(timingOf(t), next, Number(t.fireCount ?? 0), now, this.o.graceMs ?? MISFIRE_GRACE_MS);
    if (!plan) {
      if (next === undefined) await store.update(t.uuid, { status: 'Completed' });
      return;
    }
    const won = plan.fire !== undefined && (await store.claim(CLAIMS, `${t.uuid}:${plan.fire}`, this.ctx.jobs.instanceId));
    const patch: Record<string, unknown> = { nextFireTime: plan.next !== undefined ? iso(plan.next) : undefined, status: plan.next !== undefined ? 'Running' : 'Completed', missedFires: Number(t.missedFires ?? 0) + plan.missed };
    if (won) Object.assign(patch, { fireCount: Number(t.fireCount ?? 0) + 1, lastFireTime: iso(plan.fire!) });
    await store.update(t.uuid, patch);
    if (plan.missed > 0) log.warn({ trigger: t.uuid, missed: plan.missed }, 'scheduler trigger slots passed unfired (controller down or too late)');
    if (!won) return;
    if (typeof t.lastFireTime === 'string') await store.release(CLAIMS, `${t.uuid}:${Date.parse(t.lastFireTime)}`).catch(() => undefined);
    const jobs = (await store.list({ kind: 'scheduler-job', filters: [{ field: 'schedulerTriggerUuid', op: '=', value: t.uuid }], limit: 10_000 })).items;
    for (const j of jobs) if (j.state !== 'Disabled') await this.run(j, plan.fire!);
  }

  /** Start one scheduler job's operation as a job of its account; its outcome is recorded on the scheduler job. */
  private async run(sj: Resource, slot: number): Promise<void> {
    const store = this.ctx.store;
    const runCount = Number(sj.runCount ?? 0) + 1;
    const failed = (msg: string): Promise<unknown> => store.update(sj.uuid, { runCount, lastRunTime: iso(slot), lastRunResult: 'Failed', lastError: msg, lastJobUuid: undefined });
    const type = JOB_TYPES[sj.type as JobType];
    const target = type ? await store.get(String(sj.targetResourceUuid)) : undefined;
    if (!type || !target || target.kind !== type.kind) return void (await failed(`the target ${String(sj.targetResourceUuid)} is gone`));
    const account = await store.get(sj.ownerAccountUuid);
    if (!account || account.state === 'Disabled') return void (await failed(`the account ${sj.ownerAccountUuid} is disabled or gone`));
    const spec = this.ctx.registry.action(type.collection, type.action);
    if (!spec?.run) return void (await failed(`${type.collection} ${type.action} is not available on this controller`));
    const principal: Principal = { accountUuid: account.uuid, accountName: account.name, isAdmin: account.uuid === this.ctx.adminAccountUuid, sessionId: `scheduler-job:${sj.uuid}` };
    let params: Record<string, unknown> = {};
    if (sj.type === 'volumeSnapshot') {
      const p = (sj.parameters ?? {}) as { snapshotName?: string; snapshotDescription?: string };
      params = { name: `${p.snapshotName ?? sj.name}-${iso(slot)}`, ...(p.snapshotDescription ? { description: p.snapshotDescription } : {}) };
    }
    let job: { uuid: string };
    try {
      params = validate(spec.schema, params, type.action) as Record<string, unknown>;
      const run = spec.run;
      // a resumable action keeps what the API's job keeps (api/resume.ts: run again if its flow never started)
      const context: Record<string, unknown> = { schedulerJobUuid: sj.uuid };
      const newUuid = spec.resumable && spec.newUuid ? randomUUID() : undefined;
      if (spec.resumable) {
        const { sessionId: _s, ...kept } = principal;
        Object.assign(context, { params, principal: kept }, newUuid ? { newUuid } : {});
      }
      job = await this.ctx.jobs.start({ type: `${type.collection}.${type.action}`, accountUuid: account.uuid, resourceUuid: target.uuid, context }, (jc) => run(target, params, { ...this.ctx, principal, job: jc, ...(newUuid ? { newUuid } : {}) }));
    } catch (e) {
      return void (await failed((e as Error).message));
    }
    await store.update(sj.uuid, { runCount, lastRunTime: iso(slot), lastRunResult: 'Running', lastJobUuid: job.uuid, lastError: undefined });
    log.info({ schedulerJob: sj.uuid, type: sj.type, target: target.uuid, job: job.uuid }, 'scheduler job started');
    const done = this.ctx.jobs
      .wait(job.uuid)
      .then(async (d) => {
        const cur = await store.get(sj.uuid);
        if (!cur || cur.lastJobUuid !== job.uuid || !d || d.state === 'Running') return;
        await store.update(sj.uuid, { lastRunResult: d.state, lastError: d.error?.message });
      })
      .catch((e: unknown) => log.warn({ schedulerJob: sj.uuid, err: (e as Error).message }, 'recording a scheduler job run failed'))
      .finally(() => this.runs.delete(done));
    this.runs.add(done);
  }
}
