// The agent protocol end to end, against real HTTP servers: an AgentServer (in this process,
// and as a separate agent process that can be SIGKILLed) and a controller-side Koa app with the
// AgentClient's callback receiver.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server } from 'node:http';
import Koa from 'koa';
import { AgentServer } from '../../../shared/agent/server.js';
import { AgentClient, type AgentEndpoint } from '../../../controller/agent-client/client.js';
import { common, defineCommand, Obj, PROTOCOL_VERSION, Type } from '../../../shared/protocol/index.js';
import { TStackError } from '../../../shared/errors.js';
import { setLogLevel } from '../../../shared/log.js';
import { useCleanup, type Cleanup } from '../../harness/cleanup.js';
import { freePort, startAgentScript } from '../../harness/agents.js';
import { jsonBody } from '../../../shared/http/body.js';

const ECHO_AGENT = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures/echo-agent.ts');
const TOKEN = 'test-token-0123456789abcdef';

interface CallbackBody {
  taskId: string;
  command: string;
  success: boolean;
  error?: { code: string; message: string };
  result?: Record<string, unknown>;
  [k: string]: unknown;
}

/** A controller stand-in: Koa + bodyparser + the AgentClient's callback receiver. */
// inlineWaitMs 0 by default: these tests are about the callback path, which a fast task skips otherwise
async function startController(cleanup: Cleanup, opts: { failFirst?: number; pollIntervalMs?: number; inlineWaitMs?: number } = {}) {
  const port = await freePort();
  const callbackUrl = `http://127.0.0.1:${port}/v1/agent-callbacks`;
  const client = new AgentClient({ callbackUrl, pollIntervalMs: opts.pollIntervalMs ?? 60_000, requestTimeoutMs: 5_000, inlineWaitMs: opts.inlineWaitMs ?? 0 });
  const received: CallbackBody[] = [];
  let failures = opts.failFirst ?? 0;
  const app = new Koa();
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (e) {
      const err = TStackError.from(e);
      ctx.status = err.code === 'UNAUTHORIZED' ? 401 : 400;
      ctx.body = err.toJSON();
    }
  });
  app.use(jsonBody({ limit: 16 * 1024 * 1024 }));
  const handler = client.callbackHandler();
  app.use(async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/v1/agent-callbacks') return next();
    if (failures > 0) {
      failures--;
      ctx.status = 503;
      return undefined;
    }
    received.push((ctx.request as unknown as { body: CallbackBody }).body);
    return handler(ctx, next);
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s));
  });
  const stop = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  cleanup.add(stop, 'controller stand-in');
  return { client, received, callbackUrl, stop };
}

async function startInProcessAgent(cleanup: Cleanup, opts: Partial<ConstructorParameters<typeof AgentServer>[0]> = {}) {
  const server = new AgentServer({ agent: 'tstack-testagent', version: '0.0.0-test', token: TOKEN, callbackBackoffMs: 50, capabilities: ['echo'], ...opts });
  const addr = await server.listen('127.0.0.1', 0);
  cleanup.add(() => server.close(), 'in-process agent');
  const host: AgentEndpoint = { url: `http://127.0.0.1:${addr.port}`, token: TOKEN };
  return { server, host };
}

