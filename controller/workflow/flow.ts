// Flows: a create-VM (etc.) is a list of steps, each with run and rollback.
//
//   running:      step 0 … step k … step n-1  ──all done──▶ journal deleted, result returned
//                               │ throws
//                               ▼
//   rolling-back: rollback k, k-1, … 0 (reverse) ──all ok──▶ outcome kept, journal deleted, error thrown
//                               │ a rollback throws (the others still run)
//                               ▼
//   rollback-failed: journal kept with the errors; retried by resumeFlows at the next start
//
// Every step records what it acquired in ctx.data (an IP, a volume path, a claim…); the
// journal (a store doc in 'flow-journals') is written before each step starts, whenever the
// step calls ctx.save(), and after each rollback. A controller that dies mid-flow finds the
// journal at start: resumeFlows() completes it (re-running the step that was in progress) or
// rolls it back, per the flow definition's onResume policy.
//
// A flow with `journal: 'saves'` (vm-create: issue 19, the journal was most of its writes) is
// written once before its first step and then only when a step calls ctx.save(); each save
// records the step in progress. After a crash the journal may name an earlier step than the
// one that ran, so in such a flow every step must call ctx.save() before its first effect that
// a rollback has to undo (a step with nothing to undo needs no save).
//
// Fewer commits (issue 19): ctx.saveWith(writes) saves the journal and store writes in one
// store batch (one commit), for a save that precedes those writes anyway; a 'saves' flow's first
// step may be `journalsItself` (its first effect is a saveWith, so the journal is not written
// before it alone); ctx.finishWith(writes) leaves the last step's final store writes to the
// flow's end, committed with the outcome and the journal delete (only writes that may be lost
// with the step: a crash before that commit resumes the step, which makes them again).
// ctx.defer(writes) leaves a step's closing writes to the flow's next commit (the next save or
// saveWith, or the end's batch), ahead of that commit's own writes: until then the journal names
// this step or an earlier one, so a crash before it resumes a run that makes them again. Only for
// writes that the later steps up to that commit do not read from the store and that no direct
// store write of theirs overwrites. A rollback drops them.
//
// Contract for step authors:
//   - record an acquisition in ctx.data and `await ctx.save()` right after acquiring it, so a
//     crash cannot leak it;
//   - rollback(ctx) must be idempotent and must cope with a partial run (it is also called for
//     the step that failed, and after a crash for the step that was in progress);
//   - with onResume 'complete', run(ctx) must be idempotent too (it may run again after a crash):
//     send agent commands with ctx.taskId(label), so a command sent again after a crash joins
//     (or returns the result of) its first run on the agent instead of doing the work twice;
//     a step that cannot be made safe to repeat sets redo: 'rollback-first' (a resumed run of
//     it undoes its partial work, then runs it afresh with new task ids).
import { randomUUID } from 'node:crypto';
import { TStackError, type ErrorBody } from '../../shared/errors.js';
import { logger, type Logger } from '../../shared/log.js';
import type { InventoryStore, Resource, StoreWrite } from '../store/types.js';
import type { ControllerContext } from '../context.js';

export const JOURNALS = 'flow-journals';

export type FlowData = Record<string, unknown>;

