// Controller-side client of the agent protocol. `call(cmd, host, req)` is typed from the
// command declaration. Async commands are sent with X-Task-Id + X-Callback-Url; the result
// arrives at the callback receiver, and the client also polls GET /task/<id> so that a lost
// callback, an agent that died mid-task, or a controller restarted in between all end in a
// definite outcome (or a typed error) within the command's timeout — never a hang.
import { randomUUID, timingSafeEqual } from 'node:crypto';
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { Headers, type AgentLiveness, type TaskResult } from '../../shared/protocol/index.js';
import type { CommandDef, RequestOf, ResponseOf } from '../../shared/protocol/command.js';
import { check, validate } from '../../shared/protocol/schema.js';
import { AGENT_POOL_IDLE_MS, Transport, type Reply } from './transport.js';

const log = logger('agent-client');

export interface AgentEndpoint {
  /** Base URL of the agent, e.g. http://10.0.0.5:7070 */
  url: string;
  token: string;
  /**
   * Re-read the endpoint (e.g. from the inventory). Called when the agent answers 401 while a
   * task is awaited: a re-deployed agent has a new token and has forgotten the old tasks, so the
   * call can end as TASK_LOST at once instead of waiting out its deadline.
   */
  refresh?: () => Promise<AgentEndpoint>;
}

/**
 * The endpoint as its record says now, when that differs from `host` (a rotated token, a moved
 * agent); undefined when it cannot be re-read or is the same. The result keeps `refresh`.
 */
async function changedEndpoint(host: AgentEndpoint): Promise<AgentEndpoint | undefined> {
  if (!host.refresh) return undefined;
  const fresh = await host.refresh().catch(() => undefined);
  if (!fresh || (fresh.token === host.token && fresh.url === host.url)) return undefined;
  return { ...fresh, refresh: host.refresh };
}

export interface CallOptions {
  /** Stable task id (persist it first to be able to resume after a restart). */
  taskId?: string;
  /** Overall deadline; default: the command's timeout + 10 s. */
  timeoutMs?: number;
  /**
   * The request's JSON text, made by the caller (sent as is, checked as `req` would be): a body
   * whose bulk is the same for many hosts is cut from text serialized once (issue 19: a flat
   * apply's whole DNS set). `req` then only tells observers which form the request has.
   * Several strings are the text in parts, written one after the other (never joined: a big
   * whole set joined and flattened was a fresh large V8 string per host).
   */
  json?: string | readonly string[];
  /**
   * Send once: a connection refused is not tried again 300 and 600 ms later. For the host
   * tracker's pings and connects, whose rounds count the misses (a host that went down is
   * judged in its rounds, not its rounds plus 0.9 s of retries per agent).
   */
  once?: boolean;
}

export interface AgentClientOptions {
  /** Where agents POST results, e.g. http://127.0.0.1:8080/v1/agent-callbacks. Without it async commands run inline. */
  callbackUrl?: string;
  /** How often to re-query GET /task/<id> while waiting (default 3 s). */
  pollIntervalMs?: number;
  /**
   * Check each request against its command's schema before sending (default true: a caller's
   * mistake fails at the call, naming the field). The controller turns it off: the agent checks
   * every request it receives, so a second pass over a big desired state (a 250-NIC flat/apply)
   * only doubles the hot path's cost; a bad request still fails, 400 from the agent, same error.
   */
  checkRequests?: boolean;
  /** Per-HTTP-request timeout for the initial POST and polls (default 15 s). */
  requestTimeoutMs?: number;
  /**
   * Async commands: how long the agent may hold its answer to return a task that finished by
   * then inline, sparing the callback (default 100 ms; 0: always 202 + callback).
   */
  inlineWaitMs?: number;
}

interface Pending {
  host: AgentEndpoint;
  resolve: (r: TaskResult) => void;
}

type Outcome = { kind: 'result'; result: TaskResult } | { kind: 'unknown' } | { kind: 'unreachable'; err: string; unauthorized?: boolean };

export class AgentClient {
  private pending = new Map<string, Pending>();
  /** Callbacks that arrived while no call was waiting (controller restarted): kept a while for resume(). */
  private early = new Map<string, { r: TaskResult; at: number; token: string }>();

  private readonly opts: AgentClientOptions;
  // a host is called every few seconds at 1,000 hosts: keep its connection between the calls
  private readonly http = new Transport({ idleMs: AGENT_POOL_IDLE_MS });

  /**
   * Per agent URL: its last X-Agent-Info (what a ping tells) and when it came. The host tracker
   * skips the ping of an agent that answered a real request since its last round.
   */
  private answers = new Map<string, { text: string; at: number; info?: AgentLiveness }>();

