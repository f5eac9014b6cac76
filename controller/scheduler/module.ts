// The scheduler controller module (manual 定时任务): the kinds scheduler-job and
// scheduler-trigger (model.ts, api.ts) and the scheduler that fires triggers (runner.ts).
// Installed by controller/main.ts builtinModules() (tests pass it explicitly, with their clock).
import { logger } from '../../shared/log.js';
import type { ControllerContext } from '../context.js';
import { registerSchedulerApi } from './api.js';
import { Scheduler, type SchedulerOptions } from './runner.js';

export interface SchedulerModule {
  name: string;
  install(s: ControllerContext): void;
  start(): void;
  stop(): Promise<void>;
  /** Set once installed. */
  scheduler?: Scheduler;
}

const log = logger('scheduler');

export function schedulerModule(o: SchedulerOptions = {}): SchedulerModule {
  let off: (() => void) | undefined;
  const m: SchedulerModule = {
    name: 'scheduler',
    install(ctx) {
      m.scheduler = new Scheduler(ctx, o);
      const sch = m.scheduler;
      registerSchedulerApi(ctx.registry, () => sch.now());
      // a VM expunged or a volume deleted takes its scheduler jobs along (expunge is a flow of
      // its own, not the generic delete rules: the event is where every way of going away meets)
      off = ctx.bus.subscribe((e) => {
        if (e.type !== 'resource.deleted' || (e.kind !== 'vm-instance' && e.kind !== 'volume')) return;
        void ctx.store
          .list({ kind: 'scheduler-job', filters: [{ field: 'targetResourceUuid', op: '=', value: e.uuid }] })
          .then(async (r) => {
            for (const j of r.items) await ctx.store.delete(j.uuid);
          })
          .catch((err: unknown) => log.warn({ target: e.uuid, err: (err as Error).message }, 'deleting the scheduler jobs of a deleted resource failed'));
      });
    },
    start: () => m.scheduler?.start(),
    stop: async () => {
      off?.();
      await m.scheduler?.stop();
    },
  };
  return m;
}
