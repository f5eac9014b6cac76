// The tstack-storageagent executable as a real process: flags, token file, /health, ping
// capabilities, and an async command answered through the callback protocol.
import assert from 'node:assert/strict';
import Koa from 'koa';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { common } from '../../../shared/protocol/index.js';
import * as S from '../../../shared/protocol/storage.js';
import { useCleanup } from '../../harness/cleanup.js';
import { startAgentProcess } from '../../harness/agents.js';
import { tmpDir } from '../../harness/tmp.js';
import { listen, makeQcow2, uuid } from './helpers.js';
import { jsonBody } from '../../../shared/http/body.js';

describe('storage: the tstack-storageagent daemon', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();

  it('starts, answers ping with its capabilities and runs a download with a callback', async function () {
    const agent = await startAgentProcess('storageagent', { cleanup, logLevel: 'warn' });
    const app = new Koa();
    app.use(jsonBody({ limit: 16 * 1024 * 1024 }));
    // the callback URL is only known once the receiver listens; the handler is looked up late
    const late: { client?: AgentClient } = {};
    app.use((ctx, next) => late.client!.callbackHandler()(ctx, next));
    const srv = await listen(app, cleanup);
    // polling is slow on purpose: the result must arrive through the callback
    const client = new AgentClient({ callbackUrl: `${srv.url}/v1/agent-callbacks`, pollIntervalMs: 60_000 });
    late.client = client;
    const ep = { url: agent.url, token: agent.token };
    const info = await client.call(common.Ping, ep, {});
    assert.equal(info.agent, 'tstack-storageagent');
    assert.ok(info.capabilities.includes('ps.ceph') && info.capabilities.includes('download.sftp'));
    const src = await tmpDir('daemon-src', cleanup);
    await makeQcow2(join(src, 'd.qcow2'), 16, 1);
    const store: S.ImageStoreSpec = { type: 'dir', uuid: uuid(), path: await tmpDir('daemon-store', cleanup) };
    await client.call(S.ImageStoreInit, ep, { store });
    const t0 = Date.now();
    const r = await client.call(S.ImageStoreDownload, ep, { store, imageUuid: uuid(), url: `file://${join(src, 'd.qcow2')}` });
    assert.ok(Date.now() - t0 < 30_000, 'answered by callback, not by the 60 s poll');
    assert.equal(r.format, 'qcow2');
    assert.equal(r.virtualSize, 16 << 20);
  });
});
