// The controller's Koa application: /health, /metrics, /v1 (sessions, collections, actions,
// jobs, events, OpenAPI, agent callbacks and events). Errors are always {code, message,
// field?} with a 4xx for anything the caller did wrong; a stack trace never leaves.
import Koa from 'koa';
import Router from '@koa/router';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TStackError, errorInfo, httpStatusOf } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { createHttpMetrics, type HttpMetrics } from '../../shared/agent/metrics.js';
import { LOWER_UUID_RE, validate } from '../../shared/protocol/schema.js';
import { jsonBody } from '../../shared/http/body.js';
import { WorkGate, allowedMethods, concurrencyLimit } from '../../shared/http/limits.js';
import type { Query, Resource, ViewPage } from '../store/types.js';
import { SessionCreate, type Principal } from '../auth/accounts.js';
import { registerAccounts } from '../auth/collection.js';
import { HMAC_DATE_HEADER, isSignedAuthorization } from '../auth/hmac.js';
import { requestPrincipal } from '../auth/request.js';
import { ACCEPT_WRITES, jobView, type AcceptWrites, type JobContext, type JobView, type StartOptions } from '../jobs/jobs.js';
import { sseHandler } from '../events/sse.js';
import { declaredFields, parseListQuery, project } from './query.js';
import { runQuery } from '../store/query.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { searchResources } from './resources.js';
import { buildOpenApi } from './openapi.js';
import { canUse, canWrite, genericCreate, genericDelete, genericUpdate, getVisible, notFound, planApiDelete, shape, visible } from './crud.js';
import { notServed, registerCollections } from './collections.js';
import { prepareCreate, type PreparedCreate } from '../model/index.js';
import { chain, readListener, readStanceOf, routerClaims, type ReadRoute } from './read-path.js';
import type { CollectionSpec, OpContext, Verb } from './registry.js';
import type { ControllerContext } from '../context.js';

const log = logger('api');

/** The controller's context plus what only the HTTP layer needs. */
export interface ApiDeps extends ControllerContext {
  version: string;
  /** Bearer token that may read /metrics (the controller's --token-file secret). */
  metricsToken?: string;
  /** Run after body parsing, before the routes (the audit recorder, feature modules' own routes). */
  middleware?: Koa.Middleware[];
  /** Requests in progress at once before 503 + Retry-After (default API_MAX_IN_FLIGHT; /health is exempt). */
  maxInFlight?: number;
}

/** Requests the API serves at once (issue 20: beyond it 503 + Retry-After, /health still answers). */
export const API_MAX_IN_FLIGHT = 256;
/** Largest request body, on the wire and decompressed. */
export const API_BODY_LIMIT = 8 * 1024 * 1024;

export interface ApiApp {
  app: Koa;
  metrics: HttpMetrics;
  /**
   * The HTTP listener: API reads through the read path (api/read-path.ts), the rest through the
   * Koa app. Made after every app.use (the web console is added after buildApi).
   */
  listener(): (req: IncomingMessage, res: ServerResponse) => void;
  /** Off: every request goes through Koa (tests compare both ways). */
  readPath: { enabled: boolean; served: number };
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function bodyOf(ctx: Koa.Context): Record<string, unknown> {
  const b = (ctx.request as { body?: unknown }).body;
  if (b === undefined || b === null || (typeof b === 'object' && !Array.isArray(b) && Object.keys(b).length === 0 && !ctx.request.length)) return {};
  if (!isObj(b)) throw new TStackError('INVALID_ARGUMENT', 'request body: expected a JSON object', { field: '(body)' });
  return b;
}

function bearer(ctx: Koa.Context): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
  return m?.[1];
}

/** HTTP status of an error code (shared/errors.ts ERROR_TABLE: one table for every server). */
export const statusOf = httpStatusOf;

