// Scheduler jobs and triggers (manual 定时任务 / 定时器, ZStack's SchedulerJob and
// SchedulerTrigger): a job is one operation on one resource (start, stop or reboot a VM, snapshot
// a volume); a trigger is a time grid (every schedulerInterval seconds repeatCount times from
// startTime, or a cron expression) that runs the jobs loaded on it. A job sits on at most one
// trigger (addSchedulerJobToSchedulerTrigger / removeSchedulerJobFromSchedulerTrigger);
// deleting a trigger unloads its jobs (controller/model/cascade.ts), expunging a job's VM or
// deleting its volume deletes the job (module.ts). The behaviour is in controller/scheduler/{api,runner}.ts,
// the time grid in timing.ts.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate, Enum, Uuid } from '../model/fields.js';
import { action, changeStateAction, type KindDef } from '../model/kind.js';
import { ENABLED_STATES } from '../model/states.js';
import { MAX_CRON_LENGTH, SCHEDULER_TYPES, parseCron, parseStartTime } from './timing.js';

/** Job type → the kind of its target and the API action it runs. */
export const JOB_TYPES = {
  startVm: { kind: 'vm-instance', collection: 'vm-instances', action: 'start' },
  stopVm: { kind: 'vm-instance', collection: 'vm-instances', action: 'stop' },
  rebootVm: { kind: 'vm-instance', collection: 'vm-instances', action: 'reboot' },
  volumeSnapshot: { kind: 'volume', collection: 'volumes', action: 'createSnapshot' },
} as const;
export type JobType = keyof typeof JOB_TYPES;

export const TRIGGER_STATUSES = ['Running', 'Completed'] as const;
export const RUN_RESULTS = ['Running', 'Succeeded', 'Failed', 'Skipped'] as const;

const Parameters = () =>
  Obj({
    snapshotName: Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1f]+$', description: 'volumeSnapshot: name prefix of the snapshots (default: the job name)' })),
    snapshotDescription: Type.Optional(Type.String({ maxLength: 2048 })),
  });

export const schedulerJob: KindDef = {
  kind: 'scheduler-job',
  collection: 'scheduler-jobs',
  title: 'scheduler job',
  createSchema: Obj({
    ...baseCreate(),
    targetResourceUuid: Uuid({ description: 'the VM (startVm, stopVm, rebootVm) or volume (volumeSnapshot)' }),
    type: Enum(Object.keys(JOB_TYPES) as JobType[]),
    parameters: Type.Optional(Parameters()),
    schedulerTriggerUuid: Type.Optional(Uuid({ description: 'load the job on this trigger at once' })),
  }),
  updateSchema: Obj({ ...baseUpdate(), parameters: Type.Optional(Parameters()) }),
  refs: [{ field: 'schedulerTriggerUuid', kind: 'scheduler-trigger' }],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['targetResourceType', 'runCount', 'lastRunTime', 'lastRunResult', 'lastJobUuid', 'lastError'],
  defaults: { parameters: {}, runCount: 0 },
  check: (b) => {
    if (b.parameters && Object.keys(b.parameters as object).length > 0 && b.type !== 'volumeSnapshot') throw invalid('parameters', `${String(b.type)} takes no parameters`);
  },
  actions: {
    changeState: changeStateAction(),
    addSchedulerJobToSchedulerTrigger: action(Obj({ schedulerTriggerUuid: Uuid() }), 'Load the job on a trigger (a job is on one trigger at most)', false),
    removeSchedulerJobFromSchedulerTrigger: action(Obj({ schedulerTriggerUuid: Uuid() }), 'Unload the job from its trigger', false),
  },
};

export const schedulerTrigger: KindDef = {
  kind: 'scheduler-trigger',
  collection: 'scheduler-triggers',
  title: 'scheduler trigger',
  createSchema: Obj({
    ...baseCreate(),
    schedulerType: Enum(SCHEDULER_TYPES),
    schedulerInterval: Type.Optional(Type.Integer({ minimum: 1, maximum: 366 * 86_400, description: 'simple: seconds between fires' })),
    repeatCount: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'how many times (absent: forever)' })),
    startTime: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Number()], { description: 'first fire (simple) / from when (cron): ISO 8601 or epoch seconds; default now' })),
    cron: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_CRON_LENGTH, description: 'cron: 5 fields, or 6 with seconds first (UTC)' })),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: [],
  statuses: TRIGGER_STATUSES,
  initialStatus: 'Running',
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  systemFields: ['nextFireTime', 'lastFireTime', 'fireCount', 'missedFires'],
  defaults: { fireCount: 0, missedFires: 0 },
  check: (b) => {
    if (b.startTime !== undefined) parseStartTime(b.startTime);
    if (b.schedulerType === 'simple') {
      if (b.schedulerInterval === undefined) throw invalid('schedulerInterval', 'a simple trigger needs schedulerInterval (seconds)');
      if (b.cron !== undefined) throw invalid('cron', 'only cron triggers have a cron expression');
    } else {
      if (typeof b.cron !== 'string') throw invalid('cron', 'a cron trigger needs a cron expression');
      if (b.schedulerInterval !== undefined) throw invalid('schedulerInterval', 'a cron trigger has no schedulerInterval');
      parseCron(b.cron, Date.now());
    }
  },
  actions: {},
};

export const schedulerKinds: KindDef[] = [schedulerJob, schedulerTrigger];