  constructor(opts: AgentClientOptions = {}) {
    this.opts = { ...opts };
  }

  /** What the agent at `url` told with its last command answer, if that came after `since` (epoch ms). */
  answeredSince(url: string, since: number): AgentLiveness | undefined {
    const a = this.answers.get(url);
    if (!a || a.at <= since) return undefined;
    if (!a.info) {
      try {
        const v = JSON.parse(a.text) as Partial<AgentLiveness>;
        if (typeof v.version !== 'string' || typeof v.startedAt !== 'string' || typeof v.bootId !== 'string') return undefined;
        a.info = { version: v.version, startedAt: v.startedAt, bootId: v.bootId };
        if (typeof v.hostUuid === 'string') a.info.hostUuid = v.hostUuid;
      } catch {
        return undefined;
      }
    }
    return a.info;
  }

  /** Note the agent's X-Agent-Info (parsed only when asked for, and only when it changed). */
  private noteAnswer(url: string, res: Reply): void {
    const h = res.headers[Headers.agentInfo];
    if (typeof h !== 'string') return;
    const a = this.answers.get(url);
    if (a && a.text === h) a.at = Date.now();
    else this.answers.set(url, { text: h, at: Date.now() });
  }

  /**
   * Where agents POST results of async commands from now on (known only once the controller
   * listens); undefined: async commands run inline (no callback header). Calls already
   * started keep the URL they were sent with.
   */
  setCallbackUrl(url: string | undefined): void {
    if (url === undefined) {
      delete this.opts.callbackUrl;
      return;
    }
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`callback URL must be http(s): ${url}`);
    this.opts.callbackUrl = url;
  }

  /** The current callback URL, if any. */
  get callbackUrl(): string | undefined {
    return this.opts.callbackUrl;
  }

  async call<C extends CommandDef>(cmd: C, host: AgentEndpoint, req: RequestOf<C>, o: CallOptions = {}): Promise<ResponseOf<C>> {
    if (this.opts.checkRequests !== false) validate(cmd.request, o.json === undefined ? req : JSON.parse(typeof o.json === 'string' ? o.json : o.json.join('')), cmd.name);
    const taskId = o.taskId ?? randomUUID();
    const deadline = Date.now() + (o.timeoutMs ?? cmd.timeoutMs + 10_000);
    const useCallback = cmd.mode === 'async' && this.opts.callbackUrl !== undefined;
    let waiter = useCallback ? this.waitFor(taskId, host) : undefined;
    try {
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        authorization: `Bearer ${host.token}`,
        [Headers.taskId]: taskId,
      };
      if (useCallback) {
        headers[Headers.callbackUrl] = this.opts.callbackUrl!;
        const w = this.opts.inlineWaitMs ?? 100;
        if (w > 0) headers[Headers.inlineWaitMs] = String(w);
      }
      // The initial POST is retried only when the connection was never made (the request cannot
      // have reached the agent). A connection that broke after sending is settled by asking
      // GET /task/<id> instead: re-sending could run a task twice on a restarted agent.
      let res: Reply | undefined;
      let lastErr = '';
      const body = o.json ?? JSON.stringify(req);
      for (let refreshed = false; ; refreshed = true) {
        res = undefined;
        for (let attempt = 0, tries = o.once ? 1 : 3; attempt < tries && Date.now() < deadline; attempt++) {
          try {
            res = await this.http.send(host.url + cmd.path, {
              method: 'POST',
              headers,
              body,
              timeoutMs: Math.max(1, Math.min(useCallback ? this.reqTimeout() : Infinity, deadline - Date.now())),
            });
            break;
          } catch (e) {
            lastErr = errText(e);
            if (!NOT_CONNECTED.has(lastErr)) break;
            await sleep(300 * (attempt + 1));
          }
        }
        // refused by the agent's auth (a token rotated by a reconnect) or never connected (an agent
        // moved): nothing ran, so the request is sent once more if the endpoint's record (a caller
        // may hold one read a while ago) says otherwise now
        const notRun = res ? res.status === 401 : NOT_CONNECTED.has(lastErr);
        if (!notRun || refreshed) break;
        const fresh = await changedEndpoint(host);
        if (!fresh) break;
        log.info({ taskId, url: fresh.url }, 'agent credentials changed before the request ran; sending it with the new ones');
        host = fresh;
        headers.authorization = `Bearer ${host.token}`;
        if (waiter) {
          waiter.cancel();
          waiter = this.waitFor(taskId, host);
        }
      }
      // a call sent once that never connected is not asked after either: the agent cannot have it
      if (!res && !(o.once && NOT_CONNECTED.has(lastErr))) {
        const o2 = await this.query(host, taskId, Math.max(1_000, deadline - Date.now()));
        if (o2.kind === 'result' && o2.result.state !== 'running') return this.unwrap(cmd, o2.result);
        // the agent has it and is still working: wait for the outcome like an async call
        if (o2.kind === 'result') return this.unwrap(cmd, await this.wait(cmd, host, taskId, waiter?.promise ?? NEVER, deadline));
        if (o2.kind === 'unknown' && !NOT_CONNECTED.has(lastErr)) {
          throw new TStackError('TASK_LOST', `${cmd.name}: the connection to agent ${host.url} broke (${lastErr}) and it does not know task ${taskId} (it restarted); the operation's outcome must be checked on the host`, { taskId, url: host.url });
        }
      }
      if (!res) {
        const timedOut = /timeout/i.test(lastErr);
        throw new TStackError(timedOut ? 'TIMEOUT' : 'AGENT_UNREACHABLE', `${cmd.name}: agent ${host.url} ${timedOut ? 'did not answer in time' : 'unreachable'}: ${lastErr}`, { taskId, url: host.url });
      }
      this.noteAnswer(host.url, res);
      const answer = parseObject(res.text);
      if (res.status === 202 && waiter) {
        return this.unwrap(cmd, await this.wait(cmd, host, taskId, waiter.promise, deadline));
      }
      if (res.status >= 200 && res.status < 300) return this.unwrapBody(cmd, answer);
      throw errorFromBody(answer, res.status, cmd.name, taskId);
    } finally {
      waiter?.cancel();
    }
  }

  /** After a controller restart: learn the outcome of a task sent before it. */
  async resume<C extends CommandDef>(cmd: C, host: AgentEndpoint, taskId: string, timeoutMs = cmd.timeoutMs + 10_000): Promise<ResponseOf<C>> {
    const waiter = this.waitFor(taskId, host);
    try {
      return this.unwrap(cmd, await this.wait(cmd, host, taskId, waiter.promise, Date.now() + timeoutMs, true));
    } finally {
      waiter.cancel();
    }
  }

  private waitFor(taskId: string, host: AgentEndpoint): { promise: Promise<TaskResult>; cancel: () => void } {
    let resolve!: (r: TaskResult) => void;
    const promise = new Promise<TaskResult>((r) => (resolve = r));
    const early = this.early.get(taskId);
    if (early) {
      this.early.delete(taskId);
      // only trust a callback that was signed with this agent's token
      if (tokenMatches(early.token, host.token)) resolve(early.r);
      else log.warn({ taskId }, 'ignoring an early callback with a wrong agent token');
    }
    this.pending.set(taskId, { host, resolve });
    return { promise, cancel: () => this.pending.delete(taskId) };
  }

  /** Wait for the callback, polling GET /task/<id> meanwhile and once more at the deadline. */
  private async wait(cmd: CommandDef, host: AgentEndpoint, taskId: string, callback: Promise<TaskResult>, deadline: number, resuming = false): Promise<TaskResult> {
    const poll = this.opts.pollIntervalMs ?? 3_000;
    let unreachableSince: number | undefined;
    let checkNow = resuming;
    for (;;) {
      const left = deadline - Date.now();
      if (!checkNow) {
        const r = await Promise.race([callback, sleep(Math.max(0, Math.min(poll, left))).then(() => undefined)]);
        if (r) return r;
      }
      checkNow = false;
      const o = await this.query(host, taskId, Math.max(1_000, deadline - Date.now()));
      if (o.kind === 'result' && o.result.state !== 'running') return o.result;
      if (o.kind === 'unreachable' && o.unauthorized) {
        const fresh = await changedEndpoint(host);
        if (fresh) {
          log.info({ taskId, url: fresh.url }, 'agent credentials changed while waiting; asking again with the new ones');
          host = fresh;
          checkNow = true;
          continue;
        }
      }
      if (o.kind === 'unknown') {
        throw new TStackError('TASK_LOST', `${cmd.name}: agent ${host.url} no longer knows task ${taskId} (it restarted mid-task); the operation's outcome must be checked on the host`, { taskId, url: host.url });
      }
      if (o.kind === 'unreachable') unreachableSince ??= Date.now();
      else unreachableSince = undefined;
      if (Date.now() >= deadline) {
        if (o.kind === 'unreachable') {
          throw new TStackError('AGENT_UNREACHABLE', `${cmd.name}: agent ${host.url} stopped answering during task ${taskId} (${o.err})`, { taskId, url: host.url });
        }
        throw new TStackError('TIMEOUT', `${cmd.name}: no result from ${host.url} within the deadline (task ${taskId} still running)`, { taskId, url: host.url });
      }
    }
  }

  private async query(host: AgentEndpoint, taskId: string, maxMs = Infinity): Promise<Outcome> {
    try {
      const res = await this.http.send(`${host.url}/task/${encodeURIComponent(taskId)}`, {
        method: 'GET',
        headers: { authorization: `Bearer ${host.token}` },
        timeoutMs: Math.min(this.reqTimeout(), maxMs),
      });
      if (res.status === 404) return { kind: 'unknown' };
      if (res.status === 401) return { kind: 'unreachable', err: 'HTTP 401 (agent token changed?)', unauthorized: true };
      if (res.status < 200 || res.status >= 300) return { kind: 'unreachable', err: `HTTP ${res.status}` };
      return { kind: 'result', result: JSON.parse(res.text) as TaskResult };
    } catch (e) {
      return { kind: 'unreachable', err: errText(e) };
    }
  }

  private unwrap<C extends CommandDef>(cmd: C, r: TaskResult): ResponseOf<C> {
    if (r.success && r.state !== 'failed') return this.unwrapBody(cmd, (r.result ?? {}) as Record<string, unknown>);
    const e = r.error ?? { code: 'AGENT_ERROR', message: 'agent reported failure without an error' };
    throw new TStackError(e.code, e.message, { ...(e.details ?? {}), taskId: r.taskId, command: cmd.name });
  }

  private unwrapBody<C extends CommandDef>(cmd: C, body: Record<string, unknown>): ResponseOf<C> {
    const errs = check(cmd.response, body);
    if (errs.length) {
      throw new TStackError('AGENT_ERROR', `${cmd.name}: agent answered with an unexpected response (${errs[0]!.field}: ${errs[0]!.reason}); agent and controller versions may differ`, { errors: errs.slice(0, 5) });
    }
    return body as ResponseOf<C>;
  }

  /** Koa handler for POST <callbackUrl>. */
  callbackHandler(): Koa.Middleware {
    return (ctx) => {
      const b = (ctx.request as { body?: Record<string, unknown> }).body ?? {};
      const taskId = typeof b.taskId === 'string' ? b.taskId : ctx.get(Headers.taskId);
      if (!taskId) throw new TStackError('INVALID_ARGUMENT', 'callback: taskId missing', { field: 'taskId' });
      const r: TaskResult = {
        taskId,
        command: String(b.command ?? ''),
        state: b.success ? 'succeeded' : 'failed',
        success: b.success === true,
        startedAt: '',
        result: b.result,
      };
      if (b.error) r.error = b.error as TaskResult['error'];
      const p = this.pending.get(taskId);
      const given = ctx.get('authorization').replace(/^Bearer /, '');
      if (p) {
        if (!tokenMatches(given, p.host.token)) {
          throw new TStackError('UNAUTHORIZED', 'callback: wrong agent token');
        }
        p.resolve(r);
      } else {
        // nobody waits (restart, or already timed out): keep it briefly for resume(); the agent
        // keeps it too, at GET /task/<id>, which is what resume() trusts.
        if (!given) throw new TStackError('UNAUTHORIZED', 'callback: missing agent token');
        this.early.set(taskId, { r, at: Date.now(), token: given });
        this.gcEarly();
        log.debug({ taskId }, 'callback for a task nobody waits for');
      }
      ctx.status = 204;
    };
  }

  private gcEarly(): void {
    const cutoff = Date.now() - 10 * 60_000;
    for (const [k, v] of this.early) if (v.at < cutoff) this.early.delete(k);
  }

  private reqTimeout(): number {
    return this.opts.requestTimeoutMs ?? 15_000;
  }
}

function tokenMatches(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

function errorFromBody(body: Record<string, unknown>, status: number, command: string, taskId: string): TStackError {
  if (typeof body.code === 'string' && typeof body.message === 'string') {
    return new TStackError(body.code, body.message, { ...((body.details as Record<string, unknown>) ?? {}), taskId, command, httpStatus: status });
  }
  return new TStackError('AGENT_ERROR', `${command}: agent answered HTTP ${status}`, { taskId, command, httpStatus: status });
}

/** Errors that mean the TCP connection was never established. */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNECTTIMEOUT', 'EADDRNOTAVAIL']);
const NEVER = new Promise<TaskResult>(() => undefined);

/** The error's code (what NOT_CONNECTED and the timeout test look at), else its message. */
function errText(e: unknown): string {
  const err = e as Error & { code?: string };
  if (err.code === 'ETIMEOUT') return `ETIMEOUT (${err.message})`;
  return err.code ?? err.message ?? String(e);
}

/** A JSON object body, or {} for anything else (an empty or non-JSON answer). */
function parseObject(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
