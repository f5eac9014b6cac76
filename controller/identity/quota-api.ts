// The quota gate and API. Every create (POST /v1/<collection>) and every action that adds
// usage (a VM start, a clone, a snapshot, a resize) passes this middleware before its route
// does any work: a normal account's request that would exceed a quota is refused there with
// 409 QUOTA_EXCEEDED, and nothing is created. GET /v1/quotas lists limits and usage;
// the admin changes one with accounts/<uuid>/actions {updateQuota: {name, value}}.
import type Koa from 'koa';
import { Type } from '@sinclair/typebox';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { Obj, validate } from '../../shared/protocol/schema.js';
import type { AuthService, Principal } from '../auth/accounts.js';
import { requestPrincipal } from '../auth/request.js';
import type { ApiRegistry } from '../api/registry.js';
import type { JobManager } from '../jobs/jobs.js';
import type { InventoryStore } from '../store/types.js';
import { QUOTA_NAMES, chargeOfAction, chargeOfCreate, type Charge } from './quota-defs.js';
import type { QuotaService } from './quotas.js';
import { withReadStance } from '../api/read-path.js';

const log = logger('quotas');

export const UpdateQuota = Obj({
  name: Type.String({ minLength: 1, maxLength: 64, description: `one of ${[...QUOTA_NAMES].join(', ')}` }),
  value: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
});

export interface QuotaApiDeps {
  store: InventoryStore;
  auth: AuthService;
  registry: ApiRegistry;
  jobs: JobManager;
  quotas: QuotaService;
}

const bearer = (ctx: Koa.Context): string | undefined => /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'))?.[1];
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const UUID = '[0-9a-fA-F-]{36}';
const CREATE = /^\/v1\/([a-z0-9-]+)\/?$/;
const ACTION = new RegExp(`^/v1/([a-z0-9-]+)/(${UUID})/actions/?$`);

const valid = (f: () => unknown): boolean => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

async function principalOf(d: QuotaApiDeps, ctx: Koa.Context): Promise<Principal | undefined> {
  try {
    return await requestPrincipal(d.auth, ctx.req, bearer(ctx));
  } catch {
    return undefined; // the route answers 401
  }
}

/** GET /v1/quotas[?q=identityUuid=<account>]: the admin sees any account's, an account its own. */
async function listQuotas(d: QuotaApiDeps, ctx: Koa.Context, p: Principal): Promise<void> {
  const q = typeof ctx.query.q === 'string' ? ctx.query.q : undefined;
  let account = p.accountUuid;
  if (q !== undefined) {
    const m = /^identityUuid=([0-9a-fA-F-]{36})$/.exec(q);
    if (!m) throw new TStackError('INVALID_ARGUMENT', `q: expected identityUuid=<account uuid>, got '${q}'`, { field: 'q' });
    account = m[1]!;
  }
  const a = await d.store.get(account);
  if (!a || a.kind !== 'account' || (!p.isAdmin && account !== p.accountUuid)) throw new TStackError('NOT_FOUND', `account ${account} not found`);
  const inv = a.type === 'SystemAdmin' ? [] : await d.quotas.list(account);
  ctx.body = { inventories: inv, total: inv.length };
}

