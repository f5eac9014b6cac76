// Agent → controller events: after `connect`, events reach <controller>/v1/agent-events in order,
// signed, with the host uuid; they are retried while the controller is away or answers 5xx.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import Koa from 'koa';
import { AgentServer } from '../../../shared/agent/server.js';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { common } from '../../../shared/protocol/index.js';
import { setLogLevel } from '../../../shared/log.js';
import { useCleanup } from '../../harness/cleanup.js';
import { freePort } from '../../harness/ports.js';
import { jsonBody } from '../../../shared/http/body.js';

interface Received {
  auth: string;
  events: Array<{ type: string; hostUuid?: string; agent: string; time: string; data: Record<string, unknown> }>;
}

describe('foundation: agent events', function () {
  this.timeout(30_000);
  const cleanup = useCleanup();
  before(() => setLogLevel(process.env.TSTACK_LOG_LEVEL ?? 'warn'));

  it('connect binds the agent to a controller; events arrive in order, signed, retried through 503s and an outage', async () => {
    const token = 'agent-token-0123456789abcdef';
    const agent = new AgentServer({ agent: 'tstack-testagent', version: '0', token });
    const addr = await agent.listen('127.0.0.1', 0);
    cleanup.add(() => agent.close(), 'agent');
    const host = { url: `http://127.0.0.1:${addr.port}`, token };

    const port = await freePort();
    const got: Received[] = [];
    let fail = 2;
    const app = new Koa();
    app.use(jsonBody({ limit: 16 * 1024 * 1024 }));
    app.use((ctx) => {
      if (ctx.path !== '/v1/agent-events') return;
      if (fail > 0) {
        fail--;
        ctx.status = 503;
        return;
      }
      got.push({ auth: ctx.get('authorization'), events: (ctx.request as unknown as { body: Received }).body.events });
      ctx.status = 204;
    });
    let server: Server | undefined;
    const startCtl = () =>
      new Promise<void>((resolve) => {
        server = app.listen(port, '127.0.0.1', () => resolve());
      });
    const stopCtl = () =>
      new Promise<void>((resolve) => {
        server!.closeAllConnections();
        server!.close(() => resolve());
      });
    cleanup.add(async () => server?.listening && stopCtl(), 'controller stand-in');

    // events emitted before the controller is even listening are kept and delivered later
    const info = await new AgentClient().call(common.Connect, host, { hostUuid: 'host-1', controllerUrl: `http://127.0.0.1:${port}` });
    assert.equal(info.hostUuid, 'host-1');
    for (let i = 0; i < 5; i++) agent.events.emit('vm.state', { i });
    await new Promise((r) => setTimeout(r, 500));
    await startCtl();
    const deadline = Date.now() + 20_000;
    while (got.flatMap((g) => g.events).length < 5) {
      assert.ok(Date.now() < deadline, `only ${got.flatMap((g) => g.events).length} of 5 events arrived`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const evs = got.flatMap((g) => g.events);
    assert.deepEqual(evs.map((e) => e.data.i), [0, 1, 2, 3, 4]);
    assert.ok(evs.every((e) => e.type === 'vm.state' && e.hostUuid === 'host-1' && e.agent === 'tstack-testagent'));
    assert.ok(got.every((g) => g.auth === `Bearer ${token}`), 'signed with the agent token when connect gave no event token');
    assert.equal(fail, 0, 'the 503s were retried');
  });
});
