// The HTTP server every agent runs (Koa). It owns the protocol mechanics so that an agent
// only writes handlers:
//  - bearer-token auth on everything but /health;
//  - request validation from the command's schema (unknown fields → 400 naming the field);
//  - X-Task-Id + X-Callback-Url → 202 at once, then the result POSTed to the callback with
//    retries; without a callback → 200 inline;
//  - results kept for GET /task/<id>; a repeated task id joins or returns the first run;
//  - per-key serial queues, per-command timeouts, typed errors, request logs, /metrics.
import Koa from 'koa';
import Router from '@koa/router';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TStackError, httpStatusOf } from '../errors.js';
import { logger, type Logger } from '../log.js';
import { PROTOCOL_VERSION, Headers, type AgentLiveness, type TaskResult } from '../protocol/index.js';
import { type CommandDef, type RequestOf, type ResponseOf } from '../protocol/command.js';
import { common } from '../protocol/index.js';
import { validate, check } from '../protocol/schema.js';
import { SerialQueues } from './serial-queue.js';
import { TaskStore } from './task-store.js';
import { EventSink } from './events.js';
import { createHttpMetrics, type HttpMetrics } from './metrics.js';
import { jsonBody } from '../http/body.js';
import { AGENT_KEEP_ALIVE_MS, Transport } from '../http/transport.js';
import { allowedMethods, applyServerLimits, concurrencyLimit, serverOptions } from '../http/limits.js';
import { bootId } from '../sysinfo.js';
import { faultPause } from '../fault-pause.js';
import type { TSchema } from '@sinclair/typebox';

export interface TaskContext {
  taskId: string;
  /** Aborted on timeout; pass it to exec() so programs are killed. */
  signal: AbortSignal;
  log: Logger;
  events: EventSink;
  /**
   * The request body as it arrived (the JSON text, decoded once), for a handler that stores the
   * request whole: it can keep this text instead of serializing the parsed request again.
   */
  body?: string;
}

export type Handler<C> = (req: RequestOf<C>, ctx: TaskContext) => Promise<ResponseOf<C>>;

export interface HandleOptions<C> {
  /** Serial-queue key: operations with the same key run one at a time. */
  key?: (req: RequestOf<C>) => string | undefined;
}

export interface AgentServerOptions {
  agent: string;
  version: string;
  token: string;
  capabilities?: string[];
  /** Hypervisor versions for ping/connect (kvmagent fills them once libvirt answered). */
  hypervisor?: { libvirt?: string; qemu?: string };
  /** How long finished results stay readable at GET /task/<id> (default 15 min). */
  retentionMs?: number;
  /** Per-command timeout overrides (ms), by command name. */
  timeouts?: Record<string, number>;
  /** Callback delivery: attempts and first backoff (default 12 attempts from 250 ms, capped at 30 s). */
  callbackAttempts?: number;
  callbackBackoffMs?: number;
  /** Max JSON body size in bytes, on the wire and decompressed (default 16 MiB). */
  bodyLimit?: number;
  /** Requests in progress at once before 503 + Retry-After (default 256; /health is exempt). */
  maxInFlight?: number;
  /**
   * Runs before every command handler (in its queue slot, under its timeout): the scale
   * simulator injects latency (sleep) and failures (throw) here. `task.signal` is made when read.
   */
  intercept?: (command: string, task: Pick<TaskContext, 'signal'>) => Promise<void>;
  /** Sees every HTTP request (its route label) and, through the returned function, its status at the end: the simulator's traffic counts. */
  observe?: (route: string) => (status: number) => void;
}

/** The longest a client may ask an answer to be held for an inline result (X-Inline-Wait-Ms). */
const MAX_INLINE_WAIT_MS = 1_000;
const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const RESERVED = new Set(['taskId', 'command', 'success', 'error', 'state']);

interface Registered {
  def: CommandDef;
  handler: Handler<CommandDef>;
  key?: (req: unknown) => string | undefined;
}

/**
 * Callbacks go over one keep-alive pool per process (node:http): fetch cost ~2 ms of CPU and
 * often a new connection per callback, which a simulator of 1,000 hosts paid 10,000 times.
 */
