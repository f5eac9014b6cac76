// A "controller" process for workflow-crash.test.ts:
//   run    <db> <dir> <policy> <vmUuid>   (<db>: a SQLite file or redis://host:port/<key prefix>): runs a 6-step start-VM-like flow; in step 3 it writes
//          <dir>/step3-reached and hangs there (the test kills it with SIGKILL);
//   resume <db> <dir> <policy>: a restarted controller: resumes unfinished flows, prints the report.
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { openStore } from '../../../controller/store/index.js';
import { FlowEngine } from '../../../controller/workflow/engine.js';
import type { FlowDef } from '../../../controller/workflow/flow.js';
import { setRootLogger } from '../../../shared/log.js';

type Data = { vmUuid: string; ip?: string; mac?: string; files: string[] };

const [mode, db, dir, policy, vmUuid] = process.argv.slice(2) as [string, string, string, 'rollback' | 'complete', string];
setRootLogger(pino({ level: 'silent' }));

function flow(hangInStep3: boolean): FlowDef<Data> {
  const file = (name: string) => ({
    name,
    async run(ctx: { data: Data; save(): Promise<void> }) {
      const f = join(dir, `${name}.img`);
      writeFileSync(f, 'disk');
      if (!ctx.data.files.includes(f)) ctx.data.files.push(f);
      await ctx.save();
      if (hangInStep3 && name === 'create-root-volume') {
        writeFileSync(join(dir, 'step3-reached'), String(process.pid));
        setInterval(() => undefined, 1000);
        await new Promise(() => undefined);
      }
    },
    async rollback(ctx: { data: Data }) {
      const f = join(dir, `${name}.img`);
      if (existsSync(f)) unlinkSync(f);
      ctx.data.files = ctx.data.files.filter((x) => x !== f);
    },
  });
  return {
    name: 'crash-start-vm',
    onResume: policy,
    steps: [
      {
        name: 'mark-starting',
        run: async (ctx) => {
          const vm = await ctx.store.get(ctx.data.vmUuid);
          if (vm?.state !== 'Starting') await ctx.store.transition(ctx.data.vmUuid, 'Stopped', 'Starting');
        },
        rollback: async (ctx) => {
          const vm = await ctx.store.get(ctx.data.vmUuid);
          if (vm && vm.state !== 'Stopped') await ctx.store.transition(ctx.data.vmUuid, ['Starting', 'Running'], 'Stopped');
        },
      },
      {
        name: 'allocate-ip',
        run: async (ctx) => {
          if (!(await ctx.store.claim('ip:l3-crash', '10.9.0.2', ctx.data.vmUuid))) throw new Error('ip taken');
          ctx.data.ip = '10.9.0.2';
          await ctx.save();
        },
        rollback: async (ctx) => {
          await ctx.store.release('ip:l3-crash', '10.9.0.2', ctx.data.vmUuid);
          delete ctx.data.ip;
        },
      },
      file('create-root-volume'),
      {
        name: 'allocate-mac',
        run: async (ctx) => {
          if (!(await ctx.store.claim('mac', '52:54:00:09:00:02', ctx.data.vmUuid))) throw new Error('mac taken');
          ctx.data.mac = '52:54:00:09:00:02';
          await ctx.save();
        },
        rollback: async (ctx) => {
          await ctx.store.release('mac', '52:54:00:09:00:02', ctx.data.vmUuid);
        },
      },
      file('create-config-drive'),
      {
        name: 'mark-running',
        run: async (ctx) => {
          const vm = await ctx.store.get(ctx.data.vmUuid);
          if (vm?.state !== 'Running') await ctx.store.transition(ctx.data.vmUuid, 'Starting', 'Running', { ip: ctx.data.ip });
        },
      },
    ],
  };
}

// <db> is a SQLite file, or redis://host:port/<prefix> for a Redis inventory
const m = /^(redis:\/\/[^/]+)\/(.+)$/.exec(db);
const store = m ? await openStore({ backend: 'redis', url: m[1]!, prefix: m[2]! }) : await openStore({ backend: 'sqlite', path: db });
const engine = new FlowEngine({ store, controllerId: 'ctl-1' });
if (mode === 'run') {
  await engine.run(flow(true), { vmUuid, files: [] }, { lockKeys: [vmUuid] });
} else {
  engine.register(flow(false));
  const report = await engine.resume();
  await store.close();
  process.stdout.write(JSON.stringify(report) + '\n');
}
