// addHost / reconnect / changeState on a real SQLite inventory, deploying to this machine over
// its own sshd, and the tracker against the real agent processes: SIGKILL kvmagent → the host
// goes Disconnected after 3 missed pings and its Running VM Unknown; start it again → Connected,
// and vm/sync corrects the VM (no domain on the host → Stopped).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { openStore } from '../../../controller/store/index.js';
import { EventBus, type AgentEventIn } from '../../../controller/events/bus.js';
import { AgentRegistry } from '../../../controller/events/agent-events.js';
import { syncVms } from '../../../controller/host/vmsync.js';
import { createTransientDomain, domainExists, tinyVmXml, virsh } from '../../harness/libvirt.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { addHost, changeHostState, reconnectHost, type HostAgents, type HostDeps } from '../../../controller/host/service.js';
import { HostTracker } from '../../../controller/host/tracker.js';
import { agentMain, configPath, logPath, type HostLayout } from '../../../controller/host/render.js';
import { readVersion } from '../../../controller/host/package.js';
import { common } from '../../../shared/protocol/index.js';
import { startProcess } from '../../../shared/exec.js';
import type { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { agentPid, alive, authorizedKey, removeKeysTagged, builtTree, freePorts, killAgents, tempLayout, type TestKey, pkgCache } from './fixture.js';
import { newHostRuntime } from '../../../controller/host/runtime.js';
import { newEd25519KeyPair } from '../../../controller/host/sshkeys.js';

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('hosts: add over SSH, reconnect, state, tracking', function () {
  this.timeout(900_000);
  const cleanup = useCleanup();
  let store: InventoryStore;
  let deps: HostDeps;
  let layout: HostLayout;
  let key: TestKey;
  let clusterUuid: string;
  let host: Resource;
  const client = new AgentClient();
  const bus = new EventBus();

  before(async function () {
    const tree = await builtTree();
    const dataDir = await tmpDir('hostctl', cleanup);
    store = await openStore({ backend: 'sqlite', path: join(dataDir, 'inventory.db') });
    cleanup.add(() => store.close(), 'close store');
    layout = await tempLayout(cleanup);
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    key = authorizedKey(cleanup, 'hostsvc');
    // the controller's own key, tagged so that cleanup removes exactly it from authorized_keys
    const ctlTag = `tstack-test-${runId()}-controller`;
    const ctl = newEd25519KeyPair(ctlTag);
    mkdirSync(join(dataDir, 'ssh'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'ssh/id_ed25519'), ctl.private, { mode: 0o600 });
    writeFileSync(join(dataDir, 'ssh/id_ed25519.pub'), ctl.public.trim() + '\n');
    cleanup.add(() => removeKeysTagged(ctlTag), `remove ${ctlTag}`);
    deps = {
      store,
      bus,
      agentClient: client,
      controllerUrl: 'http://127.0.0.1:9',
      dataDir,
      hostRuntime: newHostRuntime(),
      options: { packageRoot: tree, packageCacheDir: pkgCache(tree), layout, ports: await freePorts(), listenHost: '127.0.0.1', pingIntervalMs: 400, maxMisses: 3, pingTimeoutMs: 1_000, autoReconnectMs: 0 },
    };
    const zone = await store.create({ uuid: randomUUID(), kind: 'zone', name: `${runId()}-zone`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Enabled' });
    clusterUuid = randomUUID();
    await store.create({ uuid: clusterUuid, kind: 'cluster', name: `${runId()}-cluster`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Enabled', parentUuid: zone.uuid, zoneUuid: zone.uuid, hypervisorType: 'KVM' });
  });

  it('a wrong password fails with HOST_AUTH_FAILED and leaves no host behind (not stuck Connecting)', async () => {
    await assert.rejects(addHost(deps, { name: `${runId()}-bad`, clusterUuid, managementIp: '127.0.0.1', username: 'root', password: 'wrong-password' }), (e: TStackError) => e.code === 'HOST_AUTH_FAILED');
    assert.equal((await store.list({ kind: 'host' })).total, 0);
  });

  it('addHost deploys and connects: Connected, Enabled, facts stored, agents answer ping', async () => {
    const steps: number[] = [];
    host = await addHost(deps, { name: `${runId()}-host`, clusterUuid, managementIp: '127.0.0.1', sshPrivateKey: key.privateKey, virtType: 'qemu' }, { progress: (p) => steps.push(p) });
    assert.equal(host.status, 'Connected');
    assert.equal(host.state, 'Enabled');
    assert.equal(host.parentUuid, clusterUuid);
    assert.equal(host.virtType, 'qemu');
    assert.ok(Number(host.totalMemory) > 0 && Number(host.totalCpu) > 0);
    assert.match(String(host.sshHostKey), /^SHA256:/);
    assert.equal('password' in host, false, 'the password is not stored');
    assert.ok(steps.includes(100));
    const agents = host._agents as HostAgents;
    const info = await client.call(common.Ping, { url: `http://127.0.0.1:${agents.kvmagent.port}`, token: agents.kvmagent.token }, {});
    assert.equal(info.hostUuid, host.uuid);
  });

  it('adding the same managementIp twice is a CONFLICT', async () => {
    await assert.rejects(addHost(deps, { name: 'dup', clusterUuid, managementIp: '127.0.0.1', sshPrivateKey: key.privateKey }), (e: TStackError) => e.code === 'CONFLICT');
  });

  it('reconnect with agents of this version connects again without a re-deploy', async () => {
    const before = agentPid(layout, 'kvmagent');
    const h = await reconnectHost(deps, host.uuid);
    assert.equal(h.status, 'Connected');
    assert.equal(agentPid(layout, 'kvmagent'), before, 'agents were not restarted');
  });

  it('changeState: disable, enable, maintain (refused while a VM runs there), enable', async () => {
    assert.equal((await changeHostState(deps, host.uuid, 'disable')).state, 'Disabled');
    await assert.rejects(changeHostState(deps, host.uuid, 'disable'), (e: TStackError) => e.code === 'CONFLICT');
    assert.equal((await changeHostState(deps, host.uuid, 'enable')).state, 'Enabled');
    const vm = await store.create({ uuid: randomUUID(), kind: 'vm-instance', name: `${runId()}-vm-m`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Running', hostUuid: host.uuid });
    await assert.rejects(changeHostState(deps, host.uuid, 'maintain'), (e: TStackError) => e.code === 'CONFLICT' && e.message.includes(vm.uuid));
    await store.delete(vm.uuid);
    assert.equal((await changeHostState(deps, host.uuid, 'maintain')).state, 'Maintenance');
    assert.equal((await changeHostState(deps, host.uuid, 'enable')).state, 'Enabled');
  });

  it('vm/sync reports a VM running on the host but absent from the inventory (never destroys it), and corrects an Unknown one', async () => {
    const vmUuid = randomUUID();
    const dir = await tmpDir('hostvm', cleanup);
    const name = await createTransientDomain(tinyVmXml({ name: `tstack-${vmUuid}`, serialLog: join(dir, 'serial.log'), memoryMiB: 64 }), dir, cleanup);
    const seen: AgentEventIn[] = [];
    const off = bus.onAgentEvent('*', (e) => void seen.push(e));
    cleanup.add(off, 'unsubscribe');
    const h = (await store.get(host.uuid))!;
    const r1 = await syncVms(deps, h);
    const u = r1.unmanaged.find((x) => x.vmUuid === vmUuid);
    assert.ok(u, 'reported as unmanaged');
    assert.equal(u!.state, 'Running');
    assert.ok(seen.some((e) => e.type === 'host.vm.unmanaged' && e.data.vmUuid === vmUuid && e.hostUuid === host.uuid));
    assert.ok(await domainExists(name), 'left running');
    // the inventory has it Unknown on this host (e.g. after a disconnect): sync makes it Running
    const vm = await store.create({ uuid: vmUuid, kind: 'vm-instance', name: `${runId()}-vm-s`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Unknown', hostUuid: host.uuid });
    cleanup.add(() => store.delete(vm.uuid), 'delete vm record');
    const r2 = await syncVms(deps, h);
    assert.deepEqual(r2.changed.find((c) => c.vmUuid === vmUuid), { vmUuid, from: 'Unknown', to: 'Running' });
    assert.equal((await store.get(vmUuid))!.state, 'Running');
    await virsh(['destroy', name]);
    await store.delete(vmUuid);
  });

  it('a changed bootId means the host rebooted: VMs not running there become Stopped', async () => {
    await store.update(host.uuid, { bootId: 'boot-before-the-reboot' });
    const vm = await store.create({ uuid: randomUUID(), kind: 'vm-instance', name: `${runId()}-vm-r`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Running', hostUuid: host.uuid });
    cleanup.add(() => store.delete(vm.uuid), 'delete vm record');
    const seen: AgentEventIn[] = [];
    const off = bus.onAgentEvent('host.rebooted', (e) => void seen.push(e));
    await new HostTracker(deps).track((await store.get(host.uuid))!);
    off();
    assert.equal((await store.get(vm.uuid))!.state, 'Stopped');
    assert.notEqual((await store.get(host.uuid))!.bootId, 'boot-before-the-reboot');
    assert.equal(seen.length, 1);
    await store.delete(vm.uuid);
  });

  it('a restarted controller (new process state) hands every host a new event token once', async () => {
    class SpyRegistry extends AgentRegistry {
      registered: string[] = [];
      override register(hostUuid: string, token?: string): string {
        this.registered.push(hostUuid);
        return super.register(hostUuid, token);
      }
    }
    const agents = new SpyRegistry();
    const store2 = await openStore({ backend: 'sqlite', path: join(deps.dataDir, 'inventory.db') });
    try {
      const d2: HostDeps = { ...deps, store: store2, agents, hostRuntime: newHostRuntime() };
      const t = new HostTracker(d2);
      await t.track((await store2.get(host.uuid))!);
      await t.track((await store2.get(host.uuid))!);
      assert.deepEqual(agents.registered, [host.uuid], 'bound once, not every round');
      assert.equal((await store2.get(host.uuid))!.status, 'Connected');
    } finally {
      await store2.close();
    }
  });

  it('tracker: kvmagent killed → Disconnected after 3 misses and its VM Unknown; restarted → Connected and the VM synced to Stopped', async () => {
    const vm = await store.create({ uuid: randomUUID(), kind: 'vm-instance', name: `${runId()}-vm-t`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Running', hostUuid: host.uuid });
    cleanup.add(() => store.delete(vm.uuid), 'delete vm record');
    const tracker = new HostTracker(deps).start();
    cleanup.add(() => tracker.stop(), 'stop tracker');
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal((await store.get(host.uuid))!.status, 'Connected', 'a healthy host stays Connected');

    const pid = agentPid(layout, 'kvmagent')!;
    assert.ok(pid && alive(pid));
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const h = await until('Disconnected', async () => {
      const x = await store.get(host.uuid);
      return x?.status === 'Disconnected' ? x : undefined;
    }, 20_000);
    const took = Date.now() - killedAt;
    assert.ok(took >= 2 * 400, `not before the misses add up (${took} ms)`);
    assert.match(String(h.statusReason), /kvmagent/);
    assert.equal((await store.get(vm.uuid))!.state, 'Unknown');

    // start kvmagent again the way the deploy did (same config, new process owned by this test)
    const version = readVersion(deps.options!.packageRoot!);
    const p = await startProcess(process.execPath, [agentMain(layout, version, 'kvmagent'), '--config', configPath(layout, 'kvmagent')], { logFile: logPath(layout, 'kvmagent') });
    cleanup.add(() => p.stop(5_000), `kvmagent pid ${p.pid}`);
    await until('Connected again', async () => (await store.get(host.uuid))?.status === 'Connected', 60_000);
    const v = await until('vm synced', async () => {
      const x = await store.get(vm.uuid);
      return x?.state === 'Stopped' ? x : undefined;
    }, 20_000);
    assert.equal(v.lastHostUuid, host.uuid);
    // the restarted agent was connected again (it lost its controller binding when it died)
    const agents = (await store.get(host.uuid))!._agents as HostAgents;
    const info = await client.call(common.Ping, { url: `http://127.0.0.1:${agents.kvmagent.port}`, token: agents.kvmagent.token }, {});
    assert.equal(info.hostUuid, host.uuid);
    await tracker.stop();
    await p.stop(5_000);
  });

  it('a host that stays Disconnected is reconnected over SSH automatically: only the dead agent is restarted', async () => {
    // kvmagent is down (the previous test stopped the process it had started)
    const d2: HostDeps = { ...deps, options: { ...deps.options, autoReconnectMs: 1_000 } };
    const storagePid = agentPid(layout, 'storageagent');
    const tracker = new HostTracker(d2).start();
    cleanup.add(() => tracker.stop(), 'stop tracker');
    await until('Disconnected', async () => (await store.get(host.uuid))?.status === 'Disconnected', 30_000);
    const h = await until('Connected after the automatic reconnect', async () => {
      const x = await store.get(host.uuid);
      return x?.status === 'Connected' ? x : undefined;
    }, 180_000);
    await tracker.stop();
    const pid = agentPid(layout, 'kvmagent');
    assert.ok(pid && alive(pid), 'kvmagent runs again');
    assert.equal(agentPid(layout, 'storageagent'), storagePid, 'the healthy storageagent kept running (work in flight survives)');
    assert.ok(alive(storagePid!));
    const agents = h._agents as HostAgents;
    const info = await client.call(common.Ping, { url: `http://127.0.0.1:${agents.kvmagent.port}`, token: agents.kvmagent.token }, {});
    assert.equal(info.hostUuid, host.uuid);
  });

  it('a host left Connecting without agents (controller died mid-add) is resolved to Disconnected', async () => {
    const h = await store.create({ uuid: randomUUID(), kind: 'host', name: `${runId()}-orphan`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], state: 'Enabled', status: 'Connecting', managementIp: '192.0.2.1', parentUuid: clusterUuid });
    cleanup.add(() => store.delete(h.uuid), 'delete orphan');
    await new HostTracker(deps).track(h);
    const x = (await store.get(h.uuid))!;
    assert.equal(x.status, 'Disconnected');
    assert.match(String(x.statusReason), /interrupted/);
  });
});