const callbackTransport = new Transport({ maxFreeSockets: 128 });

export class AgentServer {
  readonly app = new Koa();
  readonly router = new Router();
  readonly events: EventSink;
  readonly tasks: TaskStore;
  readonly queues = new SerialQueues();
  readonly metrics: HttpMetrics;
  readonly log: Logger;
  hostUuid?: string;
  private commands = new Map<string, Registered>();
  /** Commands by path: a command request is found with one lookup, not by trying every route. */
  private byPath = new Map<string, Registered>();
  private server?: Server;
  private readonly startedAt = new Date().toISOString();
  private readonly tokenBuf: Buffer;
  private readonly parseBody: Koa.Middleware;
  private readonly logged: Koa.Middleware;
  /** One in-flight count for both ways in (Koa and the command path). */
  private readonly limit: Koa.Middleware;
  private readonly commandAuth: Koa.Middleware;

  constructor(readonly opts: AgentServerOptions) {
    this.log = logger(opts.agent);
    this.events = new EventSink(opts.agent);
    this.tasks = new TaskStore(opts.retentionMs);
    this.metrics = createHttpMetrics(opts.agent);
    this.tokenBuf = Buffer.from(opts.token);
    this.app.proxy = false;
    this.logged = this.errorsAndLogging();
    this.limit = concurrencyLimit({ max: opts.maxInFlight ?? 256, exempt: (ctx) => ctx.path === '/health' });
    this.app.use(this.logged);
    this.app.use(this.limit);
    this.app.use(allowedMethods());
    this.router.get('/health', (ctx) => {
      ctx.body = { status: 'ok', agent: opts.agent, version: opts.version };
    });
    this.router.get('/metrics', this.auth(), async (ctx) => {
      ctx.type = this.metrics.registry.contentType;
      ctx.body = await this.metrics.registry.metrics();
    });
    this.router.get('/task/:id', this.auth(), (ctx) => {
      const e = this.tasks.get(String(ctx.params.id));
      if (!e) throw new TStackError('NOT_FOUND', `task ${ctx.params.id} is unknown to this agent (never run, expired, or the agent restarted)`);
      ctx.body = e.result;
    });
    const limit = opts.bodyLimit ?? 16 * 1024 * 1024;
    this.parseBody = jsonBody({ limit, inflatedLimit: limit });
    // a command path is found with one map lookup and never reaches the router: a POST goes
    // straight to its handler, other methods get 405 (OPTIONS 204) with Allow. A router route per
    // command cost a compiled path regexp per command per server (a 1,000-host simulator has
    // 150,000 of them).
    this.commandAuth = this.auth();
    this.app.use((ctx, next) => {
      const reg = this.byPath.get(ctx.path);
      if (!reg) return next();
      if (ctx.method === 'POST') return this.command(ctx, reg);
      ctx.set('Allow', 'POST');
      if (ctx.method === 'OPTIONS') {
        ctx.status = 204;
        return;
      }
      throw new TStackError('METHOD_NOT_ALLOWED', `${ctx.method} is not supported on ${ctx.path} (allowed: POST)`);
    });
    this.app.use(this.router.routes());

    this.handle(common.Ping, async () => this.info());
    this.handle(common.Connect, async (req) => {
      this.hostUuid = req.hostUuid;
      // without an event token the agent keeps signing events with its own token
      this.events.configure(req.controllerUrl, req.eventToken ?? this.opts.token, req.hostUuid);
      this.log.info({ hostUuid: req.hostUuid, controllerUrl: req.controllerUrl }, 'connected to controller');
      return this.info();
    });
    let echoRuns = 0;
    this.handle(
      common.Echo,
      async (req, ctx) => {
        const startedAt = Date.now();
        echoRuns++;
        if (req.delayMs) await sleep(req.delayMs, ctx.signal);
        if (req.fail) throw new TStackError('AGENT_ERROR', `echo asked to fail: ${req.message}`);
        return { message: req.message, runs: echoRuns, startedAt, finishedAt: Date.now() };
      },
      { key: (r) => r.queueKey },
    );
  }

