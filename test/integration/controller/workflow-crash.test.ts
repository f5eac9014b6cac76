// A controller killed with SIGKILL in step 3 of a 6-step flow, then restarted: the restarted
// process finds the journal and rolls the flow back or completes it, per the flow's policy.
// Real processes (node + tsx), a real SQLite file or redis-server, real files and claims.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { startRedis } from '../../harness/redis.js';
import { JOURNALS, type FlowJournal } from '../../../controller/workflow/flow.js';
import { exec, startProcess } from '../../../shared/exec.js';
import { tmpDir } from '../../harness/tmp.js';
import { useCleanup } from '../../harness/cleanup.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'workflow-crash-child.ts');

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('controller workflow: SIGKILL during a flow, then restart', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  let redisUrl = '';
  before(async function () {
    this.timeout(30_000);
    redisUrl = (await startRedis(cleanup)).url;
  });

  for (const backend of ['sqlite', 'redis'] as const)
  for (const policy of ['rollback', 'complete'] as const) {
    it(`${backend}: step 3 killed with SIGKILL; the restarted controller ${policy === 'rollback' ? 'rolls it back' : 'completes it'}`, async () => {
      const dir = await tmpDir(`wf-crash-${policy}`, cleanup);
      const prefix = `crash-${randomUUID().slice(0, 8)}:`;
      const db = backend === 'sqlite' ? join(dir, 'inventory.db') : `${redisUrl}/${prefix}`;
      const open = (): Promise<InventoryStore> => (backend === 'sqlite' ? openStore({ backend: 'sqlite', path: db }) : openStore({ backend: 'redis', url: redisUrl, prefix }));
      const vmUuid = randomUUID();
      let store = await open();
      await store.create({ uuid: vmUuid, kind: 'vm-instance', name: 'crash-vm', state: 'Stopped', createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [] });
      await store.close();

      const p = await startProcess(process.execPath, ['--import', 'tsx', child, 'run', db, dir, policy, vmUuid], { logFile: join(dir, 'run.log'), cwd: process.cwd() });
      cleanup.add(() => p.kill('SIGKILL'), `crash child ${p.pid}`);
      await waitFor(() => existsSync(join(dir, 'step3-reached')) || !p.running, 60_000, 'step 3');
      assert.ok(p.running, 'the child reached step 3 and is still running');
      p.kill('SIGKILL');
      const exit = await p.exited;
      assert.equal(exit.signal, 'SIGKILL');

      // what the dead controller left: a stuck transitional state, a claim, a file, a journal
      store = await open();
      assert.equal((await store.get(vmUuid))?.state, 'Starting');
      assert.deepEqual((await store.claims('ip:l3-crash')).map((c) => c.key), ['10.9.0.2']);
      const j = (await store.getDoc<FlowJournal>(JOURNALS, (await store.listDocs(JOURNALS))[0]!.id))!;
      assert.equal(j.state, 'running');
      assert.equal(j.current, 2, 'killed in the third step');
      assert.ok(existsSync(join(dir, 'create-root-volume.img')));
      await store.close();

      const out = await exec(process.execPath, ['--import', 'tsx', child, 'resume', db, dir, policy], { cwd: process.cwd(), timeoutMs: 60_000 });
      const report = JSON.parse(out.stdout.trim().split('\n').at(-1)!) as Array<{ action: string; flow: string }>;

      store = await open();
      try {
        assert.deepEqual(await store.listDocs(JOURNALS), [], 'no unfinished journal left');
        const vm = await store.get(vmUuid);
        const files = readdirSync(dir).filter((f) => f.endsWith('.img')).sort();
        if (policy === 'rollback') {
          assert.deepEqual(report.map((r) => r.action), ['rolled-back']);
          assert.equal(vm?.state, 'Stopped');
          assert.deepEqual(await store.claims('ip:l3-crash'), []);
          assert.deepEqual(await store.claims('mac'), []);
          assert.deepEqual(files, []);
        } else {
          assert.deepEqual(report.map((r) => r.action), ['completed']);
          assert.equal(vm?.state, 'Running');
          assert.equal(vm?.ip, '10.9.0.2');
          assert.deepEqual((await store.claims('ip:l3-crash')).map((c) => c.owner), [vmUuid]);
          assert.deepEqual((await store.claims('mac')).map((c) => c.key), ['52:54:00:09:00:02']);
          assert.deepEqual(files, ['create-config-drive.img', 'create-root-volume.img']);
        }
      } finally {
        await store.close();
      }
    });
  }
});
