// The audit log: one record per mutating API call (what, on which resource, who, from where,
// when, how long, the outcome, the redacted request). Records are inventory resources of kind
// 'audit' owned by the calling account, so the store's query language (q=, sort, paging) and
// its owner scoping serve them. A long operation is recorded as Accepted with its jobUuid and
// completed (result, error, resource, duration) when its job finishes.
import { randomUUID } from 'node:crypto';
import { logger } from '../../shared/log.js';
import type { InventoryStore, Resource, Filter, StoreWrite } from '../store/types.js';
import type { JobManager, JobView } from '../jobs/jobs.js';
import type { EventBus } from '../events/bus.js';

const log = logger('audit');

export const AUDIT_KIND = 'audit';

export type AuditResult = 'Succeeded' | 'Failed' | 'Accepted';

/** What one record says (the resource fields come on top). */
export interface AuditInput {
  /** `<collection>.<verb|action>` (vm-instances.create, vm-instances.stop) or `<METHOD> <path>`. */
  apiName: string;
  method: string;
  path: string;
  resourceType?: string;
  resourceUuid?: string;
  accountUuid: string;
  accountName?: string;
  /** tstack has no sub-users yet: the account name. */
  userName?: string;
  clientIp: string;
  startTime: string;
  /** Milliseconds (for long operations: until the job finished). */
  duration: number;
  result: AuditResult;
  httpStatus: number;
  errorCode?: string;
  jobUuid?: string;
  requestBody?: unknown;
}

export type AuditRecord = Resource & AuditInput;

export interface AuditOptions {
  /** Records older than this are deleted (default 90 days). */
  retentionDays?: number;
  /** How often retention runs (default 1 h). */
  pruneIntervalMs?: number;
}

const DAY = 86_400_000;

export class AuditLog {
  readonly retentionDays: number;
  private timer?: NodeJS.Timeout;
  private off?: () => void;
  /**
   * Records of long operations this process wrote and has not completed yet, by job: their
   * completion neither queries (on SQLite without statistics the query walked every audit
   * record: 7 ms per create at 2,000) nor reads the record (only completeJob changes it).
   * Another controller's job falls back to the query.
   */
  private pendingByJob = new Map<string, AuditRecord>();
  /** Jobs whose end carried their record's completion (finishWrites). */
  private withJobEnd = new Set<string>();

  constructor(
    private readonly store: InventoryStore,
    private readonly jobs: JobManager,
    private readonly bus: EventBus,
    private readonly o: AuditOptions = {},
  ) {
    const d = o.retentionDays ?? 90;
    if (!Number.isFinite(d) || d <= 0) throw new Error(`audit retention: expected a positive number of days, got ${String(d)}`);
    this.retentionDays = d;
  }

  start(): void {
    // complete the records of long operations; every controller sees the event (relay), the
    // update is idempotent
    this.off = this.bus.subscribe((e) => {
      if (e.type === 'job.finished') return this.completeJob(e.job);
      return undefined;
    });
    const prune = (): void => void this.prune().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'audit retention failed'));
    prune();
    this.timer = setInterval(prune, this.o.pruneIntervalMs ?? 3600_000);
    this.timer.unref();
  }

  stop(): void {
    this.off?.();
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * The record of a call answered with a job, for the job's first commit (the caller writes
   * it: jobs' StartOptions.writes); completed in the job's last commit (finishWrites).
   */
  accept(input: AuditInput): AuditRecord {
    const r = this.recordOf(input);
    if (r.jobUuid && this.pendingByJob.size < 100_000) this.pendingByJob.set(r.jobUuid, r);
    return r;
  }

  /** An accepted record that was not written after all (the job's start failed). */
  forget(r: AuditRecord): void {
    if (r.jobUuid && this.pendingByJob.get(r.jobUuid) === r) this.pendingByJob.delete(r.jobUuid);
  }

  /**
   * For JobManager.onFinishWrites: the completion of this process's accepted record of the
   * job, committed with the job's end. The job.finished event then leaves it alone (the end
   * was written with it, or not at all: then the job stays Running for the next start).
   */
  finishWrites(j: JobView): StoreWrite[] {
    const a = this.pendingByJob.get(j.uuid);
    if (!a || a.result !== 'Accepted' || j.state === 'Running') return [];
    this.withJobEnd.add(j.uuid);
    return [{ op: 'update', uuid: a.uuid, patch: this.completion(a, j) }];
  }

  private recordOf(input: AuditInput): AuditRecord {
    return {
      ...input,
      uuid: randomUUID(),
      kind: AUDIT_KIND,
      name: input.apiName,
      createDate: input.startTime,
      lastOpDate: input.startTime,
      ownerAccountUuid: input.accountUuid,
      tags: [],
    };
  }

  async record(input: AuditInput): Promise<AuditRecord> {
    const r = this.recordOf(input);
    const out = await this.store.create(r);
    if (r.jobUuid && r.result === 'Accepted' && this.pendingByJob.size < 100_000) this.pendingByJob.set(r.jobUuid, out);
    if (r.jobUuid) {
      // the job may have finished before this record existed (its event found nothing)
      const j = await this.jobs.get(r.jobUuid);
      if (j && j.state !== 'Running') await this.completeJob(j);
    }
    return out;
  }

  /** Fill in a long operation's outcome from its finished job. */
  async completeJob(j: Pick<JobView, 'uuid' | 'state' | 'error' | 'result' | 'resourceUuid' | 'finishDate'>): Promise<void> {
    if (j.state === 'Running') return;
    const known = this.pendingByJob.get(j.uuid);
    this.pendingByJob.delete(j.uuid);
    if (this.withJobEnd.delete(j.uuid)) return;
    const a = known ?? (await this.store.list<AuditRecord>({ kind: AUDIT_KIND, filters: [{ field: 'jobUuid', op: '=', value: j.uuid }], limit: 1 })).items[0];
    if (!a || a.result !== 'Accepted') return;
    await this.store.update(a.uuid, this.completion(a, j));
  }

  private completion(a: AuditRecord, j: Pick<JobView, 'state' | 'error' | 'result' | 'resourceUuid' | 'finishDate'>): Partial<AuditRecord> {
    const patch: Partial<AuditRecord> = { result: j.state === 'Succeeded' ? 'Succeeded' : 'Failed' };
    const resultUuid = (j.result as { uuid?: unknown } | undefined)?.uuid;
    const resourceUuid = a.resourceUuid ?? j.resourceUuid ?? (typeof resultUuid === 'string' ? resultUuid : undefined);
    if (resourceUuid) patch.resourceUuid = resourceUuid;
    if (j.error?.code) patch.errorCode = j.error.code;
    if (j.finishDate) patch.duration = Math.max(0, Date.parse(j.finishDate) - Date.parse(a.startTime));
    return patch;
  }

  /** Delete records older than the retention; returns how many. */
  async prune(now = Date.now()): Promise<number> {
    const cutoff = new Date(now - this.retentionDays * DAY).toISOString();
    const filters: Filter[] = [{ field: 'createDate', op: '<', value: cutoff }];
    let n = 0;
    for (;;) {
      const batch = await this.store.list({ kind: AUDIT_KIND, filters, limit: 500 });
      if (batch.items.length === 0) break;
      for (const r of batch.items) if (await this.store.delete(r.uuid)) n++;
      if (batch.items.length < 500) break;
    }
    if (n > 0) log.info({ deleted: n, cutoff }, 'audit retention: old records deleted');
    return n;
  }
}
