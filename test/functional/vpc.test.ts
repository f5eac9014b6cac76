// Functional tier: VPC routers, VIPs, EIPs and port forwarding on the fake cloud — the real
// controller and API, the vrouter agent as a protocol fake that records every vrouter/apply.
// What is checked is the desired state each change sends, and the API's refusals.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { fakeCloudApi, vpcNetworks } from '../harness/fake-cloud-api.js';
import { vpcModule } from '../../controller/vpc/module.js';
import { ipNamespace } from '../../controller/allocator/ip.js';
import * as VPC from '../../shared/protocol/vpc.js';
import * as V from '../../shared/protocol/vrouter.js';

describe('functional: VPC routers, VIPs, EIPs, port forwarding (fake cloud)', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const ids: Record<string, string> = {};
  const { post, act, field, lastRouterSpec: lastSpec } = fakeCloudApi(() => fc);



  before(async () => {
    fc = await startFakeCloud(cleanup, { modules: [vpcModule() as never] });
    const nets = await vpcNetworks(post, fc, 'fc', 100, '198.51.100.0/24', ['10.1.0.0/24', '10.2.0.0/24', '10.1.0.0/25']);
    ids.pub = nets.pub;
    [ids.a, ids.b, ids.overlap] = nets.vpc as [string, string, string];
    ids.offering = (await post('/v1/virtual-router-offerings', { name: 'fc-vr', zoneUuid: fc.ids.zone, publicNetworkUuid: ids.pub, cpuNum: 1, memorySize: 268435456 })).uuid;
  });

  it('a virtual-router offering needs a Public network', async () => {
    const r = await fc.api.post('/v1/virtual-router-offerings', { name: 'bad', zoneUuid: fc.ids.zone, publicNetworkUuid: fc.ids.l3 });
    assert.equal(r.status, 400);
    assert.equal(field(r), 'publicNetworkUuid');
  });

  it('create: Running + Connected on the host, public IP from the public network, the system VIP listed', async () => {
    const r = await post('/v1/vpc-routers', { name: 'fc-router', virtualRouterOfferingUuid: ids.offering, dns: ['198.51.100.1'] });
    ids.router = r.uuid;
    assert.equal(r.state, 'Running');
    assert.equal(r.status, 'Connected');
    assert.equal(r.hostUuid, fc.ids.host);
    assert.match(r.publicIp, /^198\.51\.100\.\d+$/);
    assert.deepEqual(r.l3NetworkUuids, []);
    const spec = lastSpec();
    assert.equal(spec.public.ip, r.publicIp);
    assert.equal(spec.public.gateway, '198.51.100.1');
    assert.equal(spec.public.prefix, 24);
    const vips = (await fc.api.get(`/v1/vips?q=vpcRouterUuid=${r.uuid}`)).body.inventories;
    assert.equal(vips.length, 1);
    assert.equal(vips[0].ip, r.publicIp);
    assert.equal(vips[0].system, true);
  });

  it('attachL3Network: gateway interfaces; overlapping CIDR, a flat network, a public network refused (400 naming l3NetworkUuid)', async () => {
    assert.equal((await act('vpc-routers', ids.router, 'attachL3Network', { l3NetworkUuid: ids.a })).status, 200);
    const r = await act('vpc-routers', ids.router, 'attachL3Network', { l3NetworkUuid: ids.b });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.l3NetworkUuids, [ids.a, ids.b]);
    assert.deepEqual(lastSpec().networks.map((n) => [n.ip, n.cidr]), [['10.1.0.1', '10.1.0.0/24'], ['10.2.0.1', '10.2.0.0/24']]);
    for (const u of [ids.overlap, fc.ids.l3, ids.pub]) {
      const x = await act('vpc-routers', ids.router, 'attachL3Network', { l3NetworkUuid: u });
      assert.equal(x.status, 400, JSON.stringify(x.body));
      assert.equal(field(x), 'l3NetworkUuid');
    }
    assert.equal((await act('vpc-routers', ids.router, 'attachL3Network', { l3NetworkUuid: ids.a })).status, 409);
  });

  it('a VM on a VPC network: DHCP from the flat namespace with the router as gateway and DNS; the router knows its name', async () => {
    const vm = await fc.createVm('fc-vpc-vm1', { l3NetworkUuids: [ids.a] });
    assert.equal(vm.status, 200, JSON.stringify(vm.body));
    ids.vm = vm.body.uuid;
    ids.nic = vm.body.vmNics[0].uuid;
    ids.vmIp = vm.body.vmNics[0].ip;
    assert.equal(vm.body.vmNics[0].gateway, '10.1.0.1');
    const flat = fc.vrouter.callsOf(V.FlatApply.name).filter((x: any) => x.network.l3NetworkUuid === ids.a).at(-1) as any;
    assert.equal(flat.network.gateway, '10.1.0.1');
    assert.deepEqual(flat.network.dnsServers, ['10.1.0.1'], 'VMs resolve through the router');
    await fc.controller.reconcile.idle();
    assert.deepEqual(lastSpec().dns, { forwarders: ['198.51.100.1'], records: [{ name: 'fc-vpc-vm1', ip: ids.vmIp }] });
  });

  it('VIPs: a private L3 is refused; requiredIp is honoured or refused', async () => {
    const bad = await fc.api.post('/v1/vips', { name: 'v', l3NetworkUuid: ids.a });
    assert.equal(bad.status, 400);
    assert.equal(field(bad), 'l3NetworkUuid');
    const v = await post('/v1/vips', { name: 'fc-vip1', l3NetworkUuid: ids.pub, requiredIp: '198.51.100.200' });
    assert.equal(v.ip, '198.51.100.200');
    ids.vip1 = v.uuid;
    const dup = await fc.api.post('/v1/vips', { name: 'dup', l3NetworkUuid: ids.pub, requiredIp: '198.51.100.200' });
    assert.equal(dup.status, 409);
    ids.vip2 = (await post('/v1/vips', { name: 'fc-vip2', l3NetworkUuid: ids.pub })).uuid;
  });

  it('EIP: attach sends 1:1 NAT, detach removes it; the system VIP and another account\'s NIC are refused', async () => {
    const sys = (await fc.api.get(`/v1/vpc-routers/${ids.router}`)).body.vipUuid;
    const r1 = await fc.api.post('/v1/eips', { name: 'bad', vipUuid: sys });
    assert.equal(r1.status, 400);
    assert.equal(field(r1), 'vipUuid');
    const other = await fc.controller.account('eip-other');
    const ov = await other.post('/v1/vips', { name: 'other-vip', l3NetworkUuid: ids.pub });
    assert.equal(ov.status, 201, JSON.stringify(ov.body));
    const r2 = await other.post('/v1/eips', { name: 'x', vipUuid: ov.body.uuid, vmNicUuid: ids.nic });
    assert.equal(r2.status, 400, JSON.stringify(r2.body));
    assert.equal(field(r2), 'vmNicUuid');
    const e = await post('/v1/eips', { name: 'fc-eip', vipUuid: ids.vip1, vmNicUuid: ids.nic });
    ids.eip = e.uuid;
    assert.equal(e.guestIp, ids.vmIp);
    assert.deepEqual(lastSpec().eips, [{ eip: '198.51.100.200', privateIp: ids.vmIp }]);
    assert.deepEqual(lastSpec().vips, ['198.51.100.200']);
    // the VIP uuids the agent labels its ZStack/VIP traffic metrics with: the system VIP's and the EIP's
    const router = (await fc.api.get(`/v1/vpc-routers/${ids.router}`)).body;
    assert.deepEqual(lastSpec().vipUuids, [{ ip: router.publicIp, vipUuid: sys }, { ip: '198.51.100.200', vipUuid: ids.vip1 }].sort((a, b) => (a.ip < b.ip ? -1 : 1)));
    const vip = (await fc.api.get(`/v1/vips/${ids.vip1}`)).body;
    assert.deepEqual(vip.useFor, ['EIP']);
    const pfOnEip = await fc.api.post('/v1/port-forwarding-rules', { name: 'x', vipUuid: ids.vip1, vipPortStart: 80, privatePortStart: 80, protocolType: 'TCP' });
    assert.equal(pfOnEip.status, 400);
    assert.equal(field(pfOnEip), 'vipUuid');
    const d = await act('eips', ids.eip, 'detach');
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.deepEqual(lastSpec().eips, []);
    assert.equal((await act('eips', ids.eip, 'attach', { vmNicUuid: ids.nic })).status, 200);
    assert.deepEqual(lastSpec().eips, [{ eip: '198.51.100.200', privateIp: ids.vmIp }]);
  });

  it('port forwarding: VIP:2222 → VM:22; overlapping ports refused (409); unequal ranges refused (400)', async () => {
    const pf = await post('/v1/port-forwarding-rules', { name: 'fc-ssh', vipUuid: ids.vip2, vipPortStart: 2222, privatePortStart: 22, protocolType: 'TCP', vmNicUuid: ids.nic });
    ids.pf = pf.uuid;
    const vip2 = (await fc.api.get(`/v1/vips/${ids.vip2}`)).body;
    assert.deepEqual(lastSpec().portForwards, [{ vip: vip2.ip, protocol: 'TCP', vipPortStart: 2222, vipPortEnd: 2222, privateIp: ids.vmIp, privatePortStart: 22, privatePortEnd: 22 }]);
    const clash = await fc.api.post('/v1/port-forwarding-rules', { name: 'clash', vipUuid: ids.vip2, vipPortStart: 2220, vipPortEnd: 2225, privatePortStart: 2220, privatePortEnd: 2225, protocolType: 'TCP' });
    assert.equal(clash.status, 409, JSON.stringify(clash.body));
    assert.equal((await fc.api.post('/v1/port-forwarding-rules', { name: 'udp-ok', vipUuid: ids.vip2, vipPortStart: 2222, privatePortStart: 22, protocolType: 'UDP' })).status, 201);
    const uneven = await fc.api.post('/v1/port-forwarding-rules', { name: 'u', vipUuid: ids.vip2, vipPortStart: 3000, vipPortEnd: 3001, privatePortStart: 22, protocolType: 'TCP' });
    assert.equal(uneven.status, 400);
    assert.equal(field(uneven), 'privatePortEnd');
    const badCidr = await fc.api.post('/v1/port-forwarding-rules', { name: 'u', vipUuid: ids.vip2, vipPortStart: 3000, privatePortStart: 22, protocolType: 'TCP', allowedCidr: '10.0.0.0/99' });
    assert.equal(badCidr.status, 400);
    assert.equal(field(badCidr), 'allowedCidr');
  });

  it('a network with VMs cannot be detached; a router with them is not deleted without cascade (409 naming the VM)', async () => {
    const d = await act('vpc-routers', ids.router, 'detachL3Network', { l3NetworkUuid: ids.a });
    assert.equal(d.status, 409);
    const del = await fc.api.del(`/v1/vpc-routers/${ids.router}`);
    assert.equal(del.status, 409);
    assert.match(JSON.stringify(del.body), new RegExp(ids.vm!));
    assert.equal((await act('vpc-routers', ids.router, 'detachL3Network', { l3NetworkUuid: ids.b })).status, 200);
    assert.deepEqual(lastSpec().networks.map((n) => n.l3NetworkUuid), [ids.a]);
  });

  it('stop deletes the namespace, start applies it again', async () => {
    const before = fc.vrouter.callsOf(VPC.RouterDelete.name).length;
    assert.equal((await act('vpc-routers', ids.router, 'stop')).body.state, 'Stopped');
    assert.equal(fc.vrouter.callsOf(VPC.RouterDelete.name).length, before + 1);
    const n = fc.vrouter.callsOf(VPC.RouterApply.name).length;
    const s = await act('vpc-routers', ids.router, 'start');
    assert.equal(s.body.state, 'Running');
    assert.equal(s.body.status, 'Connected');
    assert.ok(fc.vrouter.callsOf(VPC.RouterApply.name).length > n);
  });

  it('a failed apply marks the router Disconnected; the reconcile queue retries it to Connected', async () => {
    fc.vrouter.failNext(VPC.RouterApply.name, 'NETWORK_ERROR');
    const r = await act('vpc-routers', ids.router, 'reconnect');
    assert.ok(r.status >= 500, JSON.stringify(r.body));
    assert.equal((await fc.api.get(`/v1/vpc-routers/${ids.router}`)).body.status, 'Disconnected');
    const end = Date.now() + 10_000;
    while ((await fc.api.get(`/v1/vpc-routers/${ids.router}`)).body.status !== 'Connected' && Date.now() < end) await new Promise((x) => setTimeout(x, 200));
    assert.equal((await fc.api.get(`/v1/vpc-routers/${ids.router}`)).body.status, 'Connected');
  });

  it('deleting a VIP deletes its port forwards; deleting the router with cascade releases its public IP', async () => {
    assert.equal((await fc.api.del(`/v1/vips/${ids.vip2}`)).status < 300, true);
    assert.equal((await fc.api.get(`/v1/port-forwarding-rules/${ids.pf}`)).status, 404);
    assert.deepEqual(lastSpec().portForwards, []);
    const publicIp = (await fc.api.get(`/v1/vpc-routers/${ids.router}`)).body.publicIp;
    const del = await fc.api.del(`/v1/vpc-routers/${ids.router}?cascade=true`);
    assert.ok(del.status < 300, JSON.stringify(del.body));
    const mine = fc.vrouter.calls.filter((x) => (x.req as any)?.routerUuid === ids.router || (x.req as any)?.router?.routerUuid === ids.router);
    assert.equal(mine.at(-1)!.command, VPC.RouterDelete.name, 'no apply re-creates the namespace after the delete');
    assert.ok(!(await fc.controller.store.claims(ipNamespace(ids.pub))).some((c) => c.key === publicIp), 'public IP released');
    assert.equal((await fc.api.get(`/v1/eips/${ids.eip}`)).body.vmNicUuid, undefined, 'its EIP stays, detached');
    assert.equal((await fc.controller.store.get(ids.a))!.vpcRouterUuid, undefined);
  });
});