async function post(host: AgentEndpoint, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(host.url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${host.token}`, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, any>, headers: res.headers };
}

async function rejectsWithCode(p: Promise<unknown>, code: string | string[]): Promise<TStackError> {
  const codes = Array.isArray(code) ? code : [code];
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TStackError, `expected a TStackError, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `expected ${codes.join('|')}, got ${e.code}: ${e.message}`);
    return e;
  }
  assert.fail(`expected a ${codes.join('|')} error, but the call succeeded`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('foundation: agent protocol over real HTTP', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  before(() => setLogLevel(process.env.TSTACK_LOG_LEVEL ?? 'warn'));

  it('/health answers without auth; everything else needs the bearer token (401)', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const h = await fetch(`${host.url}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(((await h.json()) as { status: string }).status, 'ok');
    const noToken = await fetch(`${host.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"message":"x"}' });
    assert.equal(noToken.status, 401);
    assert.equal(((await noToken.json()) as { code: string }).code, 'UNAUTHORIZED');
    const wrong = await post({ ...host, token: 'wrong-token-wrong-token-xx' }, '/echo', { message: 'x' });
    assert.equal(wrong.status, 401);
    for (const path of ['/metrics', '/task/abc']) {
      assert.equal((await fetch(host.url + path)).status, 401, path);
    }
    const ping = await post(host, '/ping', {});
    assert.equal(ping.status, 200);
    assert.equal(ping.body.protocolVersion, PROTOCOL_VERSION);
    assert.deepEqual(ping.body.capabilities, ['echo']);
  });

  it('a bad request is answered 400 naming the field (wrong type, unknown field, bad JSON, bad task id)', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const wrongType = await post(host, '/echo', { message: 42 });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.body.code, 'INVALID_ARGUMENT');
    assert.equal(wrongType.body.details.field, 'message');
    assert.match(wrongType.body.message, /message/);
    const unknown = await post(host, '/echo', { message: 'x', bogus: true });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.details.field, 'bogus');
    const missing = await post(host, '/echo', {});
    assert.equal(missing.status, 400);
    assert.equal(missing.body.details.field, 'message');
    const badJson = await fetch(`${host.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: '{"message":' });
    assert.equal(badJson.status, 400);
    const badId = await post(host, '/echo', { message: 'x' }, { 'x-task-id': 'bad id with spaces' });
    assert.equal(badId.status, 400);
    assert.equal(badId.body.details.field, 'X-Task-Id');
  });

  it('without a callback URL an async command answers 200 inline; a failure comes back typed', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const client = new AgentClient();
    const r = await client.call(common.Echo, host, { message: 'inline' });
    assert.equal(r.message, 'inline');
    const raw = await post(host, '/echo', { message: 'x' });
    assert.equal(raw.status, 200);
    assert.equal(raw.body.message, 'x');
    const e = await rejectsWithCode(client.call(common.Echo, host, { message: 'nope', fail: true }), 'AGENT_ERROR');
    assert.match(e.message, /nope/);
  });

  it('callback flow: 202 at once, then the result POSTed to the controller, {taskId, command, success, result, ...result}', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const ctl = await startController(cleanup); // polling every 60 s: the result can only come by callback
    const raw = await post(host, '/echo', { message: 'hello', delayMs: 300 }, { 'x-task-id': 'cb-raw-1', 'x-callback-url': ctl.callbackUrl });
    assert.equal(raw.status, 202);
    assert.equal(raw.body.taskId, 'cb-raw-1');
    assert.equal(raw.body.state, 'running');
    const t0 = Date.now();
    const r = await ctl.client.call(common.Echo, host, { message: 'via callback', delayMs: 200 }, { taskId: 'cb-1' });
    assert.equal(r.message, 'via callback');
    assert.ok(Date.now() - t0 < 5_000);
    await sleep(200);
    const cb = ctl.received.find((b) => b.taskId === 'cb-1');
    assert.ok(cb, 'the callback reached the controller');
    assert.equal(cb.command, 'echo');
    assert.equal(cb.success, true);
    assert.equal(cb.message, 'via callback');
    assert.equal((cb.result as { message: string }).message, 'via callback');
    assert.ok(ctl.received.find((b) => b.taskId === 'cb-raw-1'));
    // failures travel the same way
    const e = await rejectsWithCode(ctl.client.call(common.Echo, host, { message: 'bad', fail: true }, { taskId: 'cb-2' }), 'AGENT_ERROR');
    assert.equal(e.details?.taskId, 'cb-2');
    await sleep(100);
    const cb2 = ctl.received.find((b) => b.taskId === 'cb-2')!;
    assert.equal(cb2.success, false);
    assert.equal(cb2.error?.code, 'AGENT_ERROR');
  });

  it('X-Inline-Wait-Ms: a task done within the wait is answered inline (200 or its error) and no callback follows; a slower one gets 202 + callback', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const ctl = await startController(cleanup, { inlineWaitMs: 300 });
    const raw = await post(host, '/echo', { message: 'quick' }, { 'x-task-id': 'inl-raw-1', 'x-callback-url': ctl.callbackUrl, 'x-inline-wait-ms': '300' });
    assert.equal(raw.status, 200);
    assert.equal(raw.body.message, 'quick');
    const r = await ctl.client.call(common.Echo, host, { message: 'inline' }, { taskId: 'inl-1' });
    assert.equal(r.message, 'inline');
    const e = await rejectsWithCode(ctl.client.call(common.Echo, host, { message: 'bad', fail: true }, { taskId: 'inl-2' }), 'AGENT_ERROR');
    assert.equal(e.details?.taskId, 'inl-2');
    const slow = await ctl.client.call(common.Echo, host, { message: 'slow', delayMs: 800 }, { taskId: 'inl-3' });
    assert.equal(slow.message, 'slow');
    await sleep(200);
    assert.deepEqual(
      ctl.received.map((b) => b.taskId),
      ['inl-3'],
      'only the task that outlived the wait was called back',
    );
    // the result stays readable either way
    const g = await fetch(`${host.url}/task/inl-1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(((await g.json()) as { state: string }).state, 'succeeded');
  });

  it('callback delivery is retried when the controller answers 503', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const ctl = await startController(cleanup, { failFirst: 2 });
    const r = await ctl.client.call(common.Echo, host, { message: 'retried' }, { taskId: 'cb-retry', timeoutMs: 20_000 });
    assert.equal(r.message, 'retried');
    assert.equal(ctl.received.filter((b) => b.taskId === 'cb-retry').length, 1);
  });

  it('a controller restarted between the 202 and the result still learns the outcome (resume / GET /task)', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const ctl1 = await startController(cleanup);
    const sent = await post(host, '/echo', { message: 'survives', delayMs: 1_000 }, { 'x-task-id': 'restart-1', 'x-callback-url': ctl1.callbackUrl });
    assert.equal(sent.status, 202);
    await ctl1.stop(); // the controller goes away; the agent's callback fails and is retried
    const ctl2 = await startController(cleanup, { pollIntervalMs: 500 });
    const r = await ctl2.client.resume(common.Echo, host, 'restart-1', 20_000);
    assert.equal(r.message, 'survives');
    // and a task that finished while no controller was there
    const sent2 = await post(host, '/echo', { message: 'finished meanwhile' }, { 'x-task-id': 'restart-2', 'x-callback-url': ctl1.callbackUrl });
    assert.equal(sent2.status, 202);
    await sleep(200);
    const g = await fetch(`${host.url}/task/restart-2`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(g.status, 200);
    const stored = (await g.json()) as { state: string; success: boolean; result: { message: string } };
    assert.equal(stored.state, 'succeeded');
    assert.equal(stored.result.message, 'finished meanwhile');
    const r2 = await ctl2.client.resume(common.Echo, host, 'restart-2', 5_000);
    assert.equal(r2.message, 'finished meanwhile');
    // an id the agent never saw: TASK_LOST, not a hang
    await rejectsWithCode(ctl2.client.resume(common.Echo, host, 'never-sent', 5_000), 'TASK_LOST');
  });

  it('a forged early callback (wrong token) is not trusted by resume()', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const ctl = await startController(cleanup, { pollIntervalMs: 300 });
    const sent = await post(host, '/echo', { message: 'real', delayMs: 300 }, { 'x-task-id': 'forge-1' });
    assert.equal(sent.status, 200);
    const forged = await fetch(ctl.callbackUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer not-the-agent-token-xxxxx' },
      body: JSON.stringify({ taskId: 'forge-1', command: 'echo', success: true, result: { message: 'forged', runs: 1, startedAt: 0, finishedAt: 0 } }),
    });
    assert.equal(forged.status, 204);
    const r = await ctl.client.resume(common.Echo, host, 'forge-1', 5_000);
    assert.equal(r.message, 'real');
  });

  it('a duplicated task id is executed once: concurrent and later repeats get the first result', async () => {
    const { server, host } = await startInProcessAgent(cleanup);
    const Other = defineCommand({ name: 'test/other', agent: 'any', request: Obj({}), response: Obj({}) });
    server.handle(Other, async () => ({}));
    const ctl = await startController(cleanup, { pollIntervalMs: 300 });
    const before = (await post(host, '/echo', { message: 'count' })).body.runs as number;
    const [a, b, c] = await Promise.all([
      ctl.client.call(common.Echo, host, { message: 'once', delayMs: 500 }, { taskId: 'dup-1' }),
      ctl.client.call(common.Echo, host, { message: 'once', delayMs: 500 }, { taskId: 'dup-1' }),
      post(host, '/echo', { message: 'once', delayMs: 500 }, { 'x-task-id': 'dup-1' }),
    ]);
    const later = await ctl.client.call(common.Echo, host, { message: 'once', delayMs: 500 }, { taskId: 'dup-1' });
    assert.equal(a.runs, before + 1);
    assert.deepEqual(b, a);
    assert.deepEqual(c.body, a);
    assert.deepEqual(later, a);
    const after = (await post(host, '/echo', { message: 'count' })).body.runs as number;
    assert.equal(after, before + 2, 'exactly one extra execution for four requests with the same task id');
    // the same id for another (async) command is a conflict, not a silent join
    const conflict = await post(host, '/test/other', {}, { 'x-task-id': 'dup-1' });
    assert.equal(conflict.status, 409, JSON.stringify(conflict.body));
    assert.equal(conflict.body.code, 'CONFLICT');
    assert.match(conflict.body.message, /task id dup-1 was already used for echo/);
    // sync commands answer inline and never consult the task store: the id is just a log tag
    const sync = await post(host, '/connect', { hostUuid: 'h', controllerUrl: 'http://127.0.0.1:1' }, { 'x-task-id': 'dup-1' });
    assert.equal(sync.status, 200, JSON.stringify(sync.body));
  });

  it('a command running past its timeout fails with a typed TIMEOUT error (inline and by callback)', async () => {
    const { host } = await startInProcessAgent(cleanup, { timeouts: { echo: 300 } });
    const ctl = await startController(cleanup, { pollIntervalMs: 500 });
    const t0 = Date.now();
    const e = await rejectsWithCode(ctl.client.call(common.Echo, host, { message: 'slow', delayMs: 10_000 }, { taskId: 'to-1' }), 'TIMEOUT');
    assert.ok(Date.now() - t0 < 5_000, 'the agent aborted the work at its timeout');
    assert.match(e.message, /echo did not finish within 300 ms/);
    const inline = await post(host, '/echo', { message: 'slow', delayMs: 10_000 });
    assert.equal(inline.status, 504);
    assert.equal(inline.body.code, 'TIMEOUT');
    const stored = (await (await fetch(`${host.url}/task/to-1`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { state: string; error: { code: string } };
    assert.equal(stored.state, 'failed');
    assert.equal(stored.error.code, 'TIMEOUT');
  });

  it('a handler that ignores its abort signal still times out on time, but keeps its queue slot until it ends', async () => {
    const { server, host } = await startInProcessAgent(cleanup, { timeouts: { 'test/stuck': 300 } });
    const Stuck = defineCommand({ name: 'test/stuck', agent: 'any', request: Obj({ key: Type.String(), ms: Type.Integer() }), response: Obj({ startedAt: Type.Number() }) });
    server.handle(
      Stuck,
      async (req) => {
        const startedAt = Date.now();
        await new Promise((r) => setTimeout(r, req.ms)); // deliberately ignores ctx.signal
        return { startedAt };
      },
      { key: (r) => r.key },
    );
    const client = new AgentClient();
    const t0 = Date.now();
    const first = client.call(Stuck, host, { key: 'k', ms: 2_000 });
    await sleep(50);
    const second = client.call(Stuck, host, { key: 'k', ms: 10 }, { timeoutMs: 10_000 });
    await rejectsWithCode(first, 'TIMEOUT');
    assert.ok(Date.now() - t0 < 1_500, `TIMEOUT after ${Date.now() - t0} ms, expected ~300`);
    const r2 = await second;
    assert.ok(r2.startedAt >= t0 + 2_000, 'the next operation on the key waited for the stuck one to really end');
  });

  it('the body of an unauthenticated request is not even parsed (401, not 400)', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const res = await fetch(`${host.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"broken' });
    assert.equal(res.status, 401);
  });

  it('per-key serial queues: same key runs one at a time, other keys in parallel', async () => {
    const { host } = await startInProcessAgent(cleanup);
    const client = new AgentClient();
    const [a, b, c] = await Promise.all([
      client.call(common.Echo, host, { message: 'a', delayMs: 400, queueKey: 'vm-1' }),
      client.call(common.Echo, host, { message: 'b', delayMs: 400, queueKey: 'vm-1' }),
      client.call(common.Echo, host, { message: 'c', delayMs: 400, queueKey: 'vm-2' }),
    ]);
    const [first, second] = a.startedAt <= b.startedAt ? [a, b] : [b, a];
    assert.ok(second.startedAt >= first.finishedAt, 'vm-1 operations did not overlap');
    assert.ok(c.startedAt < first.finishedAt && c.startedAt < second.startedAt, 'vm-2 ran alongside vm-1');
  });

  it('/metrics serves Prometheus text: request counts, durations, in-flight, tasks, process metrics', async () => {
    const { host } = await startInProcessAgent(cleanup);
    await new AgentClient().call(common.Echo, host, { message: 'm' });
    const res = await fetch(`${host.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    assert.match(text, /tstack_http_requests_total\{[^}]*route="\/echo"[^}]*\} 1/);
    assert.match(text, /tstack_http_request_duration_seconds_bucket/);
    assert.match(text, /tstack_http_requests_in_flight/);
    assert.match(text, /tstack_agent_tasks_total\{[^}]*command="echo"[^}]*outcome="succeeded"/);
    assert.match(text, /process_cpu_user_seconds_total/);
  });

  describe('an agent process killed mid-task', function () {
    this.timeout(120_000);

    it('SIGKILL during a task: call() fails with AGENT_UNREACHABLE within its timeout instead of hanging', async () => {
      const agent = await startAgentScript('echoagent', ECHO_AGENT, { cleanup, logLevel: 'warn' });
      const host = { url: agent.url, token: agent.token };
      const ctl = await startController(cleanup, { pollIntervalMs: 500 });
      const t0 = Date.now();
      const p = ctl.client.call(common.Echo, host, { message: 'doomed', delayMs: 60_000 }, { taskId: 'kill-1', timeoutMs: 8_000 });
      await sleep(1_000);
      await agent.kill9();
      await rejectsWithCode(p, 'AGENT_UNREACHABLE');
      const took = Date.now() - t0;
      assert.ok(took < 8_000 + 3_000, `failed after ${took} ms, the timeout was 8000 ms`);
    });

    it('SIGKILL during an inline call (no callback URL): a typed error at once, and no second execution', async () => {
      const agent = await startAgentScript('echoagent', ECHO_AGENT, { cleanup, logLevel: 'warn' });
      const host = { url: agent.url, token: agent.token };
      const client = new AgentClient({ pollIntervalMs: 500, requestTimeoutMs: 2_000 });
      const t0 = Date.now();
      const p = client.call(common.Echo, host, { message: 'inline doomed', delayMs: 60_000 }, { taskId: 'kill-inline', timeoutMs: 30_000 });
      const caught = p.catch((e: unknown) => e);
      await sleep(1_000);
      await agent.kill9();
      const e = (await caught) as TStackError;
      assert.ok(e instanceof TStackError, String(e));
      assert.ok(['AGENT_UNREACHABLE', 'TASK_LOST'].includes(e.code), e.code);
      assert.ok(Date.now() - t0 < 10_000, `failed after ${Date.now() - t0} ms`);
    });

    it('SIGKILL then restart: the new agent does not know the task, call() fails fast with TASK_LOST', async () => {
      const agent = await startAgentScript('echoagent', ECHO_AGENT, { cleanup, logLevel: 'warn' });
      const host = { url: agent.url, token: agent.token };
      const ctl = await startController(cleanup, { pollIntervalMs: 500 });
      const p = ctl.client.call(common.Echo, host, { message: 'doomed', delayMs: 60_000 }, { taskId: 'kill-2', timeoutMs: 90_000 });
      const caught = p.catch((e: unknown) => e);
      await sleep(1_000);
      await agent.kill9();
      await startAgentScript('echoagent', ECHO_AGENT, { cleanup, logLevel: 'warn', port: agent.port, dataDir: agent.dataDir });
      // from when the new agent answers (starting it can take seconds on a loaded machine)
      const t0 = Date.now();
      const e = (await caught) as TStackError;
      assert.ok(e instanceof TStackError);
      assert.equal(e.code, 'TASK_LOST');
      assert.ok(Date.now() - t0 < 10_000, 'TASK_LOST soon after the agent came back, not at the 90 s deadline');
    });
  });
});