function errorBody(err: TStackError): Record<string, unknown> {
  const body: Record<string, unknown> = { code: err.code, kind: err.kind, message: err.message };
  const field = err.details?.field;
  if (typeof field === 'string') body.field = field;
  if (err.details) {
    const { field: _f, ...rest } = err.details;
    if (Object.keys(rest).length) body.details = rest;
  }
  return body;
}

const JOB_FIELDS: ReadonlySet<string> = new Set(['uuid', 'type', 'state', 'progress', 'message', 'result', 'error', 'accountUuid', 'resourceUuid', 'createDate', 'lastOpDate', 'finishDate']);

// per create schema: a collection's spec object is rebuilt on every lookup, its schemas are not
const declaredCache = new WeakMap<object, ReadonlySet<string>>();
/** The fields list requests on this collection may name (q, sort, fields). */
function fieldsOf(spec: CollectionSpec): ReadonlySet<string> {
  let f = declaredCache.get(spec.createSchema);
  if (!f) {
    const m = spec.model;
    const extra = [...(m?.systemFields ?? []), ...(m?.parentField ? [m.parentField] : [])];
    f = declaredFields([spec.createSchema, spec.updateSchema, spec.viewSchema], extra, [...(spec.hiddenFields ?? []), ...(m?.secretFields ?? [])]);
    declaredCache.set(spec.createSchema, f);
  }
  return f;
}

/**
 * May a list page be the store's view texts as they are? Only when the shaped page would hold
 * exactly them: no `fields=` projection, no hidden field in the kind (the views lack only the
 * internal '_' ones), and every match visible (not a normal account's page of a shared kind,
 * which is filtered here per resource).
 */
export function viewsServe(spec: CollectionSpec, p: Principal, fields: string[] | undefined): boolean {
  return fields === undefined && !spec.hiddenFields?.length && (p.isAdmin || !spec.shared);
}

/** The JSON text of a list page from view texts: what JSON.stringify gives of the shaped page. */
export function viewsBody(v: ViewPage, q: Query, pageLimit: number | undefined): string {
  let n = v.views.length;
  let next: string | undefined;
  if (pageLimit !== undefined && n > pageLimit) {
    n = pageLimit;
    if (pageLimit > 0) next = encodeCursor(q, v.item(pageLimit - 1));
  }
  let s = '{"inventories":[';
  for (let i = 0; i < n; i++) s += i === 0 ? v.views[i] : `,${v.views[i]}`;
  s += ']';
  if (!q.skipTotal) s += `,"total":${JSON.stringify(v.total)}`;
  if (next !== undefined) s += `,"next":${JSON.stringify(next)}`;
  return `${s}}`;
}

