// API handlers of scheduler jobs and triggers (model: ./model.ts). A job's target must be a
// resource of the job type's kind that the caller may change; a trigger's grid is checked and
// its first slot stored at create (nextFireTime, by the scheduler's clock); jobs are loaded on
// and unloaded from triggers the caller may change.
import { TStackError, invalid } from '../../shared/errors.js';
import type { Resource } from '../store/types.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import { canWrite } from '../api/crud.js';
import { kindDef, prepareCreate } from '../model/index.js';
import { JOB_TYPES, type JobType } from './model.js';
import { parseStartTime, slotAtOrAfter, type TriggerTiming } from './timing.js';

/** The timing of a stored trigger. */
export function timingOf(t: Resource): TriggerTiming {
  const out: TriggerTiming = { schedulerType: t.schedulerType === 'cron' ? 'cron' : 'simple', startTime: Date.parse(String(t.startTime)) };
  if (typeof t.schedulerInterval === 'number') out.schedulerInterval = t.schedulerInterval;
  if (typeof t.repeatCount === 'number') out.repeatCount = t.repeatCount;
  if (typeof t.cron === 'string') out.cron = t.cron;
  return out;
}

async function writableTrigger(oc: OpContext, uuid: string, field: string): Promise<Resource> {
  const t = await oc.store.get(uuid);
  if (!t || t.kind !== 'scheduler-trigger' || !canWrite(oc.principal, t)) throw invalid(field, `no scheduler trigger with uuid ${uuid}`);
  return t;
}

export function registerSchedulerApi(reg: ApiRegistry, now: () => number): void {
  reg.setCreate('scheduler-jobs', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, kindDef('scheduler-job')!, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canWrite(oc.principal, r) });
      const type = JOB_TYPES[p.resource.type as JobType];
      const target = await oc.store.get(String(p.resource.targetResourceUuid));
      if (!target || target.kind !== type.kind || !canWrite(oc.principal, target)) throw invalid('targetResourceUuid', `no ${type.kind} with uuid ${String(p.resource.targetResourceUuid)} (${String(p.resource.type)} acts on a ${type.kind})`);
      if (type.kind === 'vm-instance' && (target.state === 'Destroyed' || target.state === 'Expunging')) throw invalid('targetResourceUuid', `VM ${target.uuid} is ${String(target.state)}`);
      return oc.store.create({ ...p.resource, targetResourceType: type.kind });
    },
  });
  reg.setCreate('scheduler-triggers', {
    run: async (body, oc) => {
      const p = await prepareCreate(oc.store, kindDef('scheduler-trigger')!, body, { ownerAccountUuid: oc.principal.accountUuid });
      const start = p.resource.startTime === undefined ? Math.ceil(now() / 1000) * 1000 : parseStartTime(p.resource.startTime);
      const r: Resource = { ...p.resource, startTime: new Date(start).toISOString() };
      const first = slotAtOrAfter(timingOf(r), start);
      if (first === undefined) throw invalid('cron', 'the expression has no time from startTime on');
      return oc.store.create({ ...r, nextFireTime: new Date(first).toISOString(), status: 'Running' });
    },
  });

  const act = (c: string, name: string, run: NonNullable<Parameters<ApiRegistry['registerAction']>[2]['run']>): void => {
    if (!reg.action(c, name)?.run) reg.registerAction(c, name, { run });
  };
  act('scheduler-jobs', 'changeState', (r, p, oc) => oc.store.update(r.uuid, { state: p.stateEvent === 'disable' ? 'Disabled' : 'Enabled' }));
  act('scheduler-jobs', 'addSchedulerJobToSchedulerTrigger', async (r, p, oc) => {
    const t = await writableTrigger(oc, String(p.schedulerTriggerUuid), 'addSchedulerJobToSchedulerTrigger.schedulerTriggerUuid');
    if (r.schedulerTriggerUuid === t.uuid) return r;
    if (typeof r.schedulerTriggerUuid === 'string') throw new TStackError('CONFLICT', `scheduler job ${r.uuid} is on trigger ${r.schedulerTriggerUuid}: remove it from there first`, { uuid: r.uuid });
    return oc.store.update(r.uuid, { schedulerTriggerUuid: t.uuid });
  });
  act('scheduler-jobs', 'removeSchedulerJobFromSchedulerTrigger', async (r, p, oc) => {
    if (r.schedulerTriggerUuid !== p.schedulerTriggerUuid) throw invalid('removeSchedulerJobFromSchedulerTrigger.schedulerTriggerUuid', `scheduler job ${r.uuid} is not on trigger ${String(p.schedulerTriggerUuid)}`);
    return oc.store.update(r.uuid, { schedulerTriggerUuid: undefined });
  });
}