/** What the request would add, if anything: on the resource itself, or on what it creates. */
async function chargeOfRequest(d: QuotaApiDeps, ctx: Koa.Context, p: Principal): Promise<{ self?: { uuid: string; charge: Charge }; created?: Charge } | undefined> {
  const body = (ctx.request as { body?: unknown }).body;
  if (!isObj(body)) return undefined;
  const c = CREATE.exec(ctx.path);
  if (c) {
    const spec = d.registry.collection(c[1]!);
    // a malformed body is the route's 400, never a quota refusal
    if (!spec || !valid(() => validate(spec.createSchema, body))) return undefined;
    const charge = await chargeOfCreate(spec.kind, body, d.store);
    return charge ? { created: charge } : undefined;
  }
  const a = ACTION.exec(ctx.path);
  if (!a) return undefined;
  const spec = d.registry.collection(a[1]!);
  const r = await d.store.get(a[2]!);
  const names = Object.keys(body);
  if (!spec || !r || r.kind !== spec.kind || r.ownerAccountUuid !== p.accountUuid || names.length !== 1) return undefined;
  const params = body[names[0]!] ?? {};
  const schema = d.registry.action(spec.collection, names[0]!)?.schema;
  if (!schema || !valid(() => validate(schema, params))) return undefined;
  const ac = chargeOfAction(r, names[0]!, isObj(params) ? params : {});
  if (!ac) return undefined;
  const out: { self?: { uuid: string; charge: Charge }; created?: Charge } = {};
  if (ac.self) out.self = { uuid: r.uuid, charge: ac.self };
  if (ac.created) out.created = ac.created;
  return out;
}

export function quotaMiddleware(d: QuotaApiDeps): Koa.Middleware {
  // GET /v1/quotas is its own; other reads pass
  return withReadStance(async (ctx: Koa.Context, next: Koa.Next) => {
    if (ctx.path === '/v1/quotas' && ctx.method === 'GET') {
      const p = await principalOf(d, ctx);
      if (!p) throw new TStackError('UNAUTHORIZED', 'missing session: log in with POST /v1/sessions and send Authorization: Bearer <token>');
      return listQuotas(d, ctx, p);
    }
    if (ctx.method !== 'POST' || !ctx.path.startsWith('/v1/') || ctx.path === '/v1/sessions') return next();
    const p = await principalOf(d, ctx);
    if (!p || p.isAdmin) return next(); // the admin has no quotas
    const ch = await chargeOfRequest(d, ctx, p);
    if (!ch) return next();
    if (ch.self) await d.quotas.admit(p.accountUuid, ch.self.uuid, ch.self.charge);
    const resync = async (): Promise<void> => {
      // a refused or failed action: the resource's holding goes back to what it is
      const r = ch.self && (await d.store.get(ch.self.uuid));
      if (r) await d.quotas.sync(r);
    };
    if (!ch.created) {
      try {
        await next();
      } finally {
        if (ctx.status >= 400) await resync();
      }
      return;
    }
    await d.quotas.inFlight(p.accountUuid, ch.created, async (pending) => {
      let async = false;
      try {
        await next();
        const jobUuid = isObj(ctx.body) && typeof ctx.body.jobUuid === 'string' && ctx.status === 202 ? ctx.body.jobUuid : undefined;
        if (jobUuid) {
          // the job goes on in this flight; its reservation ends when the job does
          async = true;
          void d.jobs
            .wait(jobUuid)
            .then(async (j) => {
              await d.quotas.end(p.accountUuid, pending);
              if (j?.state !== 'Succeeded') await resync();
            })
            .catch((e: unknown) => log.warn({ err: (e as Error).message, jobUuid }, 'ending a quota reservation failed'));
        }
      } finally {
        if (!async) {
          await d.quotas.end(p.accountUuid, pending);
          if (ctx.status >= 400) await resync();
        }
      }
    });
  }, { reads: 'ignores', claims: ['quotas'] });
}

/** accounts/<uuid>/actions {updateQuota: {name, value}} (admin only). */
export function registerQuotaActions(reg: ApiRegistry, quotasOf: (store: InventoryStore) => QuotaService): void {
  if (reg.action('accounts', 'updateQuota')?.run) return;
  reg.registerAction('accounts', 'updateQuota', {
    description: 'set one quota of a normal account (GET /v1/quotas?q=identityUuid=<account> lists them with their usage)',
    schema: UpdateQuota,
    adminOnly: true,
    run: (r, p, oc) => quotasOf(oc.store).update(r.uuid, p.name as string, p.value as number),
  });
}
