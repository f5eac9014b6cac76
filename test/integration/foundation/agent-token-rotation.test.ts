// An agent re-deployed mid-task comes back with a new token and without the old task. A call
// whose endpoint can refresh itself learns that at once (TASK_LOST); one that can't keeps
// getting 401 and fails only at its deadline (AGENT_UNREACHABLE). Real HTTP servers throughout.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import Koa from 'koa';
import { AgentServer } from '../../../shared/agent/server.js';
import { AgentClient, type AgentEndpoint } from '../../../controller/agent-client/client.js';
import { common } from '../../../shared/protocol/index.js';
import { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { freePort } from '../../harness/agents.js';
import { jsonBody } from '../../../shared/http/body.js';

const OLD = 'old-token-0123456789abcdef';
const NEW = 'new-token-0123456789abcdef';

describe('agent client: agent token rotated while a task is awaited', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();

  async function setup(): Promise<{ client: AgentClient; agentPort: number; redeploy: () => Promise<void> }> {
    const cbPort = await freePort();
    const client = new AgentClient({ callbackUrl: `http://127.0.0.1:${cbPort}/cb`, pollIntervalMs: 200, requestTimeoutMs: 2_000 });
    const app = new Koa();
    app.use(jsonBody({ limit: 16 * 1024 * 1024 }));
    app.use(client.callbackHandler());
    const srv: Server = app.listen(cbPort, '127.0.0.1');
    cleanup.add(() => new Promise<void>((r) => srv.close(() => r())));
    const agentPort = await freePort();
    let agent = new AgentServer({ agent: 'old', version: '1', token: OLD });
    await agent.listen('127.0.0.1', agentPort);
    cleanup.add(() => agent.close());
    const redeploy = async (): Promise<void> => {
      await agent.close();
      agent = new AgentServer({ agent: 'new', version: '2', token: NEW });
      await agent.listen('127.0.0.1', agentPort);
    };
    return { client, agentPort, redeploy };
  }

  it('with refresh: TASK_LOST soon after the re-deploy, not at the deadline', async () => {
    const { client, agentPort, redeploy } = await setup();
    const current = { url: `http://127.0.0.1:${agentPort}`, token: OLD };
    const ep: AgentEndpoint = { ...current, refresh: async () => ({ ...current }) };
    const started = Date.now();
    const call = client.call(common.Echo, ep, { message: 'x', delayMs: 30_000 }, { timeoutMs: 40_000 });
    await new Promise((r) => setTimeout(r, 500));
    await redeploy();
    current.token = NEW;
    const err = await call.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof TStackError, `expected a typed error, got ${String(err)}`);
    assert.equal(err.code, 'TASK_LOST');
    assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms; the refresh was not used`);
  });

  it('without refresh: the 401s end in AGENT_UNREACHABLE at the deadline', async () => {
    const { client, agentPort, redeploy } = await setup();
    const call = client.call(common.Echo, { url: `http://127.0.0.1:${agentPort}`, token: OLD }, { message: 'x', delayMs: 30_000 }, { timeoutMs: 3_000 });
    await new Promise((r) => setTimeout(r, 500));
    await redeploy();
    const err = await call.then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof TStackError);
    assert.equal(err.code, 'AGENT_UNREACHABLE');
    assert.match(err.message, /401/);
  });
});
