import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { JOURNALS, OUTCOMES, runFlow, type FlowContext, type FlowDef, type FlowJournal, type FlowOutcome, type FlowStep } from '../../../controller/workflow/flow.js';
import { FlowEngine, FlowRegistry, journalGone, resumeFlows } from '../../../controller/workflow/engine.js';
import { KeyedLimiter, ResourceQueues } from '../../../controller/workflow/queues.js';
import { TStackError } from '../../../shared/errors.js';
import { setRootLogger } from '../../../shared/log.js';
import { pino } from 'pino';

type Data = { acquired: string[]; files: string[] };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('controller workflow engine', () => {
  let store: InventoryStore;
  let dir: string;
  const events: string[] = [];

  before(() => setRootLogger(pino({ level: 'silent' })));
  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    dir = mkdtempSync(join(tmpdir(), 'tstack-wf-'));
    events.length = 0;
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A step that really acquires: a store claim and a file, recorded in ctx.data. */
  function acquire(name: string, opts: { failAfterAcquire?: boolean; failRollback?: { n: number }; hang?: Promise<void> } = {}): FlowStep<Data> {
    return {
      name,
      async run(ctx: FlowContext<Data>) {
        events.push(`run ${name}`);
        assert.equal(await store.claim('wf-test', name, ctx.flowId), true, `claim ${name}`);
        ctx.data.acquired.push(name);
        const f = join(dir, name);
        writeFileSync(f, ctx.flowId);
        ctx.data.files.push(f);
        await ctx.save();
        if (opts.hang) await opts.hang;
        if (opts.failAfterAcquire) throw new TStackError('STORAGE_ERROR', `${name} failed`, { why: 'test' });
      },
      async rollback(ctx: FlowContext<Data>) {
        events.push(`rollback ${name}`);
        if (opts.failRollback && opts.failRollback.n-- > 0) throw new Error(`cannot undo ${name}`);
        if (ctx.data.acquired.includes(name)) await store.release('wf-test', name, ctx.flowId);
        const f = join(dir, name);
        if (existsSync(f)) unlinkSync(f);
        ctx.data.acquired = ctx.data.acquired.filter((a) => a !== name);
      },
    };
  }

  const six = (fail?: number, extra: Parameters<typeof acquire>[1] = {}): FlowDef<Data> => ({
    name: 'six',
    onResume: 'rollback',
    steps: [1, 2, 3, 4, 5, 6].map((i) => acquire(`s${i}`, i === fail ? { failAfterAcquire: true, ...extra } : {})),
  });

  it('runs every step, reports progress and removes its journal', async () => {
    const progress: number[] = [];
    const out = await runFlow(store, six(), { acquired: [], files: [] }, { onProgress: (p) => progress.push(p) });
    assert.deepEqual(out.acquired, ['s1', 's2', 's3', 's4', 's5', 's6']);
    assert.equal((await store.claims('wf-test')).length, 6);
    assert.deepEqual(progress, [17, 33, 50, 67, 83, 100]);
    assert.deepEqual(await store.listDocs(JOURNALS), []);
  });

  it('a 4th of 6 steps that fails leaves nothing acquired: rollback in reverse, the failed step included', async () => {
    await assert.rejects(runFlow(store, six(4), { acquired: [], files: [] }, { id: 'f-4th' }), (e: TStackError) => {
      assert.equal(e.code, 'STORAGE_ERROR');
      assert.equal(e.details?.step, 's4');
      assert.equal(e.details?.flowId, 'f-4th');
      assert.equal(e.details?.rollbackComplete, true);
      assert.equal(e.details?.why, 'test');
      assert.match(e.message, /s4 failed \(flow six, step s4; rolled back\)/);
      return true;
    });
    assert.deepEqual(events, ['run s1', 'run s2', 'run s3', 'run s4', 'rollback s4', 'rollback s3', 'rollback s2', 'rollback s1']);
    assert.deepEqual(await store.claims('wf-test'), []);
    assert.deepEqual(readdirSync(dir), []);
    assert.deepEqual(await store.listDocs(JOURNALS), []);
  });

  it('a failing rollback does not stop the others; the journal stays and resume retries it', async () => {
    const def = six(4, {});
    def.steps[1] = acquire('s2', { failRollback: { n: 1 } });
    await assert.rejects(runFlow(store, def, { acquired: [], files: [] }, { id: 'f-rb' }), (e: TStackError) => e.details?.rollbackComplete === false && /rollback incomplete: s2: cannot undo s2/.test(e.message));
    assert.deepEqual((await store.claims('wf-test')).map((c) => c.key), ['s2']);
    const j = (await store.getDoc<FlowJournal>(JOURNALS, 'f-rb'))!;
    assert.equal(j.state, 'rollback-failed');
    assert.deepEqual(j.rolledBack.sort(), [0, 2, 3]);
    const reg = new FlowRegistry();
    reg.register(def);
    events.length = 0;
    const rep = await resumeFlows(store, reg);
    assert.deepEqual(rep.map((r) => r.action), ['rolled-back']);
    assert.deepEqual(events, ['rollback s2'], 'only the step not yet rolled back');
    assert.deepEqual(await store.claims('wf-test'), []);
    assert.deepEqual(await store.listDocs(JOURNALS), []);
  });

  it("journal: 'saves' writes the journal at the start and on ctx.save() only; a crash after a step with no save rolls back what the saves recorded", async () => {
    let puts = 0;
    const counting: InventoryStore = Object.create(store, {
      putDoc: { value: (c: string, id: string, d: unknown) => (c === JOURNALS && puts++, store.putDoc(c, id, d)) },
    });
    const plain: FlowStep<Data> = { name: 'plain', run: async () => void events.push('run plain') };
    const steps = (hang?: Promise<void>): Array<FlowStep<Data>> => [acquire('s1'), plain, acquire('s3'), { name: 'quiet', run: async () => { events.push('run quiet'); if (hang) await hang; } }, acquire('s5')];
    const undo = async (): Promise<void> => {
      for (const k of ['s1', 's3', 's5']) {
        await store.release('wf-test', k);
        unlinkSync(join(dir, k));
      }
    };
    await runFlow(counting, { name: 'saves', onResume: 'rollback', journal: 'saves', steps: steps() }, { acquired: [], files: [] });
    assert.equal(puts, 1 + 3, 'the start, then one per ctx.save() (5 steps)');
    await undo();
    puts = 0;
    await runFlow(counting, { name: 'steps', onResume: 'rollback', steps: steps() }, { acquired: [], files: [] });
    assert.equal(puts, 5 + 3, 'default: before every step, and on ctx.save()');
    await undo();

    // the "dead" controller hangs in 'quiet' (index 3): the journal still names s3 (its last save)
    void runFlow(store, { name: 'saves', onResume: 'rollback', journal: 'saves', steps: steps(new Promise<void>(() => undefined)) }, { acquired: [], files: [] }, { id: 'f-saves', controllerId: 'c1' });
    for (let i = 0; i < 100 && !events.includes('run quiet'); i++) await sleep(5);
    await sleep(10);
    const j = (await store.getDoc<FlowJournal>(JOURNALS, 'f-saves'))!;
    assert.equal(j.current, 2, 'the step of the last save');
    assert.deepEqual(j.data.acquired, ['s1', 's3']);
    const engine = new FlowEngine({ store, controllerId: 'c1' });
    engine.register({ name: 'saves', onResume: 'rollback', journal: 'saves', steps: steps() });
    events.length = 0;
    assert.deepEqual((await engine.resume()).map((r) => r.action), ['rolled-back']);
    assert.deepEqual(events, ['rollback s3', 'rollback s1']);
    assert.deepEqual(await store.claims('wf-test'), []);
    assert.deepEqual(readdirSync(dir), []);
    assert.deepEqual(await store.listDocs(JOURNALS), []);
  });

  for (const policy of ['rollback', 'complete'] as const) {
    it(`a flow interrupted in step 3 is ${policy === 'rollback' ? 'rolled back' : 'completed'} by resume (onResume: ${policy})`, async () => {
      const never = new Promise<void>(() => undefined);
      const crashing: FlowDef<Data> = { name: 'crash', onResume: policy, steps: [1, 2, 3, 4, 5, 6].map((i) => acquire(`s${i}`, i === 3 ? { hang: never } : {})) };
      // the "dead" controller: its run never returns; its journal is what it left behind
      void runFlow(store, crashing, { acquired: [], files: [] }, { id: 'f-crash', controllerId: 'c1' });
      for (let i = 0; i < 100 && !events.includes('run s3'); i++) await sleep(5);
      await sleep(10);
      const j = (await store.getDoc<FlowJournal>(JOURNALS, 'f-crash'))!;
      assert.equal(j.current, 2);
      assert.deepEqual(j.data.acquired, ['s1', 's2', 's3']);

      const restarted: FlowDef<Data> = { name: 'crash', onResume: policy, steps: [1, 2, 3, 4, 5, 6].map((i) => acquire(`s${i}`)) };
      const engine = new FlowEngine({ store, controllerId: 'c1' });
      engine.register(restarted);
      events.length = 0;
      // the new step-3 run claims again: same owner (flow id), so the claim is idempotent
      const rep = await engine.resume();
      if (policy === 'rollback') {
        assert.deepEqual(rep.map((r) => r.action), ['rolled-back']);
        assert.deepEqual(events, ['rollback s3', 'rollback s2', 'rollback s1']);
        assert.deepEqual(await store.claims('wf-test'), []);
        assert.deepEqual(readdirSync(dir), []);
      } else {
        assert.deepEqual(rep.map((r) => r.action), ['completed']);
        assert.deepEqual(events, ['run s3', 'run s4', 'run s5', 'run s6']);
        assert.deepEqual((await store.claims('wf-test')).map((c) => c.key), ['s1', 's2', 's3', 's4', 's5', 's6']);
      }
      assert.deepEqual(await store.listDocs(JOURNALS), []);
    });
  }

  it('a resumed step sends its agent commands with the task ids of its first run; rollback-first undoes it and runs it with new ones; a resumed flow that fails leaves its outcome', async () => {
    const never = new Promise<void>(() => undefined);
    const sent: string[] = [];
    // an agent that does each task id's work once (as the agent server's task store does)
    const agentRan = new Map<string, number>();
    const agent = (taskId: string): void => {
      sent.push(taskId);
      agentRan.set(taskId, (agentRan.get(taskId) ?? 0) + 1);
    };
    type D = { n: number };
    const def = (hang: boolean, redo?: 'rollback-first', failLast = false): FlowDef<D> => ({
      name: 'tasks',
      onResume: 'complete',
      steps: [
        { name: 'a', async run(ctx) { agent(ctx.taskId('cmd')); } },
        {
          name: 'b',
          ...(redo ? { redo } : {}),
          async run(ctx) {
            agent(ctx.taskId('cmd'));
            if (hang) await never;
          },
          async rollback() { events.push('rollback b'); },
        },
        { name: 'c', async run() { if (failLast) throw new TStackError('AGENT_ERROR', 'c failed'); } },
      ],
    });
    for (const [id, redo] of [['f-rerun', undefined], ['f-redo', 'rollback-first']] as const) {
      sent.length = 0;
      events.length = 0;
      void runFlow(store, def(true, redo), { n: 0 }, { id, controllerId: 'c1' });
      for (let i = 0; i < 100 && sent.length < 2; i++) await sleep(5);
      const engine = new FlowEngine({ store, controllerId: 'c1', registry: new FlowRegistry() });
      engine.register(def(false, redo, id === 'f-redo'));
      const [rep] = await engine.resume();
      if (!redo) {
        assert.equal(rep!.action, 'completed');
        assert.deepEqual(sent, [`${id}.0.0.cmd`, `${id}.1.0.cmd`, `${id}.1.0.cmd`], 'the same task id again: the agent joins the first run');
        assert.equal(agentRan.get(`${id}.1.0.cmd`), 2);
        assert.equal(await store.getDoc(OUTCOMES, id), undefined, 'completed flows leave no outcome');
      } else {
        assert.deepEqual(sent, [`${id}.0.0.cmd`, `${id}.1.0.cmd`, `${id}.1.1.cmd`], 'rolled back first, then a new task');
        assert.deepEqual(events, ['rollback b', 'rollback b']);
        assert.equal(rep!.action, 'failed-and-rolled-back');
        const o = (await store.getDoc<FlowOutcome>(OUTCOMES, id))!;
        assert.equal(o.error?.code, 'AGENT_ERROR', 'the job of a resumed flow reads why it failed');
      }
    }
  });

  it('keepOutcome: a completed run (and a resumed one) writes its outcome before the journal goes; without it none', async () => {
    const def: FlowDef = { name: 'kept', onResume: 'complete', steps: [{ name: 'a', async run() {} }, { name: 'b', async run() {} }] };
    await runFlow(store, def, {}, { id: 'k-live', keepOutcome: true });
    assert.equal((await store.getDoc<FlowOutcome>(OUTCOMES, 'k-live'))?.action, 'completed');
    await runFlow(store, def, {}, { id: 'k-none' });
    assert.equal(await store.getDoc(OUTCOMES, 'k-none'), undefined);
    // a journal left mid-flow by a dead controller keeps the option for whoever resumes it
    const now = new Date().toISOString();
    await store.putDoc(JOURNALS, 'k-resumed', { id: 'k-resumed', flow: 'kept', controllerId: 'me', state: 'running', completed: 1, current: 1, rolledBack: [], data: {}, keepOutcome: true, startedAt: now, updatedAt: now } satisfies FlowJournal);
    const engine = new FlowEngine({ store, controllerId: 'me', registry: new FlowRegistry() });
    engine.register(def);
    assert.deepEqual((await engine.resume()).map((r) => [r.id, r.action]), [['k-resumed', 'completed']]);
    assert.equal((await store.getDoc<FlowOutcome>(OUTCOMES, 'k-resumed'))?.action, 'completed');
    assert.equal(await store.getDoc(JOURNALS, 'k-resumed'), undefined);
  });

  it('saveWith, journalsItself and finishWith: the journal with the writes it precedes, the closing writes with the end, one commit each', async () => {
    const batches: string[][] = [];
    let puts = 0;
    const counting: InventoryStore = Object.create(store, {
      putDoc: { value: (c: string, id: string, d: unknown) => (puts++, store.putDoc(c, id, d)) },
      batch: { value: (ws: Parameters<InventoryStore['batch']>[0]) => (batches.push(ws.map((w) => (w.op === 'create' ? `create ${w.resource.uuid}` : w.op === 'update' || w.op === 'transition' ? `${w.op} ${w.uuid}` : `${w.op} ${'collection' in w ? w.collection : w.namespace}`))), store.batch(ws)) },
    });
    const res = { uuid: 'r1', kind: 'thing', name: 'r1', createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [] };
    let atFirst: unknown = 'unset';
    const def = (fail: boolean): FlowDef<{ n?: number; state?: string }> => ({
      name: 'batched', onResume: 'complete', journal: 'saves',
      steps: [
        { name: 'make', journalsItself: true, async run(ctx) {
          atFirst = await store.getDoc(JOURNALS, ctx.flowId);
          ctx.data.n = 1;
          const [made] = await ctx.saveWith([{ op: 'create', resource: res }]);
          assert.equal(made?.uuid, 'r1');
        }, async rollback() { await store.delete('r1'); } },
        { name: 'close', async run(ctx) {
          ctx.finishWith([{ op: 'update', uuid: 'r1', patch: { state: 'Done' } }], ([r]) => (ctx.data.state = r?.state));
          // not written before the flow's end
          assert.equal((await store.get('r1'))?.state, undefined);
          if (fail) throw new TStackError('INTERNAL', 'closing failed');
        } },
      ],
    });
    const out = await runFlow(counting, def(false), {}, { id: 'b1', keepOutcome: true });
    assert.equal(atFirst, undefined, 'no journal written alone before a journalsItself step');
    assert.equal(puts, 0, 'every journal write rode on a batch');
    assert.deepEqual(batches, [['putDoc flow-journals', 'create r1'], ['update r1', 'putDoc flow-outcomes', 'deleteDoc flow-journals']]);
    assert.equal((out as { state?: string }).state, 'Done', 'the closing writes\' results reach the data');
    assert.equal((await store.get('r1'))?.state, 'Done');
    assert.equal(await store.getDoc(JOURNALS, 'b1'), undefined);
    // a step failing after finishWith: its closing writes are dropped with the rollback
    await store.delete('r1');
    batches.length = 0;
    await assert.rejects(runFlow(counting, def(true), {}, { id: 'b2' }), /closing failed/);
    assert.equal(await store.get('r1'), undefined);
    assert.ok(!batches.some((b) => b.includes('update r1')));
    assert.deepEqual(batches.at(-1), ['putDoc flow-outcomes', 'deleteDoc flow-journals'], 'a rolled-back flow: outcome and journal delete in one batch');
  });

  it('defer: the writes ride on the next save (before its own writes), else on the end; a rollback drops them', async () => {
    const batches: string[][] = [];
    const counting: InventoryStore = Object.create(store, {
      batch: { value: (ws: Parameters<InventoryStore['batch']>[0]) => (batches.push(ws.map((w) => (w.op === 'create' ? `create ${w.resource.uuid}` : w.op === 'update' ? `update ${w.uuid}` : `${w.op} ${'collection' in w ? w.collection : ''}`))), store.batch(ws)) },
    });
    const res = (uuid: string) => ({ uuid, kind: 'thing', name: uuid, createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [] });
    await store.create(res('d1'));
    const seen: Array<string | undefined> = [];
    const def = (mode: 'save' | 'end' | 'fail'): FlowDef<{ state?: string }> => ({
      name: 'deferring', onResume: 'complete', journal: 'saves',
      steps: [
        { name: 'make', async run(ctx) {
          ctx.defer([{ op: 'update', uuid: 'd1', patch: { state: mode } }], ([r]) => (ctx.data.state = r?.state));
          // not written yet
          seen.push((await store.get('d1'))?.state as string | undefined);
        } },
        { name: 'next', async run(ctx) {
          if (mode === 'save') await ctx.saveWith([{ op: 'create', resource: res('d2') }]);
          if (mode === 'fail') throw new TStackError('INTERNAL', 'next failed');
        }, async rollback() { await store.delete('d2').catch(() => undefined); } },
      ],
    });
    const saved: { state?: string } = await runFlow(counting, def('save'), {}, { id: 'd-save' });
    assert.deepEqual(batches, [['update d1', 'putDoc flow-journals', 'create d2'], ['deleteDoc flow-journals']]);
    assert.equal(saved.state, 'save', 'then got the results');
    assert.equal((await store.get('d1'))?.state, 'save');
    batches.length = 0;
    const ended: { state?: string } = await runFlow(counting, def('end'), {}, { id: 'd-end' });
    assert.deepEqual(batches, [['update d1', 'deleteDoc flow-journals']]);
    assert.equal(ended.state, 'end');
    batches.length = 0;
    await assert.rejects(runFlow(counting, def('fail'), {}, { id: 'd-fail' }), /next failed/);
    assert.ok(!batches.some((b) => b.includes('update d1')), 'dropped with the rollback');
    assert.equal((await store.get('d1'))?.state, 'end');
    assert.deepEqual(seen, [undefined, 'save', 'end']);
  });

  it('FlowDef.result: a completed keepOutcome run keeps its answer in the outcome (resumed too); a failed one has none', async () => {
    const def: FlowDef<{ n: number; fail?: boolean }> = {
      name: 'answered',
      onResume: 'complete',
      result: (d) => ({ n: d.n }),
      steps: [
        { name: 'a', async run(ctx) { ctx.data.n++; } },
        { name: 'b', async run(ctx) { if (ctx.data.fail) throw new TStackError('CONFLICT', 'no'); } },
      ],
    };
    await runFlow(store, def, { n: 1 }, { id: 'r-live', keepOutcome: true });
    assert.deepEqual((await store.getDoc<FlowOutcome>(OUTCOMES, 'r-live'))?.result, { n: 2 });
    await assert.rejects(runFlow(store, def, { n: 1, fail: true }, { id: 'r-failed', keepOutcome: true }));
    const failed = await store.getDoc<FlowOutcome>(OUTCOMES, 'r-failed');
    assert.deepEqual([failed?.action, failed?.result], ['rolled-back', undefined]);
    const now = new Date().toISOString();
    await store.putDoc(JOURNALS, 'r-resumed', { id: 'r-resumed', flow: 'answered', controllerId: 'me', state: 'running', completed: 1, current: 1, rolledBack: [], data: { n: 7 }, keepOutcome: true, startedAt: now, updatedAt: now } satisfies FlowJournal);
    const engine = new FlowEngine({ store, controllerId: 'me', registry: new FlowRegistry() });
    engine.register(def);
    await engine.resume();
    assert.deepEqual((await store.getDoc<FlowOutcome>(OUTCOMES, 'r-resumed'))?.result, { n: 7 });
  });

  it('resume leaves other controllers\' journals and unknown flows alone', async () => {
    const base = { completed: 1, rolledBack: [], data: {}, startedAt: '', updatedAt: '', state: 'running' as const };
    await store.putDoc(JOURNALS, 'a', { ...base, id: 'a', flow: 'six', controllerId: 'other' });
    await store.putDoc(JOURNALS, 'b', { ...base, id: 'b', flow: 'gone', controllerId: 'me' });
    const engine = new FlowEngine({ store, controllerId: 'me' });
    engine.register(six());
    const rep = await resumeFlows(store, engine.registry, { controllerId: 'me' });
    assert.deepEqual(rep.map((r) => [r.id, r.action]), [
      ['a', 'skipped'],
      ['b', 'unknown-flow'],
    ]);
    assert.equal((await store.listDocs(JOURNALS)).length, 2);
  });

  it('journalGone: a flow this process runs or resumes is awaited to its end (two journal reads), not polled', async () => {
    const engine = new FlowEngine({ store, controllerId: 'me' });
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const gated: FlowDef<Data> = { name: 'gated', onResume: 'complete', steps: [{ name: 'wait', run: () => gate }] };
    engine.register(gated);
    let reads = 0;
    const getDoc = store.getDoc.bind(store);
    const counted = { engine, store: Object.assign(Object.create(store) as InventoryStore, { getDoc: (c: string, id: string) => (c === JOURNALS && reads++, getDoc(c, id)) }) };
    const failed = (): TStackError => new TStackError('INTERNAL', 'rollback failed');
    // run here
    const run = engine.run(gated, { acquired: [], files: [] }, { id: 'run-1' });
    while (!(await store.getDoc(JOURNALS, 'run-1'))) await sleep(1);
    setTimeout(open, 300);
    assert.equal(await journalGone(counted, 'run-1', 60_000, failed), true);
    await run;
    assert.equal(reads, 2, 'polled instead of awaiting the local run');
    // resumed here at start (the waiter may come first: jobs are taken over before modules start)
    let open2!: () => void;
    const gate2 = new Promise<void>((r) => (open2 = r));
    engine.registry.get('gated')!.steps[0]!.run = () => gate2;
    await store.putDoc(JOURNALS, 'res-1', { id: 'res-1', flow: 'gated', controllerId: 'me', completed: 0, rolledBack: [], data: { acquired: [], files: [] }, startedAt: '', updatedAt: '', state: 'running' });
    reads = 0;
    const resumed = engine.resume();
    setTimeout(open2, 300);
    assert.equal(await journalGone(counted, 'res-1', 60_000, failed), true);
    assert.ok(reads <= 3, `journal read ${reads} times`);
    await resumed;
    // nobody runs it here: polled, a rollback that failed throws
    await store.putDoc(JOURNALS, 'other', { id: 'other', flow: 'gated', controllerId: 'other', completed: 0, rolledBack: [], data: {}, startedAt: '', updatedAt: '', state: 'rollback-failed' });
    await assert.rejects(journalGone(counted, 'other', 60_000, failed), /rollback failed/);
    assert.equal(await journalGone(counted, 'never', 60_000, failed), false);
  });

  it('the engine serialises flows on the same resource and runs others in parallel', async () => {
    const engine = new FlowEngine({ store });
    const log: string[] = [];
    const slow = (tag: string): FlowDef<Data> => ({
      name: `slow-${tag}`,
      onResume: 'rollback',
      steps: [
        {
          name: 'work',
          async run() {
            log.push(`start ${tag}`);
            await sleep(30);
            log.push(`end ${tag}`);
          },
        },
      ],
    });
    await Promise.all([engine.run(slow('a'), { acquired: [], files: [] }, { lockKeys: ['vm-1'] }), engine.run(slow('b'), { acquired: [], files: [] }, { lockKeys: ['vm-1'] }), engine.run(slow('c'), { acquired: [], files: [] }, { lockKeys: ['vm-2'] })]);
    assert.deepEqual(log.filter((l) => /[ab]$/.test(l)), ['start a', 'end a', 'start b', 'end b']);
    assert.ok(log.indexOf('start c') < log.indexOf('end a'), 'vm-2 did not wait for vm-1');
    assert.throws(() => engine.register({ ...slow('a'), steps: [] }), /already registered|no steps/);
  });
});

