// Jobs: the handle of every long operation. A job is persisted in the store (docs collection
// 'jobs') at start, on progress (at most every 2 s, the first 2 s after the start: a short job
// is written twice) and at the end, so `GET /v1/jobs/<uuid>` answers
// after a controller restart too. Jobs found Running at start-up are handed to the resumer
// registered for their type (a workflow that finishes or rolls back), else marked Failed with
// an error that says what happened — never left Running forever.
import { randomUUID } from 'node:crypto';
import { TStackError, errorInfo, type ErrorBody } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import type { InventoryStore, StoreWrite } from '../store/types.js';
import { claimRefused } from '../store/claim-conflict.js';
import type { EventBus } from '../events/bus.js';

const log = logger('jobs');
export const JOB_DOCS = 'jobs';
const CONTROLLER_DOCS = 'controllers';
/** Progress reaches the store at most this often (issue 19: a VM create wrote its job 3-5 times). */
const PROGRESS_SAVE_MS = 2000;
/**
 * A job's progress events are published at most this often: a burst (a VM create's quick steps
 * report 3-4 within milliseconds) goes out as its first report and, at the window's end, the
 * last one, unless the job finished meanwhile (job.finished carries it). Issue 19: ~10 events
 * per create, each fanned out to every bus listener. The job itself (GET) shows every report.
 */
export const PROGRESS_EVENT_MS = 250;

export type JobState = 'Running' | 'Succeeded' | 'Failed';

export interface JobDoc {
  uuid: string;
  /** What runs, e.g. 'vm-instances.create', 'vm-instances.start' (resumers are keyed by it). */
  type: string;
  state: JobState;
  /** 0..100 */
  progress?: number;
  /** Human-readable current step. */
  message?: string;
  result?: unknown;
  error?: ErrorBody & { field?: string };
  accountUuid: string;
  resourceUuid?: string;
  /** The controller process running it. */
  controllerId?: string;
  /** Free-form data a resumer needs (e.g. the workflow id). */
  context?: Record<string, unknown>;
  /** StartOptions.requestKey: released with the doc (gc). */
  requestKey?: string;
  createDate: string;
  lastOpDate: string;
  finishDate?: string;
}

/** What the API shows (no internal context). */
export type JobView = Omit<JobDoc, 'context' | 'controllerId' | 'requestKey'> & {
  /** start(): the request was made before (StartOptions.requestKey); this is its job. */
  repeated?: true;
};

export interface JobContext {
  readonly jobUuid: string;
  /** Report progress (0..100) and an optional message; persisted at most every PROGRESS_SAVE_MS (live readers of this process see every one). */
  progress(percent: number, message?: string): void;
  /** Attach data for a resumer (persisted at once). */
  setContext(ctx: Record<string, unknown>): Promise<void>;
}

export interface StartOptions {
  type: string;
  accountUuid: string;
  resourceUuid?: string;
  context?: Record<string, unknown>;
  /**
   * Store writes to commit with the job's first doc (one commit, before the job is acknowledged):
   * what records the request itself (its audit record, issue 19). Given the job's uuid.
   */
  writes?: AcceptWrites;
  /**
   * The client's key for this request (a create's `resourceUuid`, per account): a start whose key
   * a job already holds starts nothing and answers that job (JobView.repeated), so a client that
   * got no answer (its controller died) can send the request again without doing it twice.
   */
  requestKey?: string;
}

/** The claim of a request key (StartOptions.requestKey), owned by the job that took it: one namespace per key, so it is read alone. */
const requestNs = (key: string): string => `job-request:${key}`;
const REQUEST_CLAIM = 'job';

/**
 * A request answered with a job (202) may carry, in its Koa `ctx.state[ACCEPT_WRITES]`, store
 * writes for the job's first doc (StartOptions.writes): the API passes them on.
 */
export const ACCEPT_WRITES = 'jobAcceptWrites';
export type AcceptWrites = (jobUuid: string) => StoreWrite[];

export type JobFn<T> = (jc: JobContext) => Promise<T>;
export type Resumer = (job: JobDoc, jc: JobContext) => Promise<unknown>;

export function jobView(j: JobDoc): JobView {
  const { context: _c, controllerId: _i, requestKey: _k, ...v } = j;
  // the error's kind (retryable, conflict…) comes from the one code table
  if (v.error) v.error = { ...v.error, kind: errorInfo(v.error.code).kind } as typeof v.error;
  return v;
}

export class JobManager {
  private running = new Map<string, { doc: JobDoc; done: Promise<JobDoc> }>();
  private resumers = new Map<string, Resumer>();
  private gcTimer?: NodeJS.Timeout;
  private hbTimer?: NodeJS.Timeout;
  private closed = false;
  /** This controller process (jobs record who runs them). */
  readonly instanceId = randomUUID();
  private readonly exclusive: boolean;
  private readonly staleMs: number;
  /** Finished jobs are kept this long (default 7 days). */
  private readonly retentionMs: number;