  info(): ResponseOf<typeof common.Ping> {
    const i: ResponseOf<typeof common.Ping> = {
      agent: this.opts.agent,
      version: this.opts.version,
      protocolVersion: PROTOCOL_VERSION,
      capabilities: this.opts.capabilities ?? [],
      bootId: bootId(),
      startedAt: this.startedAt,
    };
    if (this.hostUuid !== undefined) i.hostUuid = this.hostUuid;
    if (this.opts.hypervisor !== undefined) i.hypervisor = { ...this.opts.hypervisor };
    return i;
  }

  /** Register the handler of a declared command. */
  handle<C extends CommandDef>(def: C, handler: Handler<C>, opts: HandleOptions<C> = {}): void {
    if (this.commands.has(def.name)) throw new Error(`command ${def.name} registered twice`);
    const reg: Registered = { def, handler: handler as unknown as Handler<CommandDef> };
    if (opts.key) reg.key = opts.key as (req: unknown) => string | undefined;
    this.commands.set(def.name, reg);
    this.byPath.set(def.path, reg);
  }

  /** A command POST after the errors/log and in-flight layers: token, body, dispatch. */
  private command(ctx: Koa.Context, reg: Registered): Promise<void> {
    // bodies are parsed only after the token was checked
    return this.commandAuth(ctx, async () => {
      try {
        await this.parseBody(ctx, () => this.dispatch(ctx, reg));
      } finally {
        // set when answering (a connect changes hostUuid), on errors too: the agent is alive
        ctx.set(Headers.agentInfo, this.livenessHeader());
      }
    }) as Promise<void>;
  }

  private liveness?: { hostUuid: string | undefined; text: string };

  /** The X-Agent-Info value (made again only when the hostUuid changed). */
  private livenessHeader(): string {
    if (this.liveness?.hostUuid !== this.hostUuid) this.liveness = undefined;
    if (!this.liveness) {
      const l: AgentLiveness = { version: this.opts.version, startedAt: this.startedAt, bootId: bootId() };
      if (this.hostUuid !== undefined) l.hostUuid = this.hostUuid;
      // a header value is Latin-1: anything beyond ASCII (a strange hostUuid) goes escaped
      const text = JSON.stringify(l).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
      this.liveness = { hostUuid: this.hostUuid, text };
    }
    return this.liveness.text;
  }

  /**
   * The HTTP entry point. A command POST (the protocol's hot path: every call a controller
   * makes) runs the same layers as through Koa — errors and request log, in-flight limit,
   * token, bounded body, dispatch — on a plain context, and is answered with one writeHead:
   * Koa's context, delegation and respond were a good part of an agent's CPU per call.
   * Everything else (health, metrics, task results, uploads, other methods) goes through Koa.
   */
  private listener(): (req: IncomingMessage, res: ServerResponse) => void {
    const koa = this.app.callback();
    return (req, res) => {
      const url = req.url ?? '';
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      const reg = req.method === 'POST' ? this.byPath.get(path) : undefined;
      if (!reg) return void koa(req, res);
      const ctx = new CommandContext(req, res, path) as unknown as Koa.Context;
      this.logged(ctx, () => this.limit(ctx, () => this.command(ctx, reg)))
        .then(() => sendJson(ctx as unknown as CommandContext))
        .catch((e: unknown) => {
          this.log.error({ err: e }, 'command request failed outside the error layer');
          if (!res.headersSent) res.writeHead(500);
          res.end();
        });
    };
  }

  private timeoutOf(def: CommandDef): number {
    return this.opts.timeouts?.[def.name] ?? def.timeoutMs;
  }

