// Functional tier: EIPs on flat networks (1:1 NAT on the VM's host) on a two-host fake cloud —
// the real controller and API, the vrouter agent as a protocol fake that keeps each host's last
// flat/eip/apply. Checked: the host's whole EIP set follows attach, detach and the VM's
// deletion; a lost agent state is re-sent by the periodic pass; the refusals.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { fakeCloudApi } from '../harness/fake-cloud-api.js';
import { vpcModule } from '../../controller/vpc/module.js';
import * as VPC from '../../shared/protocol/vpc.js';
import * as V from '../../shared/protocol/vrouter.js';

describe('functional: EIPs on flat networks (fake cloud, two hosts)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const ids: Record<string, string> = {};
  const { post, act, field } = fakeCloudApi(() => fc);
  const setOf = (host: string) => fc.vrouter.flatEips.get(host);
  const settle = async (): Promise<void> => {
    await new Promise((r) => setTimeout(r, 50));
    await fc.controller.reconcile.idle();
  };

  before(async () => {
    fc = await startFakeCloud(cleanup, { modules: [vpcModule() as never], extraHosts: 1, psType: 'SharedMountPoint', reconcile: { periodMs: 300, baseBackoffMs: 50, maxBackoffMs: 200 } });
    const l2 = await post('/v1/l2-networks', { name: 'fe-pub-l2', zoneUuid: fc.ids.zone, physicalInterface: 'eth0', vlan: 200 });
    await post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: l2.uuid } }, 200);
    ids.pub = (await post('/v1/l3-networks', { name: 'fe-public', l2NetworkUuid: l2.uuid, category: 'Public' })).uuid;
    await post('/v1/ip-ranges', { l3NetworkUuid: ids.pub, networkCidr: '203.0.113.0/24' });
    // a public network whose L2 no cluster has
    const l2x = await post('/v1/l2-networks', { name: 'fe-far-l2', zoneUuid: fc.ids.zone, physicalInterface: 'eth0', vlan: 201 });
    ids.far = (await post('/v1/l3-networks', { name: 'fe-far', l2NetworkUuid: l2x.uuid, category: 'Public' })).uuid;
    await post('/v1/ip-ranges', { l3NetworkUuid: ids.far, networkCidr: '198.18.0.0/24' });
    const vm = await fc.createVm('fe-vm1', { hostUuid: fc.hosts[0]!.uuid });
    assert.equal(vm.status, 200, JSON.stringify(vm.body));
    ids.vm = vm.body.uuid;
    ids.nic = vm.body.vmNics[0].uuid;
    ids.ip = vm.body.vmNics[0].ip;
    ids.mac = vm.body.vmNics[0].mac;
    ids.vip = (await post('/v1/vips', { name: 'fe-vip', l3NetworkUuid: ids.pub, requiredIp: '203.0.113.50' })).uuid;
  });

  it('attach: the VM host gets its whole EIP set (public and private network, the NIC), no router is involved', async () => {
    const routerCalls = fc.vrouter.callsOf(VPC.RouterApply.name).length;
    const e = await post('/v1/eips', { name: 'fe-eip', vipUuid: ids.vip, vmNicUuid: ids.nic });
    ids.eip = e.uuid;
    assert.equal(e.guestIp, ids.ip);
    assert.equal(e.vpcRouterUuid, undefined);
    const s = setOf(fc.hosts[0]!.uuid);
    assert.ok(s, 'applied on the VM host before the answer');
    assert.deepEqual(s.eips, [{ eip: '203.0.113.50', publicL3NetworkUuid: ids.pub, privateL3NetworkUuid: fc.ids.l3, privateIp: ids.ip, mac: ids.mac }]);
    assert.deepEqual(s.publicNetworks.map((n) => [n.l3NetworkUuid, n.cidr, n.gateway]), [[ids.pub, '203.0.113.0/24', '203.0.113.1']]);
    assert.deepEqual(s.privateNetworks.map((n) => [n.l3NetworkUuid, n.cidr, n.gateway]), [[fc.ids.l3, '10.77.0.0/24', '10.77.0.1']]);
    assert.ok(s.publicNetworks[0]!.bridge && s.privateNetworks[0]!.bridge);
    assert.equal(setOf(fc.hosts[1]!.uuid), undefined, 'the other host has none');
    assert.equal(fc.vrouter.callsOf(VPC.RouterApply.name).length, routerCalls);
    assert.deepEqual((await fc.api.get(`/v1/vips/${ids.vip}`)).body.useFor, ['EIP']);
  });

  it('refused with a 400 naming the field: port forwarding to a flat NIC, a VIP whose public L2 the host lacks, a second EIP on the NIC', async () => {
    const vip2 = await post('/v1/vips', { name: 'fe-vip2', l3NetworkUuid: ids.pub });
    const pf = await fc.api.post('/v1/port-forwarding-rules', { name: 'x', vipUuid: vip2.uuid, vipPortStart: 22, privatePortStart: 22, protocolType: 'TCP', vmNicUuid: ids.nic });
    assert.equal(pf.status, 400, JSON.stringify(pf.body));
    assert.equal(field(pf), 'vmNicUuid');
    const farVip = await post('/v1/vips', { name: 'fe-far-vip', l3NetworkUuid: ids.far });
    const far = await fc.api.post('/v1/eips', { name: 'x', vipUuid: farVip.uuid, vmNicUuid: ids.nic });
    assert.equal(far.status, 400, JSON.stringify(far.body));
    assert.equal(field(far), 'vmNicUuid');
    const twice = await fc.api.post('/v1/eips', { name: 'x', vipUuid: vip2.uuid, vmNicUuid: ids.nic });
    assert.equal(twice.status, 409, JSON.stringify(twice.body));
    assert.equal((await fc.api.get('/v1/eips?q=name=x')).body.inventories.length, 0, 'refused EIPs are not left behind');
  });

  it('the agent loses its state: the periodic pass sends the set again', async () => {
    fc.vrouter.flatEips.clear();
    const t0 = Date.now();
    while (!setOf(fc.hosts[0]!.uuid) && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 50));
    assert.equal(setOf(fc.hosts[0]!.uuid)?.eips.length, 1);
  });

  it('detach empties the host; attach again; deleting the VM empties the host (the EIP stays)', async () => {
    assert.equal((await act('eips', ids.eip, 'detach')).status, 200);
    assert.equal(setOf(fc.hosts[0]!.uuid), undefined);
    assert.equal((await act('eips', ids.eip, 'attach', { vmNicUuid: ids.nic })).status, 200);
    assert.equal(setOf(fc.hosts[0]!.uuid)?.eips.length, 1);
    const d = await fc.api.del(`/v1/vm-instances/${ids.vm}?wait=true`);
    assert.ok([200, 202].includes(d.status), JSON.stringify(d.body));
    const t0 = Date.now();
    while (setOf(fc.hosts[0]!.uuid) && Date.now() - t0 < 10_000) await settle();
    assert.equal(setOf(fc.hosts[0]!.uuid), undefined);
    assert.ok(fc.vrouter.callsOf(V.FlatEipApply.name).some((x: any) => x.hostUuid === fc.hosts[0]!.uuid && x.eips.length === 0), 'an empty set was sent');
    const e = (await fc.api.get(`/v1/eips/${ids.eip}`)).body;
    assert.equal(e.uuid, ids.eip, 'a destroyed VM keeps its NIC and EIP (until expunged); the host serves it no more');
  });
});