  constructor(
    private readonly store: InventoryStore,
    private readonly bus?: EventBus,
    o: { retentionMs?: number; exclusive?: boolean; staleMs?: number } = {},
  ) {
    this.retentionMs = o.retentionMs ?? 7 * 24 * 3600_000;
    this.exclusive = o.exclusive ?? store.backend === 'sqlite';
    this.staleMs = o.staleMs ?? 45_000;
  }

  private finishWrites: Array<(doc: JobDoc) => StoreWrite[]> = [];

  /**
   * Store writes to commit with a job's end, in the same batch (one commit): what only a
   * resumer of the job needed goes with the end itself (issue 19), never before it.
   */
  onFinishWrites(fn: (doc: JobDoc) => StoreWrite[]): void {
    this.finishWrites.push(fn);
  }

  /** Register how to resume jobs of a type interrupted by a controller restart. Call before init(). */
  registerResumer(type: string, fn: Resumer): void {
    this.resumers.set(type, fn);
  }

  /**
   * Take over jobs left Running by a controller process that is gone; start the GC timer.
   * With an exclusive store (SQLite: one controller) every Running job found at start is
   * orphaned. With a shared store (Redis: several controllers) a job is orphaned when its
   * controller's heartbeat is older than `staleMs`; one live controller claims it atomically.
   */
  async init(): Promise<void> {
    if (!this.exclusive) {
      await this.heartbeat();
      this.hbTimer = setInterval(() => {
        void this.heartbeat().then(() => this.adoptFromStale()).catch((e: unknown) => log.warn({ err: e }, 'job heartbeat failed'));
      }, Math.max(1000, Math.floor(this.staleMs / 3)));
      this.hbTimer.unref();
    }
    await this.adoptOrphans();
    this.gcTimer = setInterval(() => void this.gc().catch((e: unknown) => log.warn({ err: e }, 'job gc failed')), 3600_000);
    this.gcTimer.unref();
  }

  private async heartbeat(): Promise<void> {
    // the store's index layout: the Redis store uses an index only once every live controller maintains it
    await this.store.putDoc(CONTROLLER_DOCS, this.instanceId, { at: Date.now(), ...(this.store.layout !== undefined ? { store: this.store.layout } : {}) });
  }

  private async isOrphan(doc: JobDoc): Promise<boolean> {
    if (doc.controllerId === this.instanceId) return false;
    if (this.exclusive || !doc.controllerId) return true;
    const hb = await this.store.getDoc<{ at: number }>(CONTROLLER_DOCS, doc.controllerId);
    return !hb || Date.now() - hb.at > this.staleMs;
  }

  /** Controllers found stale whose jobs were looked for, with the heartbeat they were stale at. */
  private staleSeen = new Map<string, number>();

  /**
   * A round of the heartbeat: the jobs are read only when a controller's heartbeat went stale
   * since the last look (its Running jobs are then orphans); issue 19: every round parsed every
   * job doc, finished ones included (kept 7 days). Jobs with no live heartbeat behind them from
   * before this process started were taken at init().
   */
  private async adoptFromStale(): Promise<void> {
    const now = Date.now();
    const beats = await this.store.listDocs<{ at: number }>(CONTROLLER_DOCS);
    const fresh = beats.filter(({ id, doc }) => id !== this.instanceId && now - doc.at > this.staleMs && this.staleSeen.get(id) !== doc.at);
    if (fresh.length === 0) return;
    await this.adoptOrphans();
    // a controller that beats again and stops again is a new episode (another `at`)
    for (const { id, doc } of fresh) this.staleSeen.set(id, doc.at);
    const listed = new Set(beats.map((b) => b.id));
    for (const id of this.staleSeen.keys()) if (!listed.has(id)) this.staleSeen.delete(id);
  }

  private async adoptOrphans(): Promise<void> {
    for (const { doc } of await this.store.listDocs<JobDoc>(JOB_DOCS)) {
      if (doc.state !== 'Running' || this.running.has(doc.uuid) || !(await this.isOrphan(doc))) continue;
      if (!(await this.store.claim('job-takeover', `${doc.uuid}:${doc.controllerId ?? ''}`, this.instanceId))) continue;
      const dead = doc.controllerId;
      doc.controllerId = this.instanceId;
      const resumer = this.resumers.get(doc.type);
      if (resumer) {
        log.info({ job: doc.uuid, type: doc.type, from: dead }, 'resuming a job whose controller stopped');
        await this.store.putDoc(JOB_DOCS, doc.uuid, doc);
        this.track(doc, (jc) => resumer(doc, jc));
      } else {
        log.warn({ job: doc.uuid, type: doc.type }, 'job was running when its controller stopped; marking it Failed');
        await this.finish(doc, undefined, new TStackError('INTERRUPTED', `the controller restarted while job ${doc.uuid} (${doc.type}) was running and nothing can resume it; check the state of ${doc.resourceUuid ?? 'the resource'} and retry the operation`, doc.resourceUuid ? { resourceUuid: doc.resourceUuid } : undefined));
      }
    }
  }

