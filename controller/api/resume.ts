// Jobs of resumable creates and actions whose controller died (issue 19: killing a controller
// loses no acknowledged request). The create's flow runs under the job's uuid and keeps its
// outcome, completed or failed, until the job's end is stored; so:
//   - journal still there: another controller (its engine's takeover, or this one's resume at
//     start) is finishing it; wait for it to end;
//   - a failed flow's outcome: the job fails with its error;
//   - the resource exists: the flow completed; the job succeeds with it;
//   - a completed outcome (or a journal seen) but no resource: it was made and deleted since;
//     the job fails NOT_FOUND, nothing is made again;
//   - none of these: the controller died before the flow started; run the create now, from the
//     request the job kept (same principal, same uuid).
import { TStackError } from '../../shared/errors.js';
import type { Principal } from '../auth/accounts.js';
import type { Resource } from '../store/types.js';
import type { Resumer } from '../jobs/jobs.js';
import type { ControllerContext } from '../context.js';
import { OUTCOMES, type FlowOutcome } from '../workflow/flow.js';
import { journalGone } from '../workflow/engine.js';
import { shape } from './crud.js';

/**
 * Waits while the job's flow journal is there (a controller, this one or another, is finishing it); then its
 * outcome (deleted once the job's end is persisted: registerJobResumers). `started`: a journal
 * was seen, so the flow ran — whatever is missing now was made and since removed, never to be
 * made again.
 */
async function flowEnd(d: ControllerContext, jobUuid: string, pollMs: number): Promise<{ outcome: FlowOutcome | undefined; started: boolean }> {
  const started = await journalGone(d, jobUuid, pollMs, (j) => new TStackError(j.error?.code ?? 'INTERRUPTED', `${j.error?.message ?? 'the operation failed'} (its rollback is incomplete and retried)`, { flowId: j.id }));
  return { outcome: await d.store.getDoc<FlowOutcome>(OUTCOMES, jobUuid), started };
}

export function createJobResumer(d: ControllerContext, collection: string, pollMs = 500): Resumer {
  return async (job, jc) => {
    const spec = d.registry.collection(collection);
    const interrupted = (why: string): TStackError =>
      new TStackError('INTERRUPTED', `the controller running job ${job.uuid} (${job.type}) stopped and ${why}; check ${job.resourceUuid ?? 'the resource'} and retry`, job.resourceUuid ? { resourceUuid: job.resourceUuid } : undefined);
    const { outcome, started } = await flowEnd(d, job.uuid, pollMs);
    if (outcome && outcome.action !== 'completed') {
      throw outcome.error ? new TStackError(outcome.error.code, outcome.error.message, outcome.error.details) : interrupted(`its flow ended ${outcome.action}`);
    }
    const uuid = job.resourceUuid;
    const r = uuid ? await d.store.get(uuid) : undefined;
    if (r) return shape(spec, r);
    // the flow ran to its end and its resource was deleted since (before this poll saw it): made once, not again
    if (started || outcome) throw new TStackError('NOT_FOUND', `job ${job.uuid} (${job.type}) completed, but ${uuid ?? 'its resource'} is gone`);
    const kept = job.context as { body?: Record<string, unknown>; principal?: Omit<Principal, 'sessionId'> } | undefined;
    if (!spec?.create || !uuid || !kept?.body || !kept.principal) throw interrupted('its request was not kept');
    // acknowledged, but its flow never started: run the create now
    const created = await spec.create.run(kept.body, { ...d, principal: { ...kept.principal, sessionId: '' }, job: jc, newUuid: uuid });
    return shape(spec, created);
  };
}

/**
 * Jobs of resumable actions (`ActionSpec.resumable`: VM start, stop, reboot…) and deletes
 * (`DeleteOp.resumable`, action 'delete': the query is the parameters) whose controller died.
 * The flow runs under the job's uuid and keeps its outcome when it completes too (the resource
 * tells nothing of an action), so: journal there → wait; outcome 'completed' → the job succeeds
 * with the answer the outcome kept (FlowDef.result: the flow removed its resource), else with the
 * resource as it is now; a failure outcome → the job fails with its error; neither → the flow
 * never started: run the action now, from the parameters the job kept.
 */
export function actionJobResumer(d: ControllerContext, collection: string, action: string, pollMs = 500): Resumer {
  const shaped = (v: unknown): unknown => (v !== null && typeof v === 'object' && typeof (v as Resource).kind === 'string' && typeof (v as Resource).uuid === 'string' ? shape(d.registry.byKind((v as Resource).kind), v as Resource) : v);
  return async (job, jc) => {
    const { outcome } = await flowEnd(d, job.uuid, pollMs);
    if (outcome && outcome.action !== 'completed') {
      throw outcome.error ? new TStackError(outcome.error.code, outcome.error.message, outcome.error.details) : new TStackError('INTERRUPTED', `the controller running job ${job.uuid} (${job.type}) stopped and its flow ended ${outcome.action}`);
    }
    const kept = job.context as { params?: Record<string, unknown>; principal?: Omit<Principal, 'sessionId'>; newUuid?: string } | undefined;
    const r = job.resourceUuid ? await d.store.get(job.resourceUuid) : undefined;
    if (outcome) {
      if (outcome.result !== undefined) return shaped(outcome.result);
      // completed: what the action answers with (the resource it made, else the one it acted on)
      const made = kept?.newUuid ? await d.store.get(kept.newUuid) : r;
      if (!made) throw new TStackError('NOT_FOUND', `job ${job.uuid} (${job.type}) completed, but ${kept?.newUuid ?? job.resourceUuid ?? 'its resource'} is gone`);
      return shaped(made);
    }
    if (!r) throw new TStackError('NOT_FOUND', `job ${job.uuid} (${job.type}): ${job.resourceUuid ?? 'its resource'} is gone`);
    const run = action === 'delete' ? d.registry.collection(collection)?.remove?.run : d.registry.actionHandler(collection, action);
    if (!run || !kept?.params || !kept.principal) throw new TStackError('INTERRUPTED', `the controller running job ${job.uuid} (${job.type}) stopped and its request was not kept; check ${r.uuid} and retry`, { resourceUuid: r.uuid });
    // acknowledged, but its flow never started: run the action now (under the job's uuid)
    const oc = { ...d, principal: { ...kept.principal, sessionId: '' }, job: jc, ...(kept.newUuid ? { newUuid: kept.newUuid } : {}) };
    return shaped(await run(r, kept.params as Record<string, string>, oc));
  };
}

/** A resumer for the job type of every resumable create and action (call before JobManager.init()). */
export function registerJobResumers(d: ControllerContext): void {
  const actions = new Set<string>();
  const creates = new Set<string>();
  for (const { collection, op } of d.registry.resumables()) {
    const type = `${collection}.${op}`;
    (op === 'create' ? creates : actions).add(type);
    d.jobs.registerResumer(type, op === 'create' ? createJobResumer(d, collection) : actionJobResumer(d, collection, op));
  }
  // the flow's outcome is for the job's resumer: it goes with the job's end, in its commit
  // (deleted earlier, a controller dying before that end would leave the next resumer nothing
  // to read). The flows of resumable creates and actions run as a job keep one, completed or failed.
  d.jobs.onFinishWrites((job) => (actions.has(job.type) || creates.has(job.type) ? [{ op: 'deleteDoc', collection: OUTCOMES, id: job.uuid }] : []));
}