describe('controller workflow queues', () => {
  it('ResourceQueues: FIFO per key, multi-key without deadlock, keys forgotten when idle', async () => {
    const q = new ResourceQueues();
    const order: string[] = [];
    const op = (tag: string, ms: number) => async () => {
      order.push(`+${tag}`);
      await sleep(ms);
      order.push(`-${tag}`);
      return tag;
    };
    const res = await Promise.all([q.run(['x', 'y'], op('A', 20)), q.run(['y', 'x'], op('B', 5)), q.run('x', op('C', 5)), q.run('z', op('D', 5))]);
    assert.deepEqual(res, ['A', 'B', 'C', 'D']);
    assert.ok(order.indexOf('-A') < order.indexOf('+B'));
    assert.ok(order.indexOf('-B') < order.indexOf('+C'));
    assert.ok(order.indexOf('+D') < order.indexOf('-A'), 'z is independent');
    assert.deepEqual(q.busyKeys, []);
    await assert.rejects(q.run('x', async () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await q.run('x', async () => 'after a failure'), 'after a failure');
  });

  it('KeyedLimiter: at most N at once per host, FIFO, independent hosts', async () => {
    const l = new KeyedLimiter(3);
    let active = 0;
    let peak = 0;
    let otherPeak = 0;
    const job = () => async () => {
      active++;
      peak = Math.max(peak, active);
      otherPeak = Math.max(otherPeak, l.active('h2'));
      await sleep(10);
      active--;
    };
    await Promise.all([...Array.from({ length: 10 }, () => l.run('h1', job())), l.run('h2', async () => sleep(30))]);
    assert.equal(peak, 3, 'three at once on h1');
    assert.equal(otherPeak, 1);
    assert.equal(l.active('h1'), 0);
    assert.throws(() => new KeyedLimiter(0));
  });
});

describe('controller workflow: stuck-state recovery', () => {
  it('moves VMs and hosts left in transitional states with no journal, leaves journaled ones', async () => {
    const { recoverStuck } = await import('../../../controller/workflow/recover.js');
    const store = await openStore({ backend: 'sqlite', path: ':memory:' });
    try {
      const base = { createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [] };
      await store.create({ ...base, uuid: 'vm-stuck', kind: 'vm-instance', name: 'a', state: 'Starting' });
      await store.create({ ...base, uuid: 'vm-journaled', kind: 'vm-instance', name: 'b', state: 'Stopping' });
      await store.create({ ...base, uuid: 'vm-busy', kind: 'vm-instance', name: 'c', state: 'Rebooting' });
      await store.create({ ...base, uuid: 'vm-fine', kind: 'vm-instance', name: 'd', state: 'Running' });
      await store.create({ ...base, uuid: 'host-connecting', kind: 'host', name: 'h', state: 'Enabled', status: 'Connecting' });
      await store.putDoc(JOURNALS, 'j1', { id: 'j1', flow: 'gone', controllerId: 'other', state: 'rollback-failed', completed: 0, rolledBack: [], data: {}, lockKeys: ['vm-journaled'], startedAt: '', updatedAt: '' });
      const rec = await recoverStuck(store, { busy: ['vm-busy'] });
      assert.deepEqual(rec.map((r) => [r.uuid, r.from, r.to]), [
        ['vm-stuck', 'Starting', 'Unknown'],
        ['host-connecting', 'Connecting', 'Disconnected'],
      ]);
      assert.equal((await store.get('vm-stuck'))?.state, 'Unknown');
      assert.equal((await store.get('vm-stuck'))?.stuckRecoveredFrom, 'Starting');
      assert.equal((await store.get('vm-journaled'))?.state, 'Stopping');
      assert.equal((await store.get('vm-busy'))?.state, 'Rebooting');
      assert.equal((await store.get('host-connecting'))?.status, 'Disconnected');
      assert.deepEqual(await recoverStuck(store), [{ uuid: 'vm-busy', kind: 'vm-instance', field: 'state', from: 'Rebooting', to: 'Unknown' }]);
    } finally {
      await store.close();
    }
  });
});
