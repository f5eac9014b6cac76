// The audit log's HTTP side: a Koa middleware that records every mutating /v1 call (mounted
// by the API before its routes, so it sees the principal, the outcome and any error), and
// GET /v1/audits[/<uuid>] with the list query language plus resourceUuid=, accountUuid=,
// since=, until=. A normal account sees only its own records.
import type Koa from 'koa';
import Router from '@koa/router';
import { TStackError, httpStatusOf } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { Obj, Type } from '../../shared/protocol/schema.js';
import type { AuthService, Principal } from '../auth/accounts.js';
import type { InventoryStore } from '../store/types.js';
import { parseListQuery, project } from '../api/query.js';
import { shape } from '../api/crud.js';
import { AUDIT_KIND, type AuditInput, type AuditLog, type AuditRecord, type AuditResult } from './log.js';
import { redact } from './redact.js';
import { withReadStance } from '../api/read-path.js';
import { ACCEPT_WRITES, type AcceptWrites } from '../jobs/jobs.js';

const log = logger('audit');

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Agent traffic (callbacks, pushed events) is machine-to-machine, not an operator's action. */
const NOT_AUDITED = new Set(['/v1/agent-callbacks', '/v1/agent-events']);

/** The API name, resource type and uuid of a request, from its path and body. */
export function describeCall(method: string, path: string, body: unknown): { apiName: string; resourceType?: string; resourceUuid?: string } {
  if (path === '/v1/sessions' && method === 'POST') return { apiName: 'sessions.login', resourceType: 'sessions' };
  if (path === '/v1/sessions/current' && method === 'DELETE') return { apiName: 'sessions.logout', resourceType: 'sessions' };
  const m = /^\/v1\/([a-z][a-z0-9-]*)(?:\/([^/]+))?(\/actions)?\/?$/.exec(path);
  if (!m) return { apiName: `${method} ${path}` };
  const [, collection, uuid, actions] = m as unknown as [string, string, string | undefined, string | undefined];
  const base = { resourceType: collection, ...(uuid ? { resourceUuid: decodeURIComponent(uuid) } : {}) };
  if (actions && method === 'POST') {
    const names = body && typeof body === 'object' && !Array.isArray(body) ? Object.keys(body) : [];
    return { apiName: `${collection}.${names.length === 1 ? names[0] : 'action'}`, ...base };
  }
  if (!uuid && method === 'POST') return { apiName: `${collection}.create`, ...base };
  if (uuid && (method === 'PUT' || method === 'PATCH')) return { apiName: `${collection}.update`, ...base };
  if (uuid && method === 'DELETE') return { apiName: `${collection}.delete`, ...base };
  return { apiName: `${method} ${path}`, ...base };
}

function errorStatus(e: unknown, statusOf: (code: string) => number): { status: number; code: string } {
  if (e instanceof TStackError) return { status: statusOf(e.code), code: e.code };
  const s = (e as { status?: number }).status;
  if (typeof s === 'number' && s >= 400 && s < 500) return { status: s, code: s === 405 ? 'METHOD_NOT_ALLOWED' : 'INVALID_ARGUMENT' };
  return { status: 500, code: 'INTERNAL' };
}

/** The record of a call from its outcome: `error`, else the answer's status and body. */
function recordOf(ctx: Koa.Context, started: number, answer: { error?: unknown; status: number; body: unknown }, statusOf: (code: string) => number): AuditInput | undefined {
  const body = (ctx.request as { body?: unknown }).body;
  const d = describeCall(ctx.method, ctx.path, body);
  const p = ctx.state.principal as Principal | undefined;
  const login = d.apiName === 'sessions.login';
  if (!p && !login) return undefined;
  const err = answer.error === undefined ? undefined : errorStatus(answer.error, statusOf);
  const status = err?.status ?? answer.status;
  const out = answer.body as Record<string, unknown> | undefined;
  const result: AuditResult = status >= 400 ? 'Failed' : status === 202 ? 'Accepted' : 'Succeeded';
  const loginAccount = login && body && typeof body === 'object' ? (body as { accountName?: unknown }).accountName : undefined;
  const accountName = p?.accountName ?? (typeof loginAccount === 'string' ? loginAccount.slice(0, 64) : undefined);
  const rec: AuditInput = {
    apiName: d.apiName,
    method: ctx.method,
    path: ctx.path.slice(0, 512),
    accountUuid: p?.accountUuid ?? (login && status < 400 && typeof out?.accountUuid === 'string' ? out.accountUuid : ''),
    clientIp: ctx.ip,
    startTime: new Date(started).toISOString(),
    duration: Date.now() - started,
    result,
    httpStatus: status,
  };
  if (accountName) {
    rec.accountName = accountName;
    rec.userName = accountName;
  }
  if (d.resourceType) rec.resourceType = d.resourceType;
  const createdUuid = status < 400 && !d.resourceUuid && typeof out?.uuid === 'string' ? out.uuid : undefined;
  if (d.resourceUuid ?? createdUuid) rec.resourceUuid = (d.resourceUuid ?? createdUuid)!;
  if (err) rec.errorCode = err.code;
  else if (status >= 400 && typeof out?.code === 'string') rec.errorCode = out.code;
  if (status === 202 && typeof out?.jobUuid === 'string') rec.jobUuid = out.jobUuid;
  if (body !== undefined && !(typeof body === 'object' && body !== null && Object.keys(body).length === 0)) rec.requestBody = redact(body);
  return rec;
}

/**
 * Records every mutating /v1 call. `statusOf` maps error codes to HTTP statuses as the API
 * does. Calls refused before any account was known (401) are recorded only for logins
 * (failed logins are what an auditor looks for); other anonymous noise is not. A call answered
 * with a job (202) is recorded Accepted in the job's first commit (ACCEPT_WRITES: issue 19, one
 * commit fewer per long call) and completed in its last (AuditLog.finishWrites).
 */
