// Hosts through the REST API of a real controller (SQLite, HTTP) with the host module installed
// the way builtinModules() does, deploying to this machine over its own sshd:
//   POST /v1/hosts (job; ?wait=true), wrong password → the job's typed error and no host left;
//   actions reconnect and changeState; the tracker marks the host Disconnected when its agents
//   stop, and DELETE removes a Disconnected host.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { installHostModule, type HostModule } from '../../../controller/host/api.js';
import type { ControllerModule } from '../../../controller/main.js';
import { AGENTS } from '../../../controller/host/render.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { agentPid, alive, authorizedKey, builtTree, freePorts, killAgents, removeKeysTagged, tempLayout, type TestKey, pkgCache } from './fixture.js';
import { newEd25519KeyPair } from '../../../controller/host/sshkeys.js';

describe('hosts through the REST API', function () {
  this.timeout(900_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let key: TestKey;
  let clusterUuid: string;
  let hostUuid: string;
  let mod: HostModule | undefined;
  let layout: Awaited<ReturnType<typeof tempLayout>>;

  before(async function () {
    const tree = await builtTree();
    layout = await tempLayout(cleanup);
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    key = authorizedKey(cleanup, 'api');
    const dataDir = await tmpDir('hostapi', cleanup);
    const ctlTag = `tstack-test-${runId()}-apictl`;
    const ctl = newEd25519KeyPair(ctlTag);
    mkdirSync(join(dataDir, 'ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'ssh/id_ed25519'), ctl.private, { mode: 0o600 });
    writeFileSync(join(dataDir, 'ssh/id_ed25519.pub'), ctl.public.trim() + '\n');
    cleanup.add(() => removeKeysTagged(ctlTag), `remove ${ctlTag}`);
    const ports = await freePorts();
    const hosts: ControllerModule = {
      name: 'hosts',
      install: (s) => {
        mod = installHostModule(s, { options: { packageRoot: tree, packageCacheDir: pkgCache(tree), layout, ports, listenHost: '127.0.0.1', pingIntervalMs: 500, maxMisses: 3, pingTimeoutMs: 1_000, autoReconnectMs: 0 } });
      },
      start: () => void mod?.startTracker(),
      stop: async () => mod?.stop(),
    };
    c = await testController(cleanup, { dataDir, modules: [hosts], registry: new ApiRegistry() });
    admin = await c.login('admin', c.adminPassword);
    const z = await admin.post('/v1/zones', { name: `${runId()}-zone` });
    assert.equal(z.status, 201, JSON.stringify(z.body));
    const cl = await admin.post('/v1/clusters', { name: `${runId()}-cluster`, zoneUuid: z.body.uuid });
    assert.equal(cl.status, 201, JSON.stringify(cl.body));
    clusterUuid = cl.body.uuid;
  });

  it('POST /v1/hosts with a wrong password: the job fails with HOST_AUTH_FAILED and no host is left', async () => {
    const r = await admin.post('/v1/hosts?wait=true', { name: `${runId()}-bad`, clusterUuid, managementIp: '127.0.0.1', password: 'not-the-password' });
    assert.notEqual(r.status, 200);
    const err = r.body.error ?? r.body;
    assert.equal(err.code, 'HOST_AUTH_FAILED', JSON.stringify(r.body));
    const l = await admin.get('/v1/hosts');
    assert.equal(l.body.total ?? l.body.inventories?.length ?? l.body.items?.length, 0, JSON.stringify(l.body));
  });

  it('POST /v1/hosts (job) with a key: Connected; no secrets in the answer', async () => {
    const r = await admin.post('/v1/hosts', { name: `${runId()}-host`, clusterUuid, managementIp: '127.0.0.1', sshPrivateKey: key.privateKey, virtType: 'qemu' });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    let job: any;
    for (let i = 0; i < 600; i++) {
      job = (await admin.get(r.body.location)).body;
      if (job.state !== 'Running') break;
      await new Promise((res) => setTimeout(res, 500));
    }
    assert.equal(job.state, 'Succeeded', JSON.stringify(job));
    hostUuid = job.result.uuid;
    const h = (await admin.get(`/v1/hosts/${hostUuid}`)).body;
    assert.equal(h.status, 'Connected');
    assert.equal(h.state, 'Enabled');
    assert.equal(h.virtType, 'qemu');
    const text = JSON.stringify(h);
    assert.ok(!text.includes('PRIVATE KEY') && !('_agents' in h) && !('password' in h), 'no secrets shown');
  });

  it('actions: reconnect (job) and changeState', async () => {
    const r = await admin.post(`/v1/hosts/${hostUuid}/actions?wait=true`, { reconnect: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await admin.get(`/v1/hosts/${hostUuid}`)).body.status, 'Connected');
    const d = await admin.post(`/v1/hosts/${hostUuid}/actions?wait=true`, { changeState: { stateEvent: 'disable' } });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal((await admin.get(`/v1/hosts/${hostUuid}`)).body.state, 'Disabled');
    const bad = await admin.post(`/v1/hosts/${hostUuid}/actions?wait=true`, { changeState: { stateEvent: 'disable' } });
    assert.equal(bad.status, 409, JSON.stringify(bad.body));
  });

  it('deleting a Connected, Enabled host is refused; the tracker sees the agents stop; DELETE then removes it', async () => {
    await admin.post(`/v1/hosts/${hostUuid}/actions?wait=true`, { changeState: { stateEvent: 'enable' } });
    const refused = await admin.del(`/v1/hosts/${hostUuid}?wait=true`);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    await killAgents(layout);
    for (let i = 0; i < 60; i++) {
      if ((await admin.get(`/v1/hosts/${hostUuid}`)).body.status === 'Disconnected') break;
      await new Promise((res) => setTimeout(res, 250));
    }
    assert.equal((await admin.get(`/v1/hosts/${hostUuid}`)).body.status, 'Disconnected');
    const del = await admin.del(`/v1/hosts/${hostUuid}?wait=true`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal((await admin.get(`/v1/hosts/${hostUuid}`)).status, 404);
    for (const a of AGENTS) {
      const pid = agentPid(layout, a);
      assert.ok(pid === undefined || !alive(pid));
    }
  });
});
