// Functional tier: VM HA on the fake cloud with two hosts on shared storage. A host failure is
// staged as the host tracker leaves it (kvmagent gone, host Disconnected, its VMs Unknown); the
// fake storage agents answer the heartbeat checks (alive unless the host is marked dead) and
// the disk-lock checks. The HA monitor runs in the cloud module with fast test timings.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { capacityNamespace, reserved } from '../../controller/allocator/capacity.js';
import { releaseHost } from '../../controller/allocator/host.js';
import * as K from '../../shared/protocol/kvm.js';
import type { AgentEventIn } from '../../controller/events/bus.js';
import { judgeHeartbeat } from '../../controller/compute/ha.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('functional: VM HA on the fake cloud (two hosts, shared storage)', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const haEvents: AgentEventIn[] = [];

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 1, psType: 'SharedMountPoint' });
    cleanup.add(fc.controller.bus.onAgentEvent('VmHaStarted', (e) => void haEvents.push(e)), 'HA event listener');
  });

  const get = async (uuid: string): Promise<any> => (await fc.api.get(`/v1/vm-instances/${uuid}`)).body;
  const until = async (what: string, fn: () => Promise<boolean>, ms = 5_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!(await fn())) {
      if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
      await sleep(50);
    }
  };
  const holds = async (hostUuid: string, vmUuid: string) => (await reserved(fc.controller.store, capacityNamespace('host', hostUuid))).consumers.includes(vmUuid);

  /** What the host tracker does when a host's kvmagent stops answering (controller/host/tracker.ts). */
  async function trackerSeesHostDown(hostUuid: string): Promise<void> {
    const s = fc.controller.store;
    await s.update(hostUuid, { status: 'Disconnected', statusReason: 'no answer from kvmagent, storageagent, vrouteragent for 3 pings' });
    const vms = (await s.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: hostUuid }] })).items;
    for (const vm of vms) if (vm.state === 'Running') await s.transition(vm.uuid, 'Running', 'Unknown', { stateBeforeUnknown: 'Running' });
  }

  async function vmOnHost2(name: string, level = 'NeverStop'): Promise<any> {
    const r = await fc.createVm(name, { hostUuid: fc.ids.host2 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const set = await fc.api.post(`/v1/vm-instances/${r.body.uuid}/actions`, { setHaLevel: { level } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.equal(set.body.haLevel, level);
    return r.body;
  }

  it('setHaLevel takes the ZStack levels and refuses others with a 400', async () => {
    const r = await fc.createVm('ha-levels');
    for (const level of ['NeverStop', 'OnHostFailure', 'None']) {
      const x = await fc.api.post(`/v1/vm-instances/${r.body.uuid}/actions`, { setHaLevel: { level } });
      assert.equal(x.status, 200, JSON.stringify(x.body));
      assert.equal(x.body.haLevel, level);
    }
    const bad = await fc.api.post(`/v1/vm-instances/${r.body.uuid}/actions`, { setHaLevel: { level: 'Always' } });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    await fc.api.del(`/v1/vm-instances/${r.body.uuid}?wait=true`);
  });

  it('GET …/migration-targets (getVmMigrationCandidateHosts) lists the hosts and why each other one cannot take the VM; 4xx for bad asks', async () => {
    const r = await fc.createVm('mt-vm', { hostUuid: fc.ids.host });
    const t = await fc.api.get(`/v1/vm-instances/${r.body.uuid}/migration-targets`);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    // both fake hosts sit on 127.0.0.1, which is a valid target from a source on 127.x (f5981fd): host 2
    // can take the VM, host 1 runs it
    assert.deepEqual(t.body.inventories.map((h: any) => h.uuid), [fc.ids.host2]);
    const why = Object.fromEntries(t.body.rejected.map((x: any) => [x.hostUuid, x.reason]));
    assert.equal(why[fc.ids.host!], 'the VM runs there');
    assert.equal(why[fc.ids.host2!], undefined);
    assert.equal((await fc.api.get(`/v1/vm-instances/00000000-0000-4000-8000-000000000000/migration-targets`)).status, 404);
    assert.equal((await fc.api.get(`/v1/vm-instances/not-a-uuid/migration-targets`)).status, 400);
    const user = await fc.controller.account('mt-user');
    assert.equal((await user.get(`/v1/vm-instances/${r.body.uuid}/migration-targets`)).status, 403);
    await fc.action(r.body.uuid, 'stop');
    assert.equal((await fc.api.get(`/v1/vm-instances/${r.body.uuid}/migration-targets`)).status, 409);
    await fc.api.del(`/v1/vm-instances/${r.body.uuid}?wait=true`);
  });

  it('the heartbeat verdict: changing beats are alive, unchanged ones dead only after the configured time, unreadable ones never', () => {
    const b = (seq: number) => [{ psUuid: '00000000-0000-4000-8000-000000000001', writer: 'w', seq }];
    let j = judgeHeartbeat(b(1), undefined, 1_000, 500);
    assert.equal(j.verdict.dead, false, 'the first look proves nothing');
    j = judgeHeartbeat(b(1), j.seen, 1_400, 500);
    assert.equal(j.verdict.dead, false);
    assert.equal(judgeHeartbeat(b(2), j.seen, 1_600, 500).verdict.dead, false, 'a new beat: alive');
    assert.equal(judgeHeartbeat(b(1), j.seen, 1_600, 500).verdict.dead, true, 'the same beat for 600 ms: dead');
    const unreadable = [{ psUuid: '00000000-0000-4000-8000-000000000001', error: 'EIO' }];
    assert.equal(judgeHeartbeat(unreadable, { key: 'x', since: 0 }, 1e9, 500).verdict.dead, false);
  });

  it('a partitioned host (agents silent, heartbeat alive) keeps its VM: never started twice', async () => {
    const vm = await vmOnHost2('ha-split');
    await trackerSeesHostDown(fc.ids.host2!);
    await sleep(1_500); // > hostDeadAfterMs (400) + several monitor rounds
    const now = await get(vm.uuid);
    assert.equal(now.state, 'Unknown');
    assert.equal(now.hostUuid, fc.ids.host2);
    assert.match(now.haReason, /not proven dead: the storage heartbeat still beats/);
    assert.equal((await fc.kvm.driver.list()).some((d) => d.name.includes(vm.uuid)), false, 'nothing started on host 1');
    // the host answers again (as the tracker would reconnect it): all back to normal
    await fc.controller.store.update(fc.ids.host2!, { status: 'Connected', statusReason: undefined });
    await fc.controller.store.transition(vm.uuid, 'Unknown', 'Running');
  });

  it('a dead host (agents and heartbeat silent, disks unlocked): its NeverStop VM starts on the other host, VmHaStarted emitted', async () => {
    const vm = await vmOnHost2('ha-dead');
    const plain = (await fc.createVm('ha-none', { hostUuid: fc.ids.host2 })).body;
    const started = Date.now();
    await fc.hosts[1]!.kill();
    fc.ha.dead.add(fc.ids.host2!);
    await trackerSeesHostDown(fc.ids.host2!);
    await until('the VM runs on host 1', async () => (await get(vm.uuid)).state === 'Running');
    const now = await get(vm.uuid);
    assert.equal(now.hostUuid, fc.ids.host);
    assert.ok(now.lastHaStartDate, 'lastHaStartDate set');
    assert.equal(now.haReason, undefined);
    assert.ok((await fc.kvm.driver.list()).some((d) => d.name.includes(vm.uuid) && d.active), 'its domain runs on host 1');
    assert.equal(await holds(fc.ids.host!, vm.uuid), true, 'host 1 holds its capacity');
    assert.equal(await holds(fc.ids.host2!, vm.uuid), false, 'the dead host’s reservation is released');
    const ev = haEvents.find((e) => e.data.vmUuid === vm.uuid);
    assert.ok(ev, 'VmHaStarted on the event bus');
    assert.equal(ev.data.fromHostUuid, fc.ids.host2);
    assert.equal(ev.data.toHostUuid, fc.ids.host);
    console.log(`      dead host → VM running elsewhere: ${Date.now() - started} ms (test timings: dead after 400 ms)`);
    // a VM without HA stays Unknown on the dead host
    assert.equal((await get(plain.uuid)).state, 'Unknown');
  });

  it('a disk still locked by a QEMU fences the restart: the VM stays Unknown, with the reason', async () => {
    // host 2 is dead (previous test): make a third VM there by record, as if it had run there
    const r = await fc.createVm('ha-locked', { hostUuid: fc.ids.host });
    await fc.api.post(`/v1/vm-instances/${r.body.uuid}/actions`, { setHaLevel: { level: 'NeverStop' } });
    const root = (await fc.controller.store.get(r.body.rootVolumeUuid))!;
    fc.ha.locked.add(String(root.installPath));
    await fc.kvm.driver.destroy(`tstack-${r.body.uuid}`);
    await releaseHost(fc.controller.store, fc.ids.host!, r.body.uuid);
    await fc.controller.store.update(r.body.uuid, { hostUuid: fc.ids.host2, state: 'Unknown' });
    await until('the reason is recorded', async () => /QEMU still holds the lock/.test(String((await get(r.body.uuid)).haReason ?? '')));
    await sleep(500);
    assert.equal((await get(r.body.uuid)).state, 'Unknown');
    fc.ha.locked.delete(String(root.installPath));
    await until('the VM is restarted once the lock is gone', async () => (await get(r.body.uuid)).state === 'Running');
  });

  it('no capacity elsewhere: the VM goes Stopped with the reason, and starts once a host can take it', async () => {
    const r = await fc.createVm('ha-full', { hostUuid: fc.ids.host });
    await fc.api.post(`/v1/vm-instances/${r.body.uuid}/actions`, { setHaLevel: { level: 'OnHostFailure' } });
    // host 2 dead (as the earlier test left it), host 1 disabled (as the host module's changeState leaves it)
    fc.ha.dead.add(fc.ids.host2!);
    await fc.controller.store.update(fc.ids.host2!, { status: 'Disconnected' });
    await fc.controller.store.update(fc.ids.host!, { state: 'Disabled' });
    // the domain was on host 1 by the create: clear it so host 1 starting it again is a real start
    await fc.kvm.driver.destroy(`tstack-${r.body.uuid}`).catch(() => undefined);
    await releaseHost(fc.controller.store, fc.ids.host!, r.body.uuid);
    await fc.controller.store.update(r.body.uuid, { hostUuid: fc.ids.host2, state: 'Unknown' });
    try {
      await until('HA gave up for now with a reason', async () => /HA could not start the VM/.test(String((await get(r.body.uuid)).haReason ?? '')));
      const now = await get(r.body.uuid);
      assert.equal(now.state, 'Stopped');
      assert.match(now.haReason, /Disabled/);
    } finally {
      await fc.controller.store.update(fc.ids.host!, { state: 'Enabled' });
    }
    await until('the retry starts it', async () => (await get(r.body.uuid)).state === 'Running');
  });

  it('NeverStop: a VM that stops unasked starts again; one stopped through the API stays stopped', async () => {
    const r = await fc.createVm('ha-crash', { hostUuid: fc.ids.host });
    await fc.api.post(`/v1/vm-instances/${r.body.uuid}/actions`, { setHaLevel: { level: 'NeverStop' } });
    // QEMU gone: what kvmagent's watcher reports
    await fc.kvm.driver.destroy(`tstack-${r.body.uuid}`);
    fc.controller.bus.publishAgentEvent({ type: K.KvmEvents.vmStateChanged, hostUuid: fc.ids.host!, agent: 'tstack-kvmagent', time: new Date().toISOString(), data: { vmUuid: r.body.uuid, domainName: `tstack-${r.body.uuid}`, from: 'Running', to: 'Stopped', reason: 'crashed', cause: 'external' } });
    await until('restarted', async () => {
      const v = await get(r.body.uuid);
      return v.state === 'Running' && v.lastHaStartDate !== undefined;
    });
    assert.ok(haEvents.some((e) => e.data.vmUuid === r.body.uuid && /stopped on its host \(crashed\)/.test(String(e.data.reason))));
    const stopped = await fc.action(r.body.uuid, 'stop');
    assert.equal(stopped.body.state, 'Stopped');
    await sleep(800);
    assert.equal((await get(r.body.uuid)).state, 'Stopped', 'an API stop never triggers HA');
  });
});
