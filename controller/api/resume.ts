// Jobs of resumable creates whose controller died (issue 19: killing a controller loses no
// acknowledged request). The create's flow runs under the job's uuid, so:
//   - journal still there: another controller (its engine's takeover, or this one's resume at
//     start) is finishing it; wait for it to end;
//   - a resumed flow that failed left its error in the flow outcomes: the job fails with it;
//   - the resource exists: the flow completed; the job succeeds with it;
//   - neither: the controller died before the flow started; run the create now, from the
//     request the job kept (same principal, same uuid).
import { TStackError } from '../../shared/errors.js';
import type { Principal } from '../auth/accounts.js';
import type { Resumer } from '../jobs/jobs.js';
import type { ControllerContext } from '../context.js';
import { JOURNALS, OUTCOMES, type FlowJournal, type FlowOutcome } from '../workflow/flow.js';
import { shape } from './crud.js';

export function createJobResumer(d: ControllerContext, collection: string, pollMs = 500): Resumer {
  return async (job, jc) => {
    const spec = d.registry.collection(collection);
    const interrupted = (why: string): TStackError =>
      new TStackError('INTERRUPTED', `the controller running job ${job.uuid} (${job.type}) stopped and ${why}; check ${job.resourceUuid ?? 'the resource'} and retry`, job.resourceUuid ? { resourceUuid: job.resourceUuid } : undefined);
    for (;;) {
      const j = await d.store.getDoc<FlowJournal>(JOURNALS, job.uuid);
      if (!j) break;
      if (j.state === 'rollback-failed') throw new TStackError(j.error?.code ?? 'INTERRUPTED', `${j.error?.message ?? 'the create failed'} (its rollback is incomplete and retried)`, { flowId: j.id });
      await new Promise((r) => setTimeout(r, pollMs));
    }
    const outcome = await d.store.getDoc<FlowOutcome>(OUTCOMES, job.uuid);
    if (outcome) {
      await d.store.deleteDoc(OUTCOMES, job.uuid);
      throw outcome.error ? new TStackError(outcome.error.code, outcome.error.message, outcome.error.details) : interrupted(`its flow ended ${outcome.action}`);
    }
    const uuid = job.resourceUuid;
    const r = uuid ? await d.store.get(uuid) : undefined;
    if (r) return shape(spec, r);
    const kept = job.context as { body?: Record<string, unknown>; principal?: Omit<Principal, 'sessionId'> } | undefined;
    if (!spec?.create || !uuid || !kept?.body || !kept.principal) throw interrupted('its request was not kept');
    // acknowledged, but its flow never started: run the create now
    const created = await spec.create.run(kept.body, { ...d, principal: { ...kept.principal, sessionId: '' }, job: jc, newUuid: uuid });
    return shape(spec, created);
  };
}