  private async dispatch(ctx: Koa.Context, reg: Registered): Promise<void> {
    const { def } = reg;
    const req = validate(def.request, (ctx.request as { body?: unknown }).body ?? {}, def.name);
    const taskIdHeader = ctx.get(Headers.taskId);
    if (taskIdHeader && !TASK_ID_RE.test(taskIdHeader)) throw new TStackError('INVALID_ARGUMENT', `header X-Task-Id: bad task id`, { field: 'X-Task-Id' });
    const callbackUrl = ctx.get(Headers.callbackUrl);
    if (callbackUrl && !/^https?:\/\/[^\s]+$/.test(callbackUrl)) throw new TStackError('INVALID_ARGUMENT', 'header X-Callback-Url: must be an http(s) URL', { field: 'X-Callback-Url' });
    const taskId = taskIdHeader || randomUUID();
    ctx.set(Headers.taskId, taskId);
    ctx.state.taskId = taskId;

    const body = (ctx.state as { rawText?: string }).rawText;
    if (def.mode === 'sync') {
      const result = await this.execute(reg, req, taskId, body);
      this.reply(ctx, result);
      return;
    }

    let entry = this.tasks.get(taskId);
    if (entry && entry.result.command !== def.name) {
      throw new TStackError('CONFLICT', `task id ${taskId} was already used for ${entry.result.command}`);
    }
    if (!entry) {
      entry = this.tasks.start(taskId, def.name, () => this.execute(reg, req, taskId, body));
    } else {
      this.log.info({ taskId, command: def.name }, 'repeated task id: joining the first run');
    }
    if (callbackUrl) {
      const waitMs = Math.min(MAX_INLINE_WAIT_MS, Number(ctx.get(Headers.inlineWaitMs)) || 0);
      if (waitMs > 0) {
        // 102 first, before anything else can run: the client then knows the agent has the
        // request, and a connection that breaks during the wait (the agent shutting down) is
        // never taken for a stale pooled one, which it would send again. Skipping it for a task
        // that settles within a few microtasks was tried: an agent closed in those microtasks
        // had the call re-sent to its successor (functional/storage-crash).
        ctx.res.writeProcessing();
        const now = await settledSoon(entry.done);
        if (now) return this.reply(ctx, now);
        let timer: NodeJS.Timeout | undefined;
        const r = await Promise.race([entry.done, new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), waitMs)))]);
        clearTimeout(timer);
        // finished in time: the answer carries the result and no callback follows
        if (r) return this.reply(ctx, r);
      }
      ctx.status = 202;
      ctx.body = { taskId, state: entry.result.state };
      void entry.done.then((r) => this.deliver(callbackUrl, r));
      return;
    }
    this.reply(ctx, await entry.done);
  }

  private reply(ctx: Koa.Context, r: TaskResult): void {
    if (r.success) {
      ctx.status = 200;
      ctx.body = r.result ?? {};
    } else {
      const err = r.error ?? { code: 'INTERNAL', message: 'unknown failure' };
      ctx.status = httpStatusOf(err.code);
      ctx.body = err;
    }
  }

  /** Run a handler in its queue with the command's timeout; never throws. */
  private async execute(reg: Registered, req: unknown, taskId: string, body?: string): Promise<TaskResult> {
    const { def } = reg;
    const startedAt = new Date().toISOString();
    // the child logger and the abort signal are made only when used: most tasks need neither
    let log: Logger | undefined;
    const logOf = (): Logger => (log ??= this.log.child({ taskId, command: def.name }));
    const timeoutMs = this.timeoutOf(def);
    const key = reg.key?.(req);
    let outcome: TaskResult;
    try {
      // The task settles at its timeout even if the handler ignores the abort signal; the
      // queue slot, though, is held until the work really ends, so the next operation on this
      // key never overlaps a timed-out one.
      const result = await new Promise<unknown>((resolve, reject) => {
        void this.queues.run(key, async () => {
          const tctx = new LazyTaskContext(taskId, this.events, logOf, body);
          const timer = setTimeout(() => {
            tctx.abort();
            reject(new TStackError('TIMEOUT', `${def.name} did not finish within ${timeoutMs} ms`, { command: def.name, timeoutMs }));
          }, timeoutMs);
          try {
            if (this.opts.intercept) await this.opts.intercept(def.name, tctx);
            const result = await reg.handler(req as never, tctx);
            faultPause(`${def.name}:done`); // tests only: the work is done, the answer not given
            resolve(result);
          } catch (e) {
            reject(e);
          } finally {
            clearTimeout(timer);
          }
        });
      });
      const errs = check(def.response as TSchema, result);
      if (errs.length) {
        logOf().error({ errs }, 'handler returned a response that violates its schema');
        throw new TStackError('INTERNAL', `${def.name}: agent produced an invalid response (${errs[0]!.field}: ${errs[0]!.reason})`);
      }
      outcome = { taskId, command: def.name, state: 'succeeded', success: true, result, startedAt, finishedAt: new Date().toISOString() };
      this.metrics.tasks.inc({ command: def.name, outcome: 'succeeded' });
    } catch (e) {
      const err = TStackError.from(e);
      if (err.code === 'INTERNAL') logOf().error({ err: e }, 'task failed unexpectedly');
      else logOf().info({ code: err.code, msg: err.message }, 'task failed');
      outcome = { taskId, command: def.name, state: 'failed', success: false, error: err.toJSON(), startedAt, finishedAt: new Date().toISOString() };
      this.metrics.tasks.inc({ command: def.name, outcome: 'failed' });
    }
    return outcome;
  }

  /** POST the result to the callback URL, retrying with exponential backoff. */
  private async deliver(url: string, r: TaskResult): Promise<void> {
    const body: Record<string, unknown> = { taskId: r.taskId, command: r.command, success: r.success === true };
    if (r.success) {
      const res = r.result;
      if (res && typeof res === 'object' && !Array.isArray(res)) {
        for (const [k, v] of Object.entries(res)) if (!RESERVED.has(k)) body[k] = v;
      }
      body.result = res;
    } else body.error = r.error;
    const attempts = this.opts.callbackAttempts ?? 12;
    let delay = this.opts.callbackBackoffMs ?? 250;
    for (let i = 1; i <= attempts; i++) {
      try {
        const res = await callbackTransport.send(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${this.opts.token}`, [Headers.taskId]: r.taskId },
          body: JSON.stringify(body),
          timeoutMs: 10_000,
        });
        const ok = res.status >= 200 && res.status < 300;
        if (ok || (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)) {
          if (!ok) this.log.warn({ taskId: r.taskId, status: res.status }, 'callback refused by controller');
          return;
        }
        throw new Error(`HTTP ${res.status}`);
      } catch (e) {
        this.log.info({ taskId: r.taskId, attempt: i, err: (e as Error).message }, 'callback failed; will retry');
        if (i === attempts) break;
        await new Promise((res) => setTimeout(res, delay).unref());
        delay = Math.min(delay * 2, 30_000);
      }
    }
    this.log.warn({ taskId: r.taskId }, 'callback never delivered; the result stays readable at GET /task/<id>');
  }

  private auth(): Koa.Middleware {
    return async (ctx, next) => {
      const h = ctx.get('authorization');
      const m = /^Bearer (.+)$/.exec(h);
      const given = m ? Buffer.from(m[1]!) : Buffer.alloc(0);
      if (given.length !== this.tokenBuf.length || !timingSafeEqual(given, this.tokenBuf)) {
        throw new TStackError('UNAUTHORIZED', 'missing or wrong bearer token (see the agent token file)');
      }
      await next();
    };
  }

  private errorsAndLogging(): Koa.Middleware {
    return async (ctx, next) => {
      const start = process.hrtime.bigint();
      const route = this.routeLabel(ctx.path);
      const observed = this.opts.observe?.(route);
      this.metrics.inflight.inc({ route });
      try {
        await next();
        if (ctx.status === 404 && ctx.body === undefined) {
          throw new TStackError('NOT_FOUND', `no such endpoint: ${ctx.method} ${ctx.path}`);
        }
      } catch (e) {
        let err = TStackError.from(e);
        const status = (e as { status?: number }).status;
        if (!(e instanceof TStackError) && status && status >= 400 && status < 500) {
          err = new TStackError('INVALID_ARGUMENT', `bad request: ${(e as Error).message}`, { field: '(body)' });
        }
        ctx.status = httpStatusOf(err.code);
        ctx.body = err.toJSON();
        if (ctx.status >= 500 && err.code === 'INTERNAL') this.log.error({ err: e }, 'request failed');
      } finally {
        const secs = Number(process.hrtime.bigint() - start) / 1e9;
        this.metrics.inflight.dec({ route });
        observed?.(ctx.status);
        this.metrics.requests.inc({ method: ctx.method, route, status: String(ctx.status) });
        this.metrics.duration.observe({ method: ctx.method, route }, secs);
        // a line per failed request at info; successful ones at debug (a simulator of 1,000
        // hosts, or a busy host, would spend more on the log line than on the request)
        const level = ctx.status >= 400 ? 'info' : 'debug';
        if (ctx.path !== '/health' && ctx.path !== '/metrics' && this.log.isLevelEnabled(level)) {
          this.log[level]({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(secs * 1000), taskId: ctx.state.taskId }, 'request');
        }
      }
    };
  }

  private routeLabel(path: string): string {
    if (path.startsWith('/task/')) return '/task/:id';
    if (this.byPath.has(path)) return path;
    return ['/health', '/metrics'].includes(path) ? path : 'other';
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server = createServer(serverOptions(), this.listener());
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    // Idle connections stay open well past the controller's pool timeout (AGENT_POOL_IDLE_MS, half
    // of this), so it is always the client that closes them: a server closing one the client just
    // reused failed requests with ECONNRESET under load (event loops late on their idle timers).
    this.server!.keepAliveTimeout = AGENT_KEEP_ALIVE_MS;
    // uploads (image import) stream for long: only the headers are timed tightly
    applyServerLimits(this.server!, { requestTimeoutMs: 300_000 });
    const addr = this.server!.address() as AddressInfo;
    this.log.info({ host: addr.address, port: addr.port }, `${this.opts.agent} listening`);
    return addr;
  }

  async close(): Promise<void> {
    this.tasks.close();
    if (!this.server) return;
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}

/**
 * What the command path uses of a Koa context (method, path, headers in and out, status, body,
 * state, request.body, req, res), without Koa's per-request objects.
 */
class CommandContext {
  readonly method: string;
  status = 404;
  body: unknown;
  readonly state: Record<string, unknown> = {};
  readonly request: { body?: unknown } = {};

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly path: string,
  ) {
    this.method = req.method ?? '';
  }

  get(name: string): string {
    const v = this.req.headers[name.toLowerCase()];
    return v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v;
  }

  set(name: string, value: string): void {
    this.res.setHeader(name, value);
  }
}

/** Answer a command context as Koa answers a JSON body (application/json; charset=utf-8). */
function sendJson(ctx: CommandContext): void {
  const res = ctx.res;
  if (res.writableEnded || res.destroyed) return;
  const buf = Buffer.from(JSON.stringify(ctx.body ?? null));
  res.writeHead(ctx.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length });
  res.end(buf);
}

/** Microtask hops a task may take to settle and be answered without arming the wait timer. */
const SETTLE_HOPS = 32;

/** The promise's value if it settles within SETTLE_HOPS microtasks (no timer needed), else undefined. */
async function settledSoon<T>(p: Promise<T>): Promise<T | undefined> {
  let v: T | undefined;
  let done = false;
  void p.then((x) => {
    v = x;
    done = true;
  });
  for (let i = 0; i < SETTLE_HOPS && !done; i++) await undefined;
  return v;
}

/**
 * A handler's TaskContext whose AbortController and child logger are made on first use: an
 * AbortSignal costs a few µs (and a child logger more) on every command, and most handlers
 * finish without looking at either. A timeout before the signal was asked for yields an
 * already-aborted signal.
 */
class LazyTaskContext implements TaskContext {
  private ac?: AbortController;
  private aborted = false;
  private logger?: Logger;
  body?: string;

  constructor(
    readonly taskId: string,
    readonly events: EventSink,
    private readonly logOf: () => Logger,
    body: string | undefined,
  ) {
    if (body !== undefined) this.body = body;
  }

  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.aborted) this.ac.abort();
    }
    return this.ac.signal;
  }

  get log(): Logger {
    return (this.logger ??= this.logOf());
  }

  abort(): void {
    this.aborted = true;
    this.ac?.abort();
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new TStackError('CANCELLED', 'aborted'));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new TStackError('CANCELLED', 'aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
