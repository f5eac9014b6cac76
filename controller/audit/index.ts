// The audit log (controller/audit): records of every mutating API call, GET /v1/audits,
// retention. startController wires it in for every controller (it is not optional).
import type Koa from 'koa';
import type { InventoryStore } from '../store/types.js';
import type { AuthService } from '../auth/accounts.js';
import type { JobManager } from '../jobs/jobs.js';
import type { EventBus } from '../events/bus.js';
import { AuditLog, type AuditOptions } from './log.js';
import { auditMiddleware, auditRoutes } from './http.js';
import { AUDIT_ROUTE_DOCS } from './openapi.js';
import type { ApiRegistry } from '../api/registry.js';

export { AuditLog, AUDIT_KIND, type AuditRecord, type AuditOptions } from './log.js';
export { redact, isSecretField, REDACTED } from './redact.js';
export { describeCall } from './http.js';

export interface Audit {
  log: AuditLog;
  /** API middleware, in order: the recorder, then the /v1/audits routes. */
  middleware(statusOf: (code: string) => number): Koa.Middleware[];
}

export function createAudit(d: { store: InventoryStore; auth: AuthService; jobs: JobManager; bus: EventBus; registry?: ApiRegistry }, o: AuditOptions = {}): Audit {
  const log = new AuditLog(d.store, d.jobs, d.bus, o);
  // a long call's record is completed in its job's last commit
  d.jobs.onFinishWrites((j) => log.finishWrites(j));
  d.registry?.documentRoutes('audit', AUDIT_ROUTE_DOCS);
  return {
    log,
    middleware: (statusOf) => [auditMiddleware(log, statusOf), auditRoutes(d.auth, d.store)],
  };
}
