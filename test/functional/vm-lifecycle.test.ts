// Functional tier: VM flows on the fake cloud (test/harness/fake-cloud.ts) — a real
// controller with in-process agents on fake backends. Each test takes well under a second.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { ipNamespace } from '../../controller/allocator/ip.js';
import { MAC_NAMESPACE } from '../../controller/allocator/mac.js';
import { capacityNamespace, reserved } from '../../controller/allocator/capacity.js';
import * as S from '../../shared/protocol/storage.js';
import * as V from '../../shared/protocol/vrouter.js';

describe('functional: VM lifecycle on the fake cloud', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup);
  });

  const leftovers = async (): Promise<Record<string, number>> => ({
    vms: (await fc.controller.store.list({ kind: 'vm-instance' })).total,
    nics: (await fc.controller.store.list({ kind: 'vm-nic' })).total,
    volumes: (await fc.controller.store.list({ kind: 'volume' })).total,
    // the L3's DHCP server address (owner dhcp:<host>) stays for the network's lifetime
    ips: (await fc.controller.store.claims(ipNamespace(fc.ids.l3))).filter((c) => !c.owner.startsWith('dhcp:')).length,
    macs: (await fc.controller.store.claims(MAC_NAMESPACE)).length,
    hostReservations: (await reserved(fc.controller.store, capacityNamespace('host', fc.ids.host))).consumers.length,
    domains: (await fc.kvm.driver.list()).length,
  });

  it('create → stop → start → destroy → expunge leaves nothing behind', async () => {
    const r = await fc.createVm('fc-vm1');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const vm = r.body;
    assert.equal(vm.state, 'Running');
    assert.equal(vm.hostUuid, fc.ids.host);
    assert.match(vm.vmNics[0].ip, /^10\.77\.0\.\d+$/);
    assert.equal((await fc.kvm.driver.list()).filter((d) => d.active).length, 1);
    assert.ok(fc.vrouter.callsOf(V.FlatApply.name).some((x: any) => x.nics.some((e: any) => e.ip === vm.vmNics[0].ip)), 'the NIC sent (the whole flat state)');
    const stopped = await fc.action(vm.uuid, 'stop');
    assert.equal(stopped.body.state, 'Stopped', JSON.stringify(stopped.body));
    assert.equal((await reserved(fc.controller.store, capacityNamespace('host', fc.ids.host))).consumers.length, 0, 'a stopped VM holds no host capacity');
    assert.equal((await fc.action(vm.uuid, 'start')).body.state, 'Running');
    const del = await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    const ex = await fc.action(vm.uuid, 'expunge');
    assert.equal(ex.status, 200, JSON.stringify(ex.body));
    assert.deepEqual(await leftovers(), { vms: 0, nics: 0, volumes: 0, ips: 0, macs: 0, hostReservations: 0, domains: 0 });
    assert.ok(fc.storage.callsOf(S.DeleteVolume.name).length >= 1);
  });

  it('a storage failure at the root volume rolls the create back completely, naming the step', async () => {
    fc.storage.failNext(S.CreateRootVolume.name, 'STORAGE_ERROR', 'disk full (injected)');
    const r = await fc.createVm('fc-vm-fail');
    assert.equal(r.status, 500, JSON.stringify(r.body));
    assert.equal(r.body.code, 'STORAGE_ERROR');
    assert.equal(r.body.kind, 'permanent');
    assert.match(r.body.message, /disk full/);
    assert.equal(r.body.details?.step, 'root-volume');
    assert.deepEqual(await leftovers(), { vms: 0, nics: 0, volumes: 0, ips: 0, macs: 0, hostReservations: 0, domains: 0 });
  });

  it('a restarted kvmagent (same port and token) keeps serving its running VMs', async () => {
    const vm = (await fc.createVm('fc-vm-restart')).body;
    assert.equal(vm.state, 'Running');
    await fc.restartKvmAgent();
    const reboot = await fc.action(vm.uuid, 'reboot');
    assert.equal(reboot.status, 200, JSON.stringify(reboot.body));
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
    await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    assert.equal((await fc.action(vm.uuid, 'expunge')).status, 200);
    assert.deepEqual(await leftovers(), { vms: 0, nics: 0, volumes: 0, ips: 0, macs: 0, hostReservations: 0, domains: 0 });
  });

  it('concurrent creates get distinct addresses and MACs', async () => {
    const rs = await Promise.all([1, 2, 3, 4].map((i) => fc.createVm(`fc-par-${i}`)));
    for (const r of rs) assert.equal(r.status, 200, JSON.stringify(r.body));
    const ips = rs.map((r) => r.body.vmNics[0].ip);
    const macs = rs.map((r) => r.body.vmNics[0].mac);
    assert.equal(new Set(ips).size, 4, ips.join(' '));
    assert.equal(new Set(macs).size, 4, macs.join(' '));
  });
});