export function auditMiddleware(audit: AuditLog, statusOf: (code: string) => number = httpStatusOf): Koa.Middleware {
  // changes only: reads pass
  return withReadStance(async (ctx: Koa.Context, next: Koa.Next) => {
    if (!MUTATING.has(ctx.method) || !ctx.path.startsWith('/v1/') || NOT_AUDITED.has(ctx.path)) return next();
    const started = Date.now();
    let accepted: AuditRecord | undefined;
    const atAccept: AcceptWrites = (jobUuid) => {
      // as the call will be answered: 202 with the job
      const rec = recordOf(ctx, started, { status: 202, body: { jobUuid } }, statusOf);
      if (!rec) return [];
      accepted = audit.accept(rec);
      return [{ op: 'create', resource: accepted }];
    };
    ctx.state[ACCEPT_WRITES] = atAccept;
    let error: unknown;
    try {
      await next();
    } catch (e) {
      error = e;
      throw e;
    } finally {
      const rec = recordOf(ctx, started, { error, status: ctx.status, body: ctx.body }, statusOf);
      if (accepted && rec?.result === 'Accepted' && rec.jobUuid === accepted.jobUuid) {
        // written with the job (the job's start threw otherwise: recorded below as failed)
      } else if (rec) {
        if (accepted) audit.forget(accepted);
        await audit.record(rec).catch((e: unknown) => log.error({ err: (e as Error).message, api: rec.apiName }, 'could not write an audit record'));
      }
    }
  }, { reads: 'ignores' });
}

/** Query-string parameters of GET /v1/audits besides the list language. */
const OWN_PARAMS = ['resourceUuid', 'accountUuid', 'since', 'until'] as const;

/** An audit record as listed (the field types make q= coerce values right). */
export const AuditView = Obj({
  uuid: Type.String(),
  apiName: Type.String(),
  method: Type.String(),
  path: Type.String(),
  resourceType: Type.Optional(Type.String()),
  resourceUuid: Type.Optional(Type.String()),
  accountUuid: Type.String(),
  accountName: Type.Optional(Type.String()),
  userName: Type.Optional(Type.String()),
  clientIp: Type.String(),
  startTime: Type.String(),
  duration: Type.Integer(),
  result: Type.String(),
  httpStatus: Type.Integer(),
  errorCode: Type.Optional(Type.String()),
  jobUuid: Type.Optional(Type.String()),
  createDate: Type.String(),
});

function isoParam(name: string, v: string): string {
  const t = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(t)) throw new TStackError('INVALID_ARGUMENT', `${name}: expected an ISO 8601 date or epoch milliseconds, got '${v}'`, { field: name });
  return new Date(t).toISOString();
}

function view(r: AuditRecord): Record<string, unknown> {
  const { kind: _k, name: _n, ownerAccountUuid: _o, tags: _t, lastOpDate: _l, ...rest } = shape(undefined, r) as AuditRecord;
  return rest;
}

/** GET /v1/audits and /v1/audits/<uuid>. */
export function auditRoutes(auth: AuthService, store: Pick<InventoryStore, 'list' | 'get'>): Koa.Middleware {
  const router = new Router();
  const principal = async (ctx: Koa.Context): Promise<Principal> => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    const p = await auth.authenticate(m?.[1]);
    ctx.state.principal = p;
    return p;
  };
  router.get('/v1/audits', async (ctx) => {
    const p = await principal(ctx);
    const qs = { ...(ctx.query as Record<string, string | string[]>) };
    const own: Partial<Record<(typeof OWN_PARAMS)[number], string>> = {};
    for (const k of OWN_PARAMS) {
      const v = qs[k];
      delete qs[k];
      if (v === undefined) continue;
      if (Array.isArray(v) || v === '') throw new TStackError('INVALID_ARGUMENT', `${k}: give it once, with a value`, { field: k });
      own[k] = v;
    }
    const lp = parseListQuery(AUDIT_KIND, qs, AuditView);
    const filters = lp.query.filters ?? [];
    if (own.resourceUuid) filters.push({ field: 'resourceUuid', op: '=', value: own.resourceUuid });
    if (own.accountUuid) filters.push({ field: 'accountUuid', op: '=', value: own.accountUuid });
    if (own.since) filters.push({ field: 'createDate', op: '>=', value: isoParam('since', own.since) });
    if (own.until) filters.push({ field: 'createDate', op: '<=', value: isoParam('until', own.until) });
    for (const f of filters) if (f.field.startsWith('_') || f.field === 'requestBody' || f.field.startsWith('requestBody.')) throw new TStackError('INVALID_ARGUMENT', `q: cannot filter on ${f.field}`, { field: 'q' });
    lp.query.filters = filters;
    lp.query.sort ??= { field: 'createDate', dir: 'desc' };
    if (!p.isAdmin) lp.query.ownerAccountUuid = p.accountUuid;
    if (lp.count) lp.query.limit = 0;
    const r = await store.list<AuditRecord>(lp.query);
    ctx.body = lp.count ? { total: r.total } : { inventories: r.items.map((i) => project(view(i), lp.fields)), total: r.total };
  });
  router.get('/v1/audits/:uuid', async (ctx) => {
    const p = await principal(ctx);
    const r = await store.get<AuditRecord>(String(ctx.params.uuid));
    if (!r || r.kind !== AUDIT_KIND || (!p.isAdmin && r.ownerAccountUuid !== p.accountUuid)) throw new TStackError('NOT_FOUND', `audit record ${ctx.params.uuid} not found`);
    ctx.body = view(r);
  });
  return router.routes() as Koa.Middleware;
}