export function buildApi(d: ApiDeps): ApiApp {
  const { version: _v, metricsToken: _t, middleware: _m, maxInFlight: _i, ...context } = d;
  registerCollections(d.registry);
  registerAccounts(d.registry);
  const app = new Koa();
  app.proxy = false;
  app.on('error', (err: unknown) => log.debug({ err }, 'connection error'));
  const metrics = createHttpMetrics('controller');
  const router = new Router();

  // errors, metrics, request log
  const logged: Koa.Middleware = async (ctx, next) => {
    const start = process.hrtime.bigint();
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new TStackError('NOT_FOUND', `no such endpoint: ${ctx.method} ${ctx.path}`);
    } catch (e) {
      let err = TStackError.from(e);
      const status = (e as { status?: number; expose?: boolean }).status;
      if (!(e instanceof TStackError) && typeof status === 'number' && status >= 400 && status < 500) {
        // koa/bodyparser/router errors: bad JSON, body too large, method not allowed…
        err = new TStackError('INVALID_ARGUMENT', `bad request: ${(e as Error).message}`, { field: '(body)' });
        ctx.status = 400;
      } else {
        ctx.status = statusOf(err.code);
      }
      if (err.code === 'BUSY' && !ctx.response.get('Retry-After')) ctx.set('Retry-After', '1');
      if (ctx.status >= 500 && err.code === 'INTERNAL') {
        log.error({ err: e, method: ctx.method, path: ctx.path }, 'request failed');
        err = new TStackError('INTERNAL', `internal error while serving ${ctx.method} ${ctx.path}; see the controller log`);
      }
      ctx.body = errorBody(err);
    } finally {
      const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? 'other';
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      metrics.requests.inc({ method: ctx.method, route: String(route), status: String(ctx.status) });
      metrics.duration.observe({ method: ctx.method, route: String(route) }, secs);
      if (ctx.path !== '/health' && ctx.path !== '/metrics') {
        // an access log of changes and failures; successful reads only at debug
        const line = { method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(secs * 1000), account: (ctx.state.principal as Principal | undefined)?.accountName };
        if (ctx.method === 'GET' && ctx.status < 400) log.debug(line, 'request');
        else log.info(line, 'request');
      }
    }
  };
  // one in-flight count for both ways in (Koa and the read path)
  const limit = concurrencyLimit({ max: d.maxInFlight ?? API_MAX_IN_FLIGHT, exempt: (ctx) => ctx.path === '/health' });
  app.use(logged);
  app.use(limit);
  app.use(allowedMethods());
  // a login is tiny: nobody unauthenticated gets to make the server parse megabytes
  app.use(jsonBody({ limit: API_BODY_LIMIT, inflatedLimit: API_BODY_LIMIT, limitFor: (ctx) => (ctx.path === '/v1/sessions' ? 64 * 1024 : undefined) }));
  // an HMAC-signed request (controller/auth/hmac.ts) is verified once, here; the rest of the
  // request (every module's middleware, the routes) sees a bearer token valid for it alone
  app.use(async (ctx, next) => {
    const h = ctx.get('authorization');
    if (!isSignedAuthorization(h)) return next();
    const body = (ctx.state.rawBody as Buffer | undefined) ?? '';
    const token = await d.auth.verifySigned({ authorization: h, method: ctx.method, url: ctx.url, date: ctx.get(HMAC_DATE_HEADER), body });
    ctx.req.headers.authorization = `Bearer ${token}`;
    try {
      await next();
    } finally {
      d.auth.endSigned(token);
    }
  });
  for (const mw of d.middleware ?? []) app.use(mw);
  // the middlewares a read meets (those that check reads) and the paths they serve themselves
  const readLayers: Koa.Middleware[] = [];
  const claimed = new Set<string>();
  let readable = true;
  for (const mw of d.middleware ?? []) {
    const st = readStanceOf(mw);
    if (!st) readable = false;
    else {
      if (st.reads === 'checks') readLayers.push(mw);
      for (const c of st.claims ?? []) claimed.add(c);
    }
  }

  const authenticate: Koa.Middleware = async (ctx, next) => {
    ctx.state.principal = await requestPrincipal(d.auth, ctx.req, bearer(ctx));
    await next();
  };
  const opCtx = (ctx: Koa.Context, job?: JobContext): OpContext => {
    const o: OpContext = { ...context, principal: ctx.state.principal as Principal };
    if (job) o.job = job;
    return o;
  };

  // ---- no session needed
  router.get('/health', async (ctx) => {
    // the inventory must answer (a Redis that went away makes this controller useless)
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([
      d.store.getDoc('controllers', '__health__').then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 2_000))),
    ]);
    clearTimeout(timer);
    ctx.status = ok ? 200 : 503;
    ctx.body = { status: ok ? 'ok' : 'store unavailable', version: d.version, store: d.store.backend };
  });
  router.get('/metrics', async (ctx) => {
    const t = bearer(ctx);
    const tokenOk = t !== undefined && d.metricsToken !== undefined && t.length === d.metricsToken.length && timingSafeEqual(Buffer.from(t), Buffer.from(d.metricsToken));
    if (!tokenOk) {
      const p = await d.auth.authenticate(t);
      if (!p.isAdmin) throw new TStackError('FORBIDDEN', '/metrics needs an admin session or the controller token');
    }
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
  let openapiCache: { n: number; doc: unknown } | undefined;
  router.get('/v1/openapi.json', (ctx) => {
    const n = d.registry.collections().length * 1000 + d.registry.collections().reduce((s, c) => s + d.registry.actions(c.collection).length, 0) * 10 + d.registry.unhandled().length + d.registry.routeDocs().length * 1e6;
    if (!openapiCache || openapiCache.n !== n) openapiCache = { n, doc: buildOpenApi(d.registry, d.version) };
    ctx.body = openapiCache.doc;
  });
  // password checks (scrypt) hold a libuv thread each: two at a time, so logins never take the
  // whole thread pool (zlib, fs, DNS); a flood beyond the queue gets 503 + Retry-After
  const loginGate = new WorkGate(2, 64, 'logins');
  router.post('/v1/sessions', async (ctx) => {
    const b = validate(SessionCreate, bodyOf(ctx), 'log in');
    try {
      ctx.body = await loginGate.run(() => d.auth.login(b.accountName, b.password, b.userName));
    } catch (e) {
      // slow down password guessing a little (and blur timing)
      await new Promise((r) => setTimeout(r, 150 + Math.floor(Math.random() * 150)));
      throw e;
    }
  });
  if (d.agentClient) router.post('/v1/agent-callbacks', d.agentClient.callbackHandler());
  router.post('/v1/agent-events', (ctx) => {
    const n = d.agents.accept(d.bus, bearer(ctx), bodyOf(ctx));
    ctx.body = { accepted: n };
  });

  // ---- session required from here on
  router.delete('/v1/sessions/current', authenticate, async (ctx) => {
    await d.auth.logout(ctx.state.principal as Principal);
    ctx.status = 204;
  });
  router.get(
    '/v1/events',
    authenticate,
    sseHandler(d.bus, 15_000, (p, e) => 'resource' in e && visible(p, e.resource, d.registry.byKind(e.kind), d.auth.adminAccountUuid)),
  );
  router.get('/v1/jobs', authenticate, async (ctx) => {
    // same query language as collections (q=state=Running, sort=-createDate, limit, count…)
    const p = ctx.state.principal as Principal;
    const lp = parseListQuery('job', ctx.query as Record<string, string | string[]>, undefined, JOB_FIELDS);
    const jobs = (await d.jobs.list(p.isAdmin ? undefined : p.accountUuid)).map((j) => ({ ...jobView(j), kind: 'job', name: j.type, ownerAccountUuid: j.accountUuid, tags: [] }) as unknown as Resource);
    const r = runQuery(jobs, lp.query);
    const strip = (j: Resource): Record<string, unknown> => {
      const { kind: _k, name: _n, ownerAccountUuid: _o, tags: _t, ...rest } = j;
      return rest;
    };
    ctx.body = lp.count ? { total: r.total } : { inventories: r.items.map((j) => project(strip(j), lp.fields)), total: r.total };
  });
  router.get('/v1/jobs/:uuid', authenticate, async (ctx) => {
    const p = ctx.state.principal as Principal;
    const j = await d.jobs.get(String(ctx.params.uuid));
    if (!j || (!p.isAdmin && j.accountUuid !== p.accountUuid)) throw new TStackError('NOT_FOUND', `job ${ctx.params.uuid} not found`);
    ctx.body = jobView(j);
  });

  const specOf = (ctx: Koa.Context): CollectionSpec => {
    const s = d.registry.collection(String(ctx.params.collection));
    if (!s) throw new TStackError('NOT_FOUND', `no such collection: /v1/${ctx.params.collection}`);
    return s;
  };
  const requireVerb = (ctx: Koa.Context, spec: CollectionSpec, verb: Verb): void => {
    if (d.registry.isAdminOnly(spec, verb) && !(ctx.state.principal as Principal).isAdmin) {
      throw new TStackError('FORBIDDEN', `only the admin account may ${verb} ${spec.collection}`);
    }
  };
  const requireOwner = (ctx: Koa.Context, spec: CollectionSpec, r: Resource): void => {
    if (!canWrite(ctx.state.principal as Principal, r)) throw new TStackError('FORBIDDEN', `${spec.kind} ${r.uuid} is shared by the admin and read-only to your account`);
  };
  const out = (spec: CollectionSpec | undefined, v: unknown): unknown => {
    if (isObj(v) && typeof v.uuid === 'string' && typeof v.kind === 'string') return shape(spec ?? d.registry.byKind(v.kind), v as Resource);
    return v;
  };

  /**
   * Run an operation: inline (status `okStatus`), or as a job when `long`: 202 + location,
   * or with ?wait=true 200 with the result / the job's error with its status.
   */
  const operate = async (ctx: Koa.Context, spec: CollectionSpec, o: { long?: boolean; type: string; resourceUuid?: string; okStatus: number; context?: Record<string, unknown>; requestKey?: string }, fn: (oc: OpContext) => Promise<unknown>): Promise<void> => {
    if (!o.long) {
      const r = await fn(opCtx(ctx));
      ctx.status = o.okStatus;
      ctx.body = out(spec, r) ?? {};
      return;
    }
    const p = ctx.state.principal as Principal;
    const start: StartOptions = { type: o.type, accountUuid: p.accountUuid };
    if (o.resourceUuid) start.resourceUuid = o.resourceUuid;
    if (o.context) start.context = o.context;
    if (o.requestKey) start.requestKey = o.requestKey;
    // answered 202 once the job is stored: what records the request (the audit middleware's
    // record) is written with the job's doc, one commit (issue 19)
    const accepted = ctx.state[ACCEPT_WRITES] as AcceptWrites | undefined;
    if (accepted && ctx.query.wait !== 'true') start.writes = accepted;
    const job = await d.jobs.start(start, async (jc) => out(spec, await fn(opCtx(ctx, jc))));
    await answerJob(ctx, job);
  };

  /** A long operation's answer: 202 + its job, or with ?wait=true its result or error. */
  const answerJob = async (ctx: Koa.Context, job: JobView): Promise<void> => {
    if (ctx.query.wait === 'true') {
      const j = await d.jobs.wait(job.uuid);
      if (j?.state === 'Succeeded') {
        ctx.status = 200;
        ctx.body = j.result ?? {};
        return;
      }
      if (j?.state === 'Failed' && j.error) {
        ctx.status = statusOf(j.error.code);
        ctx.body = { ...j.error, kind: errorInfo(j.error.code).kind, jobUuid: j.uuid };
        return;
      }
    }
    ctx.status = 202;
    ctx.set('Location', `/v1/jobs/${job.uuid}`);
    ctx.body = { jobUuid: job.uuid, location: `/v1/jobs/${job.uuid}`, ...(job.repeated ? { repeated: true } : {}) };
  };

  // user tags (and names) across kinds: controller/api/resources.ts
  router.get('/v1/resources', authenticate, async (ctx) => {
    ctx.body = await searchResources({ store: d.store, registry: d.registry, adminAccountUuid: d.auth.adminAccountUuid }, ctx.state.principal as Principal, ctx.query as Record<string, string | string[]>);
  });
  const list = async (ctx: Koa.Context): Promise<void> => {
    const spec = specOf(ctx);
    const p = ctx.state.principal as Principal;
    const lp = parseListQuery(spec.kind, ctx.query as Record<string, string | string[]>, spec.viewSchema ?? spec.createSchema, fieldsOf(spec), { cursors: true });
    for (const f of lp.query.filters ?? []) if (f.field.startsWith('_') || spec.hiddenFields?.includes(f.field)) throw new TStackError('INVALID_ARGUMENT', `q: cannot filter on ${f.field}`, { field: 'q' });
    if (!p.isAdmin) {
      if (spec.shared) lp.query.filters = [...(lp.query.filters ?? []), { field: 'ownerAccountUuid', op: '?=', value: [p.accountUuid, d.auth.adminAccountUuid] }];
      else lp.query.ownerAccountUuid = p.accountUuid;
    }
    // a cursor page starts after the cursor's item and is not counted (the count costs every match)
    if (lp.cursor !== undefined) {
      lp.query.after = decodeCursor(lp.cursor, lp.query);
      lp.query.skipTotal = true;
    }
    if (lp.count) lp.query.limit = 0;
    // one item more than asked tells whether a next page exists
    const pageLimit = lp.query.limit;
    if (!lp.count && pageLimit !== undefined) lp.query.limit = pageLimit + 1;
    // the stored view texts as they are (issue 19: no parse, shape and stringify of the page)
    if (!lp.count && d.store.listViews && viewsServe(spec, p, lp.fields)) {
      const v = await d.store.listViews(lp.query);
      ctx.set('Content-Type', 'application/json; charset=utf-8');
      ctx.body = viewsBody(v, lp.query, pageLimit);
      return;
    }
    const { limit: _l, start: _s, ...unpaged } = lp.query;
    let r = await d.store.list(!p.isAdmin && spec.shared ? unpaged : lp.query);
    if (!p.isAdmin && spec.shared) {
      // the admin's resources shared with this account only (sharing is a per-resource choice)
      const seen = r.items.filter((i) => visible(p, i, spec, d.auth.adminAccountUuid));
      const start = lp.query.start ?? 0;
      r = { items: lp.query.limit === undefined ? seen.slice(start) : seen.slice(start, start + lp.query.limit), total: lp.query.skipTotal ? -1 : seen.length };
    }
    if (lp.count) {
      ctx.body = { total: r.total };
      return;
    }
    let next: string | undefined;
    if (pageLimit !== undefined && r.items.length > pageLimit) {
      r.items = r.items.slice(0, pageLimit);
      if (pageLimit > 0) next = encodeCursor(lp.query, r.items[pageLimit - 1]!);
    }
    const body: Record<string, unknown> = { inventories: r.items.map((i) => project(shape(spec, i), lp.fields)) };
    if (!lp.query.skipTotal) body.total = r.total;
    if (next !== undefined) body.next = next;
    // said here, koa does not look the type up for every page
    ctx.set('Content-Type', 'application/json; charset=utf-8');
    ctx.body = body;
  };
  const getOne = async (ctx: Koa.Context): Promise<void> => {
    const spec = specOf(ctx);
    const r = await getVisible(opCtx(ctx), spec, String(ctx.params.uuid));
    const { fields } = parseListQuery(spec.kind, typeof ctx.query.fields === 'string' ? { fields: ctx.query.fields } : {}, undefined, fieldsOf(spec));
    ctx.body = project(shape(spec, r), fields);
  };
  router.get('/v1/:collection', authenticate, list);
  router.get('/v1/:collection/:uuid', authenticate, getOne);
  router.post('/v1/:collection', authenticate, async (ctx) => {
    const spec = specOf(ctx);
    if (spec.noCreate) throw new TStackError('METHOD_NOT_ALLOWED', `${spec.collection} are not created directly`);
    if (!d.registry.canCreate(spec)) throw notServed(`creating ${spec.collection}`);
    requireVerb(ctx, spec, 'create');
    const resumable = spec.create?.long === true && spec.create.resumable === true;
    // ZStack's resourceUuid: the client names the new resource, and sending the request again
    // (no answer came: its controller died) answers the first one's job instead of a second create
    const { resourceUuid, ...rest } = bodyOf(ctx) as Record<string, unknown>;
    if (resourceUuid !== undefined) {
      if (!resumable) throw new TStackError('INVALID_ARGUMENT', `resourceUuid: not taken when creating ${spec.collection}`, { field: 'resourceUuid' });
      if (typeof resourceUuid !== 'string' || !LOWER_UUID_RE.test(resourceUuid)) throw new TStackError('INVALID_ARGUMENT', 'resourceUuid: expected a lowercase UUID', { field: 'resourceUuid' });
    }
    const body = validate(spec.createSchema, rest, `create ${spec.kind}`) as Record<string, unknown>;
    const newUuid = resumable ? ((resourceUuid as string | undefined) ?? randomUUID()) : undefined;
    const requestKey = resourceUuid === undefined ? undefined : `${(ctx.state.principal as Principal).accountUuid}/${spec.collection}/${resourceUuid as string}`;
    if (requestKey !== undefined && (await d.store.get(resourceUuid as string))) {
      // made already: by this request (its job answers), or the uuid is another resource's
      const prior = await d.jobs.forRequest(requestKey);
      if (!prior) throw new TStackError('CONFLICT', `resourceUuid: ${resourceUuid as string} names an existing resource`, { field: 'resourceUuid' });
      await answerJob(ctx, { ...prior, repeated: true });
      return;
    }
    let prepared: PreparedCreate | undefined;
    if (spec.model && (spec.create?.long || !spec.create)) {
      // check the model's rules and references now: a bad body is a 400 at once, not a failed job
      const oc = opCtx(ctx);
      prepared = await prepareCreate(d.store, spec.model, body, { ...(newUuid ? { uuid: newUuid } : {}), ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => canUse(oc, r) });
    }
    if (resumable) {
      // the job carries what another controller needs to finish it (api/resume.ts)
      const { sessionId: _s, ...principal } = ctx.state.principal as Principal;
      const create = spec.create!;
      await operate(ctx, spec, { long: true, type: `${spec.collection}.create`, resourceUuid: newUuid, okStatus: 201, context: { body, principal }, ...(requestKey ? { requestKey } : {}) }, (oc) => create.run(body, { ...oc, newUuid, ...(prepared ? { prepared } : {}) }));
      return;
    }
    await operate(ctx, spec, { long: spec.create?.long === true, type: `${spec.collection}.create`, okStatus: 201 }, (oc) => (spec.create ? spec.create.run(body, oc) : genericCreate(spec, body, oc)));
  });
  const update = async (ctx: Koa.Context): Promise<void> => {
    const spec = specOf(ctx);
    const oc = opCtx(ctx);
    const r = await getVisible(oc, spec, String(ctx.params.uuid));
    requireVerb(ctx, spec, 'update');
    requireOwner(ctx, spec, r);
    const body = validate(spec.updateSchema, bodyOf(ctx), `update ${spec.kind}`) as Record<string, unknown>;
    await operate(ctx, spec, { long: spec.update?.long === true, type: `${spec.collection}.update`, resourceUuid: r.uuid, okStatus: 200 }, (c) => (spec.update ? spec.update.run(r, body, c) : genericUpdate(spec, r, body, c)));
  };
  router.put('/v1/:collection/:uuid', authenticate, update);
  router.patch('/v1/:collection/:uuid', authenticate, update);
  router.delete('/v1/:collection/:uuid', authenticate, async (ctx) => {
    const spec = specOf(ctx);
    const r = await getVisible(opCtx(ctx), spec, String(ctx.params.uuid));
    if (spec.deleteMode === 'none') throw new TStackError('METHOD_NOT_ALLOWED', `${spec.collection} are not deleted`);
    if (!d.registry.canDelete(spec)) throw notServed(`deleting ${spec.collection}`);
    requireVerb(ctx, spec, 'delete');
    requireOwner(ctx, spec, r);
    const q = Object.fromEntries(Object.entries(ctx.query).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
    // the cascade rules refuse early (409 naming the dependents, ownership checked) also for
    // deletes served by a module (a host with VMs on it…), before any job starts
    if (spec.remove && !spec.remove.deletesDependents) await planApiDelete(r, q, opCtx(ctx), { blockersOnly: true });
    const o: Parameters<typeof operate>[2] = { long: spec.remove?.long === true, type: `${spec.collection}.delete`, resourceUuid: r.uuid, okStatus: 200 };
    if (spec.remove?.long && spec.remove.resumable) {
      // as an action's: what another controller needs to run it if its flow never started (api/resume.ts)
      const { sessionId: _s, ...principal } = ctx.state.principal as Principal;
      o.context = { params: q, principal };
    }
    await operate(ctx, spec, o, (c) => (spec.remove ? spec.remove.run(r, q, c) : genericDelete(spec, r, c, q)));
  });
  router.post('/v1/:collection/:uuid/actions', authenticate, async (ctx) => {
    const spec = specOf(ctx);
    const r = await getVisible(opCtx(ctx), spec, String(ctx.params.uuid));
    const body = bodyOf(ctx);
    const names = Object.keys(body);
    const known = d.registry.actions(spec.collection).map((a) => a.name);
    if (names.length !== 1) throw new TStackError('INVALID_ARGUMENT', `action body: expected exactly one of ${known.join(', ') || '(no actions)'} as the only key, e.g. {"${known[0] ?? 'action'}": {}}`, { field: '(body)' });
    const name = names[0]!;
    const a = d.registry.action(spec.collection, name);
    // a declared action nobody handles yet is refused like an unknown one (and not advertised)
    const run = a?.run;
    if (!a || !run) throw new TStackError('INVALID_ARGUMENT', `${name}: ${a ? 'not available' : 'unknown action'} on ${spec.collection} (known: ${known.join(', ') || 'none'})`, { field: name });
    if ((a.adminOnly || d.registry.isAdminOnly(spec, 'update')) && !(ctx.state.principal as Principal).isAdmin) throw new TStackError('FORBIDDEN', `only the admin account may ${name} ${spec.collection}`);
    requireOwner(ctx, spec, r);
    let params: Record<string, unknown>;
    try {
      params = validate(a.schema, body[name] ?? {}, name) as Record<string, unknown>;
    } catch (e) {
      // name fields inside the action's object as "<action>.<field>"
      if (e instanceof TStackError && typeof e.details?.field === 'string') {
        const f = e.details.field === '(body)' ? name : `${name}.${e.details.field}`;
        throw new TStackError(e.code, e.message, { ...e.details, field: f });
      }
      throw e;
    }
    const o: Parameters<typeof operate>[2] = { long: a.long === true, type: `${spec.collection}.${name}`, resourceUuid: r.uuid, okStatus: 200 };
    let newUuid: string | undefined;
    if (a.long && a.resumable) {
      // the job carries what another controller needs to run it if its flow never started (api/resume.ts)
      const { sessionId: _s, ...principal } = ctx.state.principal as Principal;
      o.context = { params, principal };
      if (a.newUuid) o.context.newUuid = newUuid = randomUUID();
    }
    await operate(ctx, spec, o, (c) => run(r, params, newUuid ? { ...c, newUuid } : c));
  });

  app.use(router.routes());

  // the read path (api/read-path.ts): the layers above a GET of a collection or resource meets
  // through Koa (the others pass it on untouched: allowedMethods, jsonBody and the HMAC layer
  // for unsigned requests without a body to read), on a plain context
  const own = routerClaims(router as never, (path) => path.startsWith('/v1/:collection'));
  if (!own) readable = false;
  for (const c of own ?? []) claimed.add(c);
  const readHandlers: Record<ReadRoute, (ctx: Koa.Context) => Promise<void>> = { '/v1/:collection': list, '/v1/:collection/:uuid': getOne };
  const readPath = { enabled: readable, served: 0 };
  const layers = (ctx: Koa.Context): Promise<void> =>
    logged(ctx, () => limit(ctx, () => chain(ctx, readLayers, () => authenticate(ctx, () => readHandlers[(ctx as unknown as { _matchedRoute: ReadRoute })._matchedRoute](ctx))))) as Promise<void>;
  const listener = (): ((req: IncomingMessage, res: ServerResponse) => void) =>
    readListener({
      koa: app.callback(),
      served: (c) => !claimed.has(c) && d.registry.collection(c) !== undefined,
      layers,
      enabled: () => readPath.enabled,
      onServed: () => readPath.served++,
      onError: (e) => log.error({ err: e }, 'read request failed outside the error layer'),
    });
  return { app, metrics, listener, readPath };
}

export { visible, notFound };
