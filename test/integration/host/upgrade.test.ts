// A controller of a newer version finds agents of the older one: the tracker notices the version
// difference and reconnects, which re-deploys the new version over SSH (controller key, known
// host key) next to the old one and restarts the agents on it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { addHost, type HostAgents, type HostDeps } from '../../../controller/host/service.js';
import { HostTracker } from '../../../controller/host/tracker.js';
import { installedMarker } from '../../../controller/host/render.js';
import { readVersion } from '../../../controller/host/package.js';
import { common } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { authorizedKey, builtTree, freePorts, killAgents, removeKeysTagged, tempLayout, pkgCache } from './fixture.js';
import { newHostRuntime } from '../../../controller/host/runtime.js';
import { newEd25519KeyPair } from '../../../controller/host/sshkeys.js';

describe('hosts: a newer controller re-deploys agents of an older version', function () {
  this.timeout(900_000);
  const cleanup = useCleanup();
  let store: InventoryStore;

  before(async () => {
    const dataDir = await tmpDir('hostupg', cleanup);
    store = await openStore({ backend: 'sqlite', path: join(dataDir, 'inventory.db') });
    cleanup.add(() => store.close(), 'close store');
  });

  it('tracker sees the old version → reconnect re-deploys the new one; agents answer with it', async () => {
    const tree1 = await builtTree();
    const v1 = readVersion(tree1);
    // the "new release": same build, another version in package.json
    const tree2 = await tmpDir('hosttree2', cleanup);
    const v2 = `${v1}-up.${runId()}`;
    symlinkSync(join(tree1, 'dist'), join(tree2, 'dist'));
    symlinkSync(join(tree1, 'node_modules'), join(tree2, 'node_modules'));
    const pj = JSON.parse(readFileSync(join(tree1, 'package.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(tree2, 'package.json'), JSON.stringify({ ...pj, version: v2 }, null, 2));
    copyFileSync(join(tree1, 'package-lock.json'), join(tree2, 'package-lock.json'));
    mkdirSync(join(tree2, 'scripts'));
    copyFileSync(join(tree1, 'scripts/setup'), join(tree2, 'scripts/setup'));

    const dataDir = await tmpDir('hostupgctl', cleanup);
    const tag = `tstack-test-${runId()}-upgctl`;
    const ctl = newEd25519KeyPair(tag);
    mkdirSync(join(dataDir, 'ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'ssh/id_ed25519'), ctl.private, { mode: 0o600 });
    writeFileSync(join(dataDir, 'ssh/id_ed25519.pub'), ctl.public.trim() + '\n');
    cleanup.add(() => removeKeysTagged(tag), `remove ${tag}`);
    const key = authorizedKey(cleanup, 'upg');
    const layout = await tempLayout(cleanup);
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    const client = new AgentClient();
    const options = { packageRoot: tree1, packageCacheDir: pkgCache(tree1), layout, ports: await freePorts(), listenHost: '127.0.0.1', pingIntervalMs: 400, maxMisses: 3, pingTimeoutMs: 1_000 };
    const deps1: HostDeps = { store, agentClient: client, controllerUrl: 'http://127.0.0.1:9', dataDir, options, hostRuntime: newHostRuntime() };

    const zone = await store.create({ uuid: randomUUID(), kind: 'zone', name: `${runId()}-z`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Enabled' });
    const clusterUuid = randomUUID();
    await store.create({ uuid: clusterUuid, kind: 'cluster', name: `${runId()}-c`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Enabled', parentUuid: zone.uuid, hypervisorType: 'KVM' });
    const host = await addHost(deps1, { name: `${runId()}-h`, clusterUuid, managementIp: '127.0.0.1', sshPrivateKey: key.privateKey });
    assert.equal(host.agentVersion, v1);

    // the controller is upgraded: same inventory, new package
    const deps2: HostDeps = { ...deps1, options: { ...options, packageRoot: tree2 } };
    const tracker = new HostTracker(deps2).start();
    cleanup.add(() => tracker.stop(), 'stop tracker');
    const deadline = Date.now() + 300_000;
    let h = await store.get(host.uuid);
    while (Date.now() < deadline && !(h?.agentVersion === v2 && h.status === 'Connected')) {
      await new Promise((r) => setTimeout(r, 300));
      h = await store.get(host.uuid);
    }
    await tracker.stop();
    assert.equal(h?.agentVersion, v2, `re-deployed (status ${String(h?.status)}: ${String(h?.statusReason ?? '')})`);
    assert.equal(h?.status, 'Connected');
    assert.ok(existsSync(installedMarker(layout, v2)) && existsSync(installedMarker(layout, v1)), 'both versions installed side by side');
    const agents = h!._agents as HostAgents;
    for (const a of ['kvmagent', 'storageagent', 'vrouteragent'] as const) {
      const info = await client.call(common.Ping, { url: `http://127.0.0.1:${agents[a].port}`, token: agents[a].token }, {});
      assert.equal(info.version, v2, `${a} runs the new version`);
      assert.equal(info.hostUuid, host.uuid);
    }
  });
});