export interface FlowContext<D extends FlowData = FlowData> {
  readonly flowId: string;
  readonly flowName: string;
  readonly store: InventoryStore;
  /** The context of the controller running the flow (its engine's; throws for a bare runFlow without one). */
  readonly controller: ControllerContext;
  readonly log: Logger;
  /** What the steps acquired / produced. Mutate it, then save(). Persisted in the journal. */
  data: D;
  /** Persist ctx.data now (call right after acquiring something). */
  save(): Promise<void>;
  /** save() and these writes in one store batch (one commit); their results (store.batch). */
  saveWith(writes: StoreWrite[]): Promise<Array<Resource | undefined>>;
  /**
   * The last step's closing store writes, committed with the flow's end (outcome, journal
   * delete) in one batch; `then` gets their results before the flow returns. Only after every
   * effect of the step: a crash before the end resumes the step.
   */
  finishWith(writes: StoreWrite[], then?: (results: Array<Resource | undefined>) => void): void;
  /**
   * These writes with the flow's next commit (save, saveWith or the end), before its own; `then`
   * gets their results once committed. See the header for when that is safe.
   */
  defer(writes: StoreWrite[], then?: (results: Array<Resource | undefined>) => void): void;
  /**
   * Records a step read or wrote, for the later steps of this run (not journaled: empty after a
   * restart, so a reader falls back to the store). Saves re-reading what the flow just wrote.
   */
  readonly memo: Map<string, unknown>;
  /** True when this run was picked up by resumeFlows after a restart. */
  readonly resumed: boolean;
  /** Report progress (0-100) to whoever watches the flow (the job). */
  progress(percent: number, message?: string): void;
  /**
   * A task id for an agent command of the current step, the same when the step runs again
   * after a crash (the agent then joins or answers the first run); `label` tells the step's
   * commands apart.
   */
  taskId(label: string): string;
}

export interface FlowStep<D extends FlowData = FlowData> {
  name: string;
  run(ctx: FlowContext<D>): Promise<void>;
  /** Undo what run acquired (idempotent; copes with a partial run). Omit if nothing to undo. */
  rollback?(ctx: FlowContext<D>): Promise<void>;
  /**
   * A 'complete' flow resumed while this step was running: 'rerun' (default) runs it again;
   * 'rollback-first' rolls back its partial run first (for a step that cannot be repeated).
   */
  redo?: 'rerun' | 'rollback-first';
  /**
   * The first step of a 'saves' flow whose run starts with ctx.saveWith (the journal with its
   * first effect, one commit): the journal is not written alone before it.
   */
  journalsItself?: boolean;
}

export interface FlowDef<D extends FlowData = FlowData> {
  /** Unique name; a restarted controller finds the code by it. */
  name: string;
  steps: Array<FlowStep<D>>;
  /** What a restarted controller does with an unfinished run. */
  onResume: 'rollback' | 'complete';
  /** When the journal is written going forward: before every step (default) or at the start and on ctx.save() only (see the header). */
  journal?: 'steps' | 'saves';
  /**
   * What a job's resumer answers with when the flow completed, kept in the outcome of a
   * keepOutcome run: for a flow whose resource is gone once it completes (an expunge, a delete),
   * so the store cannot show it any more.
   */
  result?: (data: D) => unknown;
}

export type JournalState = 'running' | 'rolling-back' | 'rollback-failed';

export interface FlowJournal {
  id: string;
  flow: string;
  controllerId: string;
  state: JournalState;
  /** Number of steps whose run finished. */
  completed: number;
  /** Index of the step whose run started and has not finished. */
  current?: number;
  /** Indexes of steps already rolled back. */
  rolledBack: number[];
  data: FlowData;
  error?: ErrorBody;
  rollbackErrors?: Array<{ step: string; error: ErrorBody }>;
  /** Serial-queue keys the flow held (re-taken on resume). */
  lockKeys?: string[];
  hostUuid?: string;
  /** Steps rolled back to be run afresh on resume (part of their task ids: the new run's commands are new tasks). */
  redone?: number;
  /** Set when another controller took this flow over (its controller's heartbeat expired). */
  takenOverFrom?: string;
  /** Write the outcome when the flow completes too (RunOptions.keepOutcome). */
  keepOutcome?: boolean;
  startedAt: string;
  updatedAt: string;
}

export interface RunOptions {
  /** Flow id (default: a new uuid); a job uses its own uuid. */
  id?: string;
  controllerId?: string;
  lockKeys?: string[];
  hostUuid?: string;
  onProgress?: (percent: number, message?: string) => void;
  log?: Logger;
  /** The controller whose flow this is (FlowContext.controller). */
  controller?: () => ControllerContext;
  /**
   * Write the outcome when the flow completes too, not only when it fails: a job's flow whose
   * resource tells nothing of it (an action on a VM, unlike a create) lets the job's resumer
   * tell a flow that completed from one that never started (api/resume.ts).
   */
  keepOutcome?: boolean;
  /** FlowContext.memo's first entries: what the caller read for the flow (a resumed run starts without). */
  memo?: ReadonlyMap<string, unknown>;
}

