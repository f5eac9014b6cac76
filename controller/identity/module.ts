// The identity controller module (issue 18): users, groups and policies of an account (the
// policy gate runs first for users' sessions), and per-account quotas — the ledger kept in
// step with resource events, the create/start gate and /v1/quotas as API middleware, the
// admin's updateQuota action, and a repair pass at start and every few minutes.
import { logger } from '../../shared/log.js';
import type { ControllerContext } from '../context.js';
import { QuotaService } from './quotas.js';
import { quotaMiddleware, registerQuotaActions } from './quota-api.js';
import { registerIdentityCollections } from './users.js';
import { policyMiddleware } from './policy-gate.js';
import { registerSharing } from './sharing.js';
import { registerAccessKeys } from './access-keys.js';
import { deleteAccount } from './account-delete.js';
import { registerChangeOwner } from './change-owner.js';
import { logoutAllMiddleware } from './logout-all.js';
import { LoginLimiter, loginLimitMiddleware, type LoginLimitOptions } from './login-limit.js';

const log = logger('identity');

/** What the module uses of the controller's context (controller/context.ts). */
export type IdentityServices = Pick<ControllerContext, 'store' | 'auth' | 'bus' | 'jobs' | 'registry' | 'apiMiddleware'>;

export interface IdentityOptions {
  /** How often the quota ledger is checked against the inventory (default 5 min; 0 = only at start). */
  repairPeriodMs?: number;
  /** Failed-login rate limit (default 5 failures per 5 minutes per account name and per client address; counted in the store, shared by its controllers). */
  loginLimit?: LoginLimitOptions;
}

export function identityModule(o: IdentityOptions = {}): { name: string; install(s: IdentityServices): void; start(): Promise<void>; stop(): Promise<void> } {
  let quotas: QuotaService | undefined;
  let off: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const repair = (): Promise<void> =>
    (quotas?.reconcile() ?? Promise.resolve())
      .then(() => undefined)
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'quota ledger repair failed'));
  return {
    name: 'identity',
    install(s) {
      const q = new QuotaService(s.store, () => s.auth.adminAccountUuid);
      quotas = q;
      registerIdentityCollections(s.registry);
      registerSharing(s.registry);
      registerAccessKeys(s.registry);
      registerChangeOwner(s.registry);
      s.registry.setDelete('accounts', { long: true, deletesDependents: true, run: (r, _q, oc) => deleteAccount(r, oc) });
      s.apiMiddleware.push(loginLimitMiddleware(new LoginLimiter(o.loginLimit, s.store)));
      s.apiMiddleware.push(logoutAllMiddleware(s.auth));
      s.apiMiddleware.push(policyMiddleware({ store: s.store, auth: s.auth, registry: s.registry }));
      registerQuotaActions(s.registry, (store) => (store === s.store ? q : new QuotaService(store, () => s.auth.adminAccountUuid)));
      s.apiMiddleware.push(quotaMiddleware({ store: s.store, auth: s.auth, registry: s.registry, jobs: s.jobs, quotas: q }));
      off = s.bus.subscribe((e) => {
        if (e.type !== 'resource.created' && e.type !== 'resource.updated' && e.type !== 'resource.deleted') return;
        q.onEvent(e.type, e.resource).catch((err: unknown) => log.warn({ err: (err as Error).message, kind: e.kind, uuid: e.uuid }, 'quota ledger update failed'));
      });
    },
    async start() {
      await repair();
      const period = o.repairPeriodMs ?? 300_000;
      if (period > 0) {
        timer = setInterval(() => void repair(), period);
        timer.unref();
      }
    },
    async stop() {
      if (timer) clearInterval(timer);
      off?.();
    },
  };
}
