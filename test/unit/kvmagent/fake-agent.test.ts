// The kvmagent in-process with the fake hypervisor and fake network (what controller tests and
// the scale simulator use), driven over HTTP: same protocol, same policy as the real thing.
import assert from 'node:assert/strict';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { AgentServer } from '../../../shared/agent/server.js';
import * as kvm from '../../../shared/protocol/kvm.js';
import { common } from '../../../shared/protocol/index.js';
import { TStackError } from '../../../shared/errors.js';
import { registerKvmAgent, kvmCapabilities, KVM_CAPABILITIES, type KvmAgent } from '../../../kvmagent/main.js';
import { FakeDriver } from '../../../kvmagent/hypervisor/fake-driver.js';
import { FakeNetwork } from '../../../kvmagent/network/bridges.js';
import { domainName } from '../../../kvmagent/domain-xml.js';
import { StateWatcher } from '../../../kvmagent/watcher.js';
import { minimalSpec } from './fixtures.js';

const TOKEN = 'fake-agent-token-0123456789abcdef';
const client = new AgentClient();

describe('kvmagent: in-process with the fake driver', () => {
  let server: AgentServer;
  let agent: KvmAgent;
  let driver: FakeDriver;
  let ep: { url: string; token: string };
  const events: Array<{ type: string; data: Record<string, unknown> }> = [];

  beforeEach(async () => {
    server = new AgentServer({ agent: 'tstack-kvmagent', version: 'test', token: TOKEN, capabilities: KVM_CAPABILITIES });
    driver = new FakeDriver();
    agent = await registerKvmAgent(server, { driver, network: new FakeNetwork(['eth0']) }, { noWatcher: true, checkHostResources: false, kernelFeatures: { vlan8021q: true, vxlan: true } });
    server.events.emit = (type, data) => void events.push({ type, data });
    const a = await server.listen('127.0.0.1', 0);
    ep = { url: `http://127.0.0.1:${a.port}`, token: TOKEN };
    events.length = 0;
  });
  afterEach(async () => {
    await agent.stop();
    await server.close();
  });

  it('ping advertises the kvm capabilities and the hypervisor versions', async () => {
    const p = await client.call(common.Ping, ep, {});
    assert.ok(p.capabilities.includes('l2.vxlan'));
    assert.ok(p.capabilities.includes('version:libvirt=fake'));
    assert.ok(p.capabilities.includes('version:qemu=fake'));
    assert.deepEqual(p.hypervisor, { libvirt: 'fake', qemu: 'fake' }, 'AgentInfo.hypervisor (issue 3)');
    assert.deepEqual((await client.call(common.Connect, ep, { hostUuid: 'h-1', controllerUrl: 'http://127.0.0.1:1' })).hypervisor, { libvirt: 'fake', qemu: 'fake' });
  });

  it('ping without libvirt answers without hypervisor versions (no field, no version tokens)', async () => {
    const s2 = new AgentServer({ agent: 'tstack-kvmagent', version: 'test', token: TOKEN, capabilities: KVM_CAPABILITIES });
    const d2 = new FakeDriver();
    d2.versions = async () => {
      throw new Error('libvirt down');
    };
    const a2 = await registerKvmAgent(s2, { driver: d2, network: new FakeNetwork(['eth0']) }, { noWatcher: true, checkHostResources: false, kernelFeatures: { vlan8021q: true, vxlan: true } });
    const addr = await s2.listen('127.0.0.1', 0);
    try {
      const p = await client.call(common.Ping, { url: `http://127.0.0.1:${addr.port}`, token: TOKEN }, {});
      assert.equal(p.hypervisor, undefined);
      assert.ok(!p.capabilities.some((c) => c.startsWith('version:')), p.capabilities.join(' '));
      assert.ok(p.capabilities.includes('l2.vxlan'));
    } finally {
      await a2.stop();
      await s2.close();
    }
  });

  it('l2.vlan / l2.vxlan are advertised only when the kernel has 802.1Q / VXLAN', async () => {
    assert.ok((await client.call(common.Ping, ep, {})).capabilities.includes('l2.vlan'));
    const s3 = new AgentServer({ agent: 'tstack-kvmagent', version: 'test', token: TOKEN, capabilities: KVM_CAPABILITIES });
    const a3 = await registerKvmAgent(s3, { driver: new FakeDriver(), network: new FakeNetwork(['eth0']) }, { noWatcher: true, checkHostResources: false, kernelFeatures: { vlan8021q: false, vxlan: true } });
    const addr = await s3.listen('127.0.0.1', 0);
    try {
      const caps = (await client.call(common.Ping, { url: `http://127.0.0.1:${addr.port}`, token: TOKEN }, {})).capabilities;
      assert.ok(!caps.includes('l2.vlan'), caps.join(' '));
      assert.ok(caps.includes('l2.vxlan') && caps.includes('l2.novlan'));
    } finally {
      await a3.stop();
      await s3.close();
    }
    assert.deepEqual(kvmCapabilities({ vlan8021q: true, vxlan: false }, ['vm', 'l2.vlan', 'l2.vxlan']), ['vm', 'l2.vlan']);
  });

  it('start → running, idempotent start, stop, destroy twice', async () => {
    const spec = minimalSpec();
    const r = await client.call(kvm.VmStart, ep, { spec });
    assert.equal(r.state, 'Running');
    assert.equal(r.alreadyRunning, false);
    assert.equal((await client.call(kvm.VmStart, ep, { spec })).alreadyRunning, true);
    assert.deepEqual(driver.calls.filter(([m]) => m === 'defineAndStart').length, 1);
    const cap = await client.call(kvm.HostCapacity, ep, {});
    assert.equal(cap.cpuUsed, 1);
    assert.equal(cap.usedMemory, 128 * 1024 * 1024);
    const s = await client.call(kvm.VmStop, ep, { uuid: spec.uuid, type: 'grace' });
    assert.deepEqual(s, { uuid: spec.uuid, state: 'Stopped', forced: false, wasRunning: true });
    assert.equal(driver.domains.size, 0);
    assert.equal((await client.call(kvm.VmDestroy, ep, { uuid: spec.uuid })).existed, false);
  });

  it('stop: a guest ignoring ACPI is forced (grace) or reported (cold)', async () => {
    const slow = new FakeDriver({ shutdownDelayMs: -1 });
    const srv = new AgentServer({ agent: 'tstack-kvmagent', version: 'test', token: TOKEN });
    const a = await registerKvmAgent(srv, { driver: slow, network: new FakeNetwork() }, { noWatcher: true, checkHostResources: false, pollMs: 20 });
    const addr = await srv.listen('127.0.0.1', 0);
    const e2 = { url: `http://127.0.0.1:${addr.port}`, token: TOKEN };
    try {
      const spec = minimalSpec();
      await client.call(kvm.VmStart, e2, { spec });
      await assert.rejects(client.call(kvm.VmStop, e2, { uuid: spec.uuid, type: 'cold', timeoutMs: 100 }), (e: TStackError) => e.code === 'TIMEOUT' && /ignore ACPI/.test(e.message));
      const r = await client.call(kvm.VmStop, e2, { uuid: spec.uuid, type: 'grace', timeoutMs: 100 });
      assert.equal(r.forced, true);
    } finally {
      await a.stop();
      await srv.close();
    }
  });

  it('state changes behind the agent are reported; its own are not', async () => {
    const spec = minimalSpec();
    await agent.watcher.start();
    await client.call(kvm.VmStart, ep, { spec });
    await client.call(kvm.VmPause, ep, { uuid: spec.uuid });
    await client.call(kvm.VmResume, ep, { uuid: spec.uuid });
    assert.deepEqual(await agent.watcher.poll(), []);
    driver.ioErrorPause(domainName(spec.uuid));
    const c = await agent.watcher.poll();
    assert.deepEqual(c, [{ vmUuid: spec.uuid, domainName: domainName(spec.uuid), from: 'Running', to: 'Paused', reason: 'ioerror', cause: 'external' }]);
    driver.guestPowerOff(domainName(spec.uuid));
    assert.equal((await agent.watcher.poll())[0]!.to, 'Stopped');
    assert.deepEqual(
      events.map((e) => [e.type, e.data.to]),
      [
        ['vm.state-changed', 'Paused'],
        ['vm.state-changed', 'Stopped'],
      ],
    );
    assert.equal((await client.call(kvm.VmGetState, ep, { uuid: spec.uuid })).reason, 'shutdown');
    const m = await (await fetch(`${ep.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(m, /tstack_kvm_vms\{state="Stopped"[^}]*\} 1/);
    assert.match(m, /tstack_kvm_external_state_changes_total\{to="Paused"[^}]*\} 1/);
  });

  it('libvirt unreachable when the agent starts: the first poll that works takes the baseline silently', async () => {
    const spec = minimalSpec();
    await client.call(kvm.VmStart, ep, { spec });
    const fresh = new StateWatcher(driver, (type, data) => events.push({ type, data }), 1000);
    const list = driver.list.bind(driver);
    driver.list = async () => {
      throw new Error('libvirtd is down');
    };
    await fresh.start();
    fresh.stop();
    driver.list = list;
    assert.deepEqual(await fresh.poll(), [], 'a running VM is not a change just because the agent could not see it before');
    driver.guestPowerOff(domainName(spec.uuid));
    assert.equal((await fresh.poll())[0]!.to, 'Stopped');
  });

  it('hot-plug through the fake: attach/detach volume and NIC, set CPU, sync', async () => {
    const spec = { ...minimalSpec(), maxCpuNum: 4 };
    await client.call(kvm.VmStart, ep, { spec });
    await client.call(kvm.BridgeCreate, ep, { type: 'NoVlan', physicalInterface: 'eth0' });
    const vol: kvm.VolumeSpecT = { uuid: '99999999-0000-4000-8000-000000000001', source: { type: 'file', path: '/x/d.qcow2', format: 'qcow2' }, bus: 'virtio', cache: 'none', serial: 'd1', deviceIndex: 1 };
    assert.equal((await client.call(kvm.VmAttachVolume, ep, { uuid: spec.uuid, volume: vol })).target, 'vdb');
    const nic: kvm.NicSpecT = { uuid: '99999999-0000-4000-8000-000000000002', mac: '52:54:00:00:00:99', bridge: 'br_eth0', model: 'virtio' };
    await client.call(kvm.VmAttachNic, ep, { uuid: spec.uuid, nic });
    let st = await client.call(kvm.VmGetState, ep, { uuid: spec.uuid });
    assert.deepEqual(st.devices!.volumes.map((v) => v.target), ['vda', 'vdb']);
    assert.deepEqual(st.devices!.nics.map((n) => n.bridge), ['br_eth0']);
    assert.equal((await client.call(kvm.VmDetachVolume, ep, { uuid: spec.uuid, volumeUuid: vol.uuid })).wasAttached, true);
    assert.equal((await client.call(kvm.VmDetachNic, ep, { uuid: spec.uuid, nicUuid: nic.uuid })).wasAttached, true);
    st = await client.call(kvm.VmGetState, ep, { uuid: spec.uuid });
    assert.deepEqual(st.devices!.volumes.map((v) => v.target), ['vda']);
    assert.deepEqual(st.devices!.nics, []);
    assert.equal((await client.call(kvm.VmSetCpuMemory, ep, { uuid: spec.uuid, cpuNum: 3 })).cpuNum, 3);
    const sync = await client.call(kvm.VmSync, ep, {});
    assert.deepEqual(sync.vms.map((v) => [v.uuid, v.state, v.cpuNum]), [[spec.uuid, 'Running', 3]]);
  });

  it('ISO slots and live volume resize through the fake', async () => {
    const spec = { ...minimalSpec(), isoSlots: 2 };
    await client.call(kvm.VmStart, ep, { spec });
    const a = await client.call(kvm.VmAttachIso, ep, { uuid: spec.uuid, isoPath: '/isos/a.iso' });
    const b = await client.call(kvm.VmAttachIso, ep, { uuid: spec.uuid, isoPath: '/isos/b.iso' });
    assert.deepEqual([a.slot, a.target, b.slot, b.target], [0, 'hda', 1, 'hdb']);
    await assert.rejects(client.call(kvm.VmAttachIso, ep, { uuid: spec.uuid, isoPath: '/isos/c.iso' }), (e: TStackError) => e.code === 'CONFLICT');
    assert.deepEqual((await client.call(kvm.VmDetachIso, ep, { uuid: spec.uuid, isoPath: '/isos/a.iso' })).ejected, [0]);
    const st = await client.call(kvm.VmGetState, ep, { uuid: spec.uuid });
    assert.deepEqual(
      st.devices!.volumes.filter((v) => v.isoSlot !== undefined).map((v) => [v.isoSlot, v.source]),
      [
        [0, undefined],
        [1, '/isos/b.iso'],
      ],
    );
    const vol = spec.rootVolume.uuid;
    assert.equal((await client.call(kvm.VmResizeVolume, ep, { uuid: spec.uuid, volumeUuid: vol, size: 2 * 1024 ** 3 })).changed, true);
    assert.equal((await client.call(kvm.VmResizeVolume, ep, { uuid: spec.uuid, volumeUuid: vol, size: 2 * 1024 ** 3 })).changed, false);
    await assert.rejects(client.call(kvm.VmResizeVolume, ep, { uuid: spec.uuid, volumeUuid: vol, size: 1024 ** 3 }), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
  });

  it('vm/snapshot through the fake: a volume on NFS (QEMU opens it) switches to the NFS new top; a mismatched newTop is refused', async () => {
    const spec = minimalSpec();
    await client.call(kvm.VmStart, ep, { spec });
    const src = { type: 'nfs' as const, server: '10.0.0.5', export: '/export', path: '/volumes/v/v.qcow2' };
    const vol: kvm.VolumeSpecT = { uuid: '99999999-0000-4000-8000-000000000003', source: src, bus: 'virtio', cache: 'none', serial: 'd3', deviceIndex: 1 };
    await client.call(kvm.VmAttachVolume, ep, { uuid: spec.uuid, volume: vol });
    const newTop = { ...src, path: '/volumes/v/next-1.qcow2' };
    const bad = client.call(kvm.VmSnapshot, ep, { uuid: spec.uuid, volumes: [{ volumeUuid: vol.uuid, newTopPath: '/export/volumes/v/other.qcow2', newTop, reuseExisting: true }], quiesce: 'no' });
    await assert.rejects(bad, (e: TStackError) => e.code === 'INVALID_ARGUMENT');
    const r = await client.call(kvm.VmSnapshot, ep, { uuid: spec.uuid, volumes: [{ volumeUuid: vol.uuid, newTopPath: '/export/volumes/v/next-1.qcow2', newTop, reuseExisting: true }], quiesce: 'no' });
    assert.deepEqual(r.volumes, [{ volumeUuid: vol.uuid, snapshotPath: 'nfs:/export/volumes/v/v.qcow2', newTopPath: '/export/volumes/v/next-1.qcow2' }]);
    const st = await client.call(kvm.VmGetState, ep, { uuid: spec.uuid });
    assert.equal(st.devices!.volumes.find((v) => v.uuid === vol.uuid)!.source, 'nfs:/export/volumes/v/next-1.qcow2');
  });

  it('console password through the fake', async () => {
    const spec = { ...minimalSpec(), console: { type: 'vnc' as const, password: 'abc' } };
    await client.call(kvm.VmStart, ep, { spec });
    assert.deepEqual(await client.call(kvm.VmSetConsolePassword, ep, { uuid: spec.uuid, password: 'xyz' }), { uuid: spec.uuid, hasPassword: true });
    assert.match(await driver.xml(domainName(spec.uuid)), /passwd='xyz'/);
    await client.call(kvm.VmSetConsolePassword, ep, { uuid: spec.uuid });
    assert.doesNotMatch(await driver.xml(domainName(spec.uuid)), /passwd=/);
    await client.call(kvm.VmDestroy, ep, { uuid: spec.uuid });
    await assert.rejects(client.call(kvm.VmSetConsolePassword, ep, { uuid: minimalSpec().uuid, password: 'a' }), (e: TStackError) => e.code === 'VM_NOT_FOUND');
  });

  it('migrate: the domain leaves this host; a VM that is not running is VM_NOT_FOUND', async () => {
    const spec = { ...minimalSpec(), console: { type: 'vnc' as const, listen: '10.0.0.1' } };
    await client.call(kvm.VmStart, ep, { spec });
    const r = await client.call(kvm.VmMigrate, ep, { uuid: spec.uuid, destAddress: '10.0.0.2', destConsoleListen: '10.0.0.2', unsafe: true });
    assert.equal(r.uuid, spec.uuid);
    assert.equal(await driver.get(domainName(spec.uuid)), undefined);
    assert.ok(driver.calls.some(([op, arg]) => op === 'migrate' && arg.endsWith('qemu+tcp://10.0.0.2/system')));
    await assert.rejects(client.call(kvm.VmMigrate, ep, { uuid: spec.uuid, destAddress: '10.0.0.2' }), (e: TStackError) => e.code === 'VM_NOT_FOUND');
    await assert.rejects(client.call(kvm.VmMigrate, ep, { uuid: spec.uuid, destAddress: 'not an ip' } as never), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
    assert.equal(events.length, 0, 'the agent reports no state change for its own migration');
  });

  it('scales for the simulator: 300 VMs started concurrently over HTTP, all in vm/sync, capacity adds up', async function () {
    this.timeout(30_000);
    const specs = Array.from({ length: 300 }, (_, i) => ({ ...minimalSpec(), uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, name: `sim-${i}` }));
    const t0 = Date.now();
    await Promise.all(specs.map((spec) => client.call(kvm.VmStart, ep, { spec })));
    const ms = Date.now() - t0;
    const sync = await client.call(kvm.VmSync, ep, {});
    assert.equal(sync.vms.length, 300);
    assert.ok(sync.vms.every((v) => v.state === 'Running'));
    assert.equal((await client.call(kvm.HostCapacity, ep, {})).vmCount, 300);
    assert.ok(ms < 20_000, `300 fake starts took ${ms} ms`);
  });

  it('operations on an absent VM: typed VM_NOT_FOUND, or success where idempotent', async () => {
    const uuid = '12345678-0000-4000-8000-000000000000';
    await assert.rejects(client.call(kvm.VmPause, ep, { uuid }), (e: TStackError) => e.code === 'VM_NOT_FOUND');
    await assert.rejects(client.call(kvm.VmConsole, ep, { uuid }), (e: TStackError) => e.code === 'VM_NOT_FOUND');
    assert.equal((await client.call(kvm.VmGetState, ep, { uuid })).state, 'Stopped');
    assert.equal((await client.call(kvm.VmStop, ep, { uuid, type: 'grace' })).wasRunning, false);
    assert.equal((await client.call(kvm.VmDetachVolume, ep, { uuid, volumeUuid: uuid })).wasAttached, false);
  });
});