/** Thrown when a flow failed and was rolled back (details: flow, step, rolledBack, rollbackErrors). */
export function flowError(j: FlowJournal, failedStep: string | undefined, cause: TStackError): TStackError {
  const rbFailed = (j.rollbackErrors ?? []).length > 0;
  return new TStackError(
    cause.code,
    `${cause.message}${failedStep ? ` (flow ${j.flow}, step ${failedStep}` : ` (flow ${j.flow}`}${rbFailed ? `; rollback incomplete: ${j.rollbackErrors!.map((r) => `${r.step}: ${r.error.message}`).join('; ')}` : '; rolled back'})`,
    { ...(cause.details ?? {}), flowId: j.id, flow: j.flow, ...(failedStep ? { step: failedStep } : {}), rollbackComplete: !rbFailed },
  );
}

class Runner<D extends FlowData> {
  readonly ctx: FlowContext<D>;
  private readonly log: Logger;

  constructor(
    private readonly store: InventoryStore,
    private readonly def: FlowDef<D>,
    private readonly j: FlowJournal,
    resumed: boolean,
    onProgress: RunOptions['onProgress'],
    log: Logger | undefined,
    controller: RunOptions['controller'],
    memo?: RunOptions['memo'],
  ) {
    this.written = resumed;
    this.log = log ?? logger('flow', { flow: def.name, flowId: j.id });
    const journal = this.j;
    this.ctx = {
      flowId: j.id,
      flowName: def.name,
      store,
      get controller(): ControllerContext {
        if (!controller) throw new TStackError('INTERNAL', `flow ${def.name} runs without a controller context`);
        return controller();
      },
      log: this.log,
      get data() {
        return journal.data as D;
      },
      set data(d: D) {
        journal.data = d;
      },
      save: () => this.persist(),
      saveWith: (writes) => this.persist(writes),
      finishWith: (writes, then) => {
        this.closing.push({ writes, then });
      },
      defer: (writes, then) => {
        this.deferred.push({ writes, then });
      },
      memo: new Map(memo),
      resumed,
      progress: (p, m) => onProgress?.(Math.max(0, Math.min(100, p)), m),
      taskId: (label) => `${journal.id}.${journal.current ?? journal.completed}.${journal.redone ?? 0}.${label}`,
    };
  }

  /** The journal is in the store (a resumed flow's always is). */
  private written: boolean;
  /** ctx.finishWith's writes, for the end's batch. */
  private closing: Closing[] = [];
  /** ctx.defer's writes, for the next commit. */
  private deferred: Closing[] = [];

  /** The deferred writes (taken) ahead of `writes`, and what hands their results out. */
  private takeDeferred(writes: StoreWrite[]): { all: StoreWrite[]; settle: (results: Array<Resource | undefined>) => Array<Resource | undefined> } {
    const d = this.deferred;
    this.deferred = [];
    const all = [...d.flatMap((c) => c.writes), ...writes];
    return {
      all,
      settle: (results) => {
        let at = 0;
        for (const c of d) {
          c.then?.(results.slice(at, at + c.writes.length));
          at += c.writes.length;
        }
        return results.slice(at);
      },
    };
  }

  private async persist(): Promise<void>;
  private async persist(writes: StoreWrite[]): Promise<Array<Resource | undefined>>;
  private async persist(writes?: StoreWrite[]): Promise<Array<Resource | undefined> | void> {
    this.j.updatedAt = new Date().toISOString();
    const journal: StoreWrite = { op: 'putDoc', collection: JOURNALS, id: this.j.id, doc: this.j };
    if (!writes && !this.deferred.length) {
      await this.store.putDoc(JOURNALS, this.j.id, this.j);
      this.written = true;
      return;
    }
    const { all, settle } = this.takeDeferred([journal, ...(writes ?? [])]);
    const out = settle(await this.store.batch(all)).slice(1);
    this.written = true;
    return writes ? out : undefined;
  }

  /** Run forward from the journal's position. Returns the data or throws after rolling back. */
  async forward(): Promise<D> {
    const steps = this.def.steps;
    const from = this.j.current ?? this.j.completed;
    for (let i = from; i < steps.length; i++) {
      const step = steps[i]!;
      const interrupted = this.ctx.resumed && i === this.j.current;
      this.j.current = i;
      if (this.def.journal !== 'saves' || (!this.written && !(i === 0 && step.journalsItself))) await this.persist();
      try {
        if (interrupted && step.redo === 'rollback-first') {
          this.log.info({ step: step.name }, 'resumed mid-step: rolling the step back before running it again');
          await step.rollback?.(this.ctx);
          this.j.redone = (this.j.redone ?? 0) + 1;
          await this.persist();
        }
        await step.run(this.ctx);
      } catch (e) {
        const err = TStackError.from(e);
        this.log.warn({ step: step.name, err: err.toJSON() }, 'flow step failed, rolling back');
        this.j.error = err.toJSON();
        await this.backward();
        throw flowError(this.j, step.name, err);
      }
      this.j.completed = i + 1;
      delete this.j.current;
      this.ctx.progress(Math.round(((i + 1) / steps.length) * 100), step.name);
    }
    // the deferred writes, the last step's closing writes, the outcome and the journal's delete: one commit
    const closing = this.closing;
    this.closing = [];
    const { all: writes, settle } = this.takeDeferred(closing.flatMap((c) => c.writes));
    let results: Array<Resource | undefined>;
    try {
      results = settle(await this.store.batch([...writes, ...this.endWrites('completed')]));
    } catch (e) {
      if (!writes.length) throw e; // the end alone: the journal stays for a resume
      // nothing of it was written: as if the last step had failed
      const err = TStackError.from(e);
      const last = steps.length - 1;
      this.j.current = last;
      this.j.completed = last;
      this.j.error = err.toJSON();
      await this.backward();
      throw flowError(this.j, steps[last]!.name, err);
    }
    let at = 0;
    for (const c of closing) {
      c.then?.(results.slice(at, at + c.writes.length));
      at += c.writes.length;
    }
    return this.j.data as D;
  }

  /**
   * The outcome (when kept) and the journal's delete, for one batch: a job whose controller dies
   * reads the outcome once the journal is gone, so the two go together.
   */
  private endWrites(action: 'completed' | 'rolled-back'): StoreWrite[] {
    const out: StoreWrite[] = [];
    if (action === 'rolled-back' || this.j.keepOutcome) {
      const o: FlowOutcome = { flow: this.j.flow, action, at: new Date().toISOString() };
      if (action === 'completed' && this.def.result) o.result = this.def.result(this.j.data as D);
      if (action === 'rolled-back' && this.j.error) o.error = this.j.error;
      out.push({ op: 'putDoc', collection: OUTCOMES, id: this.j.id, doc: o });
    }
    out.push({ op: 'deleteDoc', collection: JOURNALS, id: this.j.id });
    return out;
  }

  /** Roll back every step that ran or was running, in reverse; keep the journal if one fails. */
  async backward(): Promise<void> {
    // never committed: what they would have written is undone anyway
    this.deferred = [];
    const last = this.j.current ?? this.j.completed - 1;
    this.j.state = 'rolling-back';
    this.j.rollbackErrors = [];
    await this.persist();
    for (let i = last; i >= 0; i--) {
      if (this.j.rolledBack.includes(i)) continue;
      const step = this.def.steps[i]!;
      try {
        await step.rollback?.(this.ctx);
        this.j.rolledBack.push(i);
      } catch (e) {
        const err = TStackError.from(e);
        this.log.error({ step: step.name, err: err.toJSON() }, 'rollback of flow step failed; continuing with the others');
        this.j.rollbackErrors.push({ step: step.name, error: err.toJSON() });
      }
      await this.persist();
    }
    if (this.j.rollbackErrors.length > 0) {
      this.j.state = 'rollback-failed';
      await this.persist();
    } else {
      // a job whose controller dies before it records the failure reads it here; written with
      // the journal's delete, so one of the two is always there
      await this.store.batch(this.endWrites('rolled-back'));
    }
  }
}

interface Closing {
  writes: StoreWrite[];
  then: ((results: Array<Resource | undefined>) => void) | undefined;
}

export function newJournal(def: FlowDef<FlowData>, data: FlowData, opts: RunOptions): FlowJournal {
  const now = new Date().toISOString();
  return {
    id: opts.id ?? randomUUID(),
    flow: def.name,
    controllerId: opts.controllerId ?? 'default',
    state: 'running',
    completed: 0,
    rolledBack: [],
    data,
    ...(opts.lockKeys ? { lockKeys: opts.lockKeys } : {}),
    ...(opts.hostUuid ? { hostUuid: opts.hostUuid } : {}),
    ...(opts.keepOutcome ? { keepOutcome: true } : {}),
    startedAt: now,
    updatedAt: now,
  };
}

/** Run a flow to the end (returns ctx.data) or roll it back (throws the step's error, annotated). */
export async function runFlow<D extends FlowData>(store: InventoryStore, def: FlowDef<D>, data: D, opts: RunOptions = {}): Promise<D> {
  const j = newJournal(def as unknown as FlowDef<FlowData>, data, opts);
  if (await store.getDoc(JOURNALS, j.id)) throw new TStackError('CONFLICT', `flow ${j.id} already exists`, { flowId: j.id });
  return new Runner(store, def, j, false, opts.onProgress, opts.log, opts.controller, opts.memo).forward();
}

export interface ResumeReport {
  id: string;
  flow: string;
  /** 'error': resuming itself failed (store unreachable…); the journal stays for the next start. */
  action: 'completed' | 'rolled-back' | 'rollback-failed' | 'failed-and-rolled-back' | 'unknown-flow' | 'skipped' | 'error';
  error?: ErrorBody;
}

/**
 * How failed flows ended ('flow-outcomes', by flow id): a job whose controller died reads the
 * error of its flow here once the flow was rolled back (a create's job finds its resource when
 * its flow completed: only failures are written, unless the run asked for keepOutcome). Pruned
 * after a day.
 */
export const OUTCOMES = 'flow-outcomes';

export interface FlowOutcome {
  flow: string;
  action: ResumeReport['action'];
  error?: ErrorBody;
  /** A completed flow's answer (FlowDef.result). */
  result?: unknown;
  at: string;
}

/** Drop outcomes older than `maxAgeMs` (a job reads its flow's within a minute or so; nobody reads the others). */
export async function pruneOutcomes(store: InventoryStore, maxAgeMs = 24 * 3600_000): Promise<void> {
  const cutoff = new Date(Date.now() - maxAgeMs).toISOString();
  for (const { id, doc } of await store.listDocs<FlowOutcome>(OUTCOMES)) if (doc.at < cutoff) await store.deleteDoc(OUTCOMES, id);
}

/** Continue one unfinished journal per its flow's policy. */
export async function resumeJournal(store: InventoryStore, def: FlowDef<FlowData>, j: FlowJournal, log?: Logger, controller?: () => ControllerContext): Promise<ResumeReport> {
  const r = new Runner(store, def, j, true, undefined, log, controller);
  if (j.state === 'running' && def.onResume === 'complete') {
    try {
      await r.forward();
      return { id: j.id, flow: j.flow, action: 'completed' };
    } catch (e) {
      return { id: j.id, flow: j.flow, action: (j.state as JournalState) === 'rollback-failed' ? 'rollback-failed' : 'failed-and-rolled-back', error: TStackError.from(e).toJSON() };
    }
  }
  if (j.state === 'running') {
    j.error = new TStackError('CANCELLED', 'the controller restarted during this flow; rolled back').toJSON();
  }
  await r.backward();
  return { id: j.id, flow: j.flow, action: j.state === 'rollback-failed' ? 'rollback-failed' : 'rolled-back' };
}