  /** Stop timers; jobs still running in this process are no longer persisted (the next start takes them over). */
  close(): void {
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.hbTimer) clearInterval(this.hbTimer);
  }

  /** Start a job; resolves once it is persisted as Running (the work goes on in the background). */
  async start<T>(o: StartOptions, fn: JobFn<T>): Promise<JobView> {
    const now = new Date().toISOString();
    const doc: JobDoc = { uuid: randomUUID(), type: o.type, state: 'Running', progress: 0, accountUuid: o.accountUuid, controllerId: this.instanceId, createDate: now, lastOpDate: now };
    if (o.resourceUuid) doc.resourceUuid = o.resourceUuid;
    if (o.context) doc.context = o.context;
    const extra = o.writes?.(doc.uuid) ?? [];
    if (o.requestKey !== undefined) {
      doc.requestKey = o.requestKey;
      extra.unshift({ op: 'claim', namespace: requestNs(o.requestKey), key: REQUEST_CLAIM, owner: doc.uuid });
    }
    try {
      if (extra.length) await this.store.batch([{ op: 'putDoc', collection: JOB_DOCS, id: doc.uuid, doc }, ...extra]);
      else await this.store.putDoc(JOB_DOCS, doc.uuid, doc);
    } catch (e) {
      const refused = claimRefused(e);
      if (!refused || refused.namespace !== requestNs(o.requestKey!)) throw e;
      // the same request again: the job that took it (all or none: nothing of this one was written)
      const holder = (e as TStackError).details?.holder;
      const prior = typeof holder === 'string' ? await this.get(holder) : undefined;
      if (!prior) throw new TStackError('CONFLICT', `this request (${o.requestKey}) was made before; its job is gone`, { field: 'resourceUuid' });
      return { ...jobView(prior), repeated: true };
    }
    this.emit('job.created', doc);
    this.track(doc, fn);
    return jobView(doc);
  }

  private track<T>(doc: JobDoc, fn: JobFn<T>): void {
    // the doc was just written (start, or the takeover of an orphan)
    let lastSave = Date.now();
    let saving: Promise<void> = Promise.resolve();
    // the last progress event's time, and the event waiting for the window's end
    let lastEvent = 0;
    let pendingEvent: NodeJS.Timeout | undefined;
    const progressEvent = (): void => {
      pendingEvent = undefined;
      if (doc.state !== 'Running') return;
      lastEvent = Date.now();
      this.emit('job.progress', doc);
    };
    const jc: JobContext = {
      jobUuid: doc.uuid,
      progress: (percent, message) => {
        if (doc.state !== 'Running') return;
        doc.progress = Math.max(0, Math.min(100, Math.round(percent)));
        if (message !== undefined) doc.message = message;
        doc.lastOpDate = new Date().toISOString();
        const since = Date.now() - lastEvent;
        if (since >= PROGRESS_EVENT_MS) progressEvent();
        else pendingEvent ??= setTimeout(progressEvent, PROGRESS_EVENT_MS - since).unref();
        if (Date.now() - lastSave > PROGRESS_SAVE_MS && !this.closed) {
          lastSave = Date.now();
          const snapshot = { ...doc };
          saving = saving.then(() => this.store.putDoc(JOB_DOCS, doc.uuid, snapshot)).catch((e: unknown) => log.warn({ err: e }, 'saving job progress failed'));
        }
      },
      setContext: async (ctx) => {
        doc.context = { ...doc.context, ...ctx };
        await this.store.putDoc(JOB_DOCS, doc.uuid, doc);
      },
    };
    const done = (async (): Promise<JobDoc> => {
      let result: unknown;
      let error: unknown;
      try {
        result = await fn(jc);
      } catch (e) {
        error = e;
      }
      await saving;
      // job.finished carries the last report
      if (pendingEvent) clearTimeout(pendingEvent);
      await this.finish(doc, result, error);
      return doc;
    })();
    this.running.set(doc.uuid, { doc, done });
    void done.finally(() => this.running.delete(doc.uuid));
  }

  private async finish(doc: JobDoc, result: unknown, error: unknown): Promise<void> {
    const now = new Date().toISOString();
    doc.lastOpDate = now;
    doc.finishDate = now;
    if (error !== undefined) {
      const err = TStackError.from(error);
      // after close() a job's failure is this instance stopping under it (its store closed): the
      // next controller takes the job over, so it is no error of the job's
      if (this.closed) log.debug({ job: doc.uuid, type: doc.type, msg: err.message }, 'job ended while its controller stopped');
      else if (err.code === 'INTERNAL') log.error({ err: error, job: doc.uuid, type: doc.type }, 'job failed unexpectedly');
      else log.info({ job: doc.uuid, type: doc.type, code: err.code, msg: err.message }, 'job failed');
      doc.state = 'Failed';
      const body: JobDoc['error'] = err.toJSON();
      const field = err.details?.field;
      if (typeof field === 'string') body.field = field;
      doc.error = body;
    } else {
      doc.state = 'Succeeded';
      doc.progress = 100;
      if (result !== undefined) doc.result = result;
    }
    // a resource the end's writes update may be gone (an audit record pruned meanwhile): the
    // end is then written without those updates rather than not at all
    let updates = true;
    for (let i = 0; !this.closed; i++) {
      try {
        const extra = this.finishWrites.flatMap((fn) => fn(doc)).filter((w) => updates || w.op !== 'update');
        if (extra.length) await this.store.batch([{ op: 'putDoc', collection: JOB_DOCS, id: doc.uuid, doc }, ...extra]);
        else await this.store.putDoc(JOB_DOCS, doc.uuid, doc);
        break;
      } catch (e) {
        if (updates && e instanceof TStackError && e.code === 'NOT_FOUND') {
          updates = false;
          continue;
        }
        if (i >= 4) {
          log.error({ err: e, job: doc.uuid }, 'could not persist the end of a job');
          break;
        }
        await new Promise((r) => setTimeout(r, 200 * (i + 1)));
      }
    }
    this.emit('job.finished', doc);
  }

  private emit(type: 'job.created' | 'job.progress' | 'job.finished', doc: JobDoc): void {
    this.bus?.publish({ type, accountUuid: doc.accountUuid, job: jobView(doc), time: new Date().toISOString() });
  }

  /** The job that took a request key (StartOptions.requestKey), if one did and is kept. */
  async forRequest(requestKey: string): Promise<JobView | undefined> {
    const holder = (await this.store.claims(requestNs(requestKey)))[0]?.owner;
    const j = holder === undefined ? undefined : await this.get(holder);
    return j && jobView(j);
  }

  /** The job as last known (live copy for jobs of this process, else the stored doc). */
  async get(uuid: string): Promise<JobDoc | undefined> {
    const r = this.running.get(uuid);
    if (r) return { ...r.doc };
    return this.store.getDoc<JobDoc>(JOB_DOCS, uuid);
  }

  async list(accountUuid?: string): Promise<JobDoc[]> {
    const all = (await this.store.listDocs<JobDoc>(JOB_DOCS)).map((d) => this.running.get(d.id)?.doc ?? d.doc);
    return all.filter((j) => accountUuid === undefined || j.accountUuid === accountUuid).sort((a, b) => a.createDate.localeCompare(b.createDate));
  }

  /**
   * Wait until a job finishes (or `timeoutMs` passes: then the job as it is, still Running).
   * Jobs of another controller process are polled from the store.
   */
  async wait(uuid: string, timeoutMs = 3600_000): Promise<JobDoc | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.running.get(uuid);
      if (r) {
        let timer: NodeJS.Timeout | undefined;
        const t = new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), Math.max(0, deadline - Date.now()))));
        const d = await Promise.race([r.done, t]);
        clearTimeout(timer);
        return d ? { ...d } : { ...r.doc };
      }
      const doc = await this.store.getDoc<JobDoc>(JOB_DOCS, uuid);
      if (!doc || doc.state !== 'Running' || Date.now() >= deadline) return doc;
      await new Promise((res) => setTimeout(res, Math.min(500, Math.max(0, deadline - Date.now()))));
    }
  }

  /** Remove finished jobs older than the retention. */
  async gc(): Promise<number> {
    const cutoff = new Date(Date.now() - this.retentionMs).toISOString();
    let n = 0;
    for (const { id, doc } of await this.store.listDocs<JobDoc>(JOB_DOCS)) {
      if (doc.state !== 'Running' && (doc.finishDate ?? doc.lastOpDate) < cutoff) {
        if (doc.requestKey !== undefined) await this.store.release(requestNs(doc.requestKey), REQUEST_CLAIM, id);
        await this.store.deleteDoc(JOB_DOCS, id);
        n++;
      }
    }
    for (const { id, doc } of await this.store.listDocs<{ at: number }>(CONTROLLER_DOCS)) {
      if (Date.now() - doc.at > 24 * 3600_000) await this.store.deleteDoc(CONTROLLER_DOCS, id);
    }
    return n;
  }
}
