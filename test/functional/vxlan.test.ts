// Functional tier: VXLAN pools and VXLAN networks on the fake cloud (two hosts, each a real
// kvmagent over a fake network backend). Checked: VNI allocation, uniqueness and exhaustion;
// the 400s naming the field; a pool's attach with a VTEP CIDR makes every host build the
// network's vxlan device with its own VTEP and the other host as unicast peer; VMs and L3s on
// VXLAN networks; the delete and detach rules (a pool's networks go with it; VMs block).
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { fakeCloudApi } from '../harness/fake-cloud-api.js';
import { attachedFrom } from '../../controller/model/attachments.js';
import { vniNamespace } from '../../controller/network/vxlan.js';

describe('functional: VXLAN pools and networks (fake cloud, two hosts)', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const ids: Record<string, string> = {};
  const { post, field } = fakeCloudApi(() => fc);

  const refused = async (path: string, body: unknown, status: number, f: string): Promise<void> => {
    const r = await fc.api.post(path, body);
    assert.equal(r.status, status, `POST ${path} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(field(r), f, JSON.stringify(r.body));
  };
  const attachPool = (clusterUuid: string, params: Record<string, unknown>) => fc.api.post(`/v1/clusters/${clusterUuid}/actions?wait=true`, { attachL2Network: params });
  const vxnet = (name: string, extra: Record<string, unknown> = {}) => fc.api.post('/v1/l2-networks', { name, zoneUuid: fc.ids.zone, type: 'VxlanNetwork', poolUuid: ids.pool, ...extra });
  const net = (n: number) => fc.hosts[n]!.kvm.network!;

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 1 });
    // the fake hosts share 127.0.0.1 as management IP: give each a tunnel address of its own
    await fc.controller.store.update(fc.ids.host!, { ipv4Addresses: ['127.0.0.1', '192.0.2.11'] });
    await fc.controller.store.update(fc.ids.host2!, { ipv4Addresses: ['127.0.0.1', '192.0.2.12'] });
  });

  it('a pool needs its VNI range (400 naming the field); the issue\'s short type names are accepted', async () => {
    const base = { name: 'p', zoneUuid: fc.ids.zone, type: 'VxlanNetworkPool' };
    await refused('/v1/l2-networks', { ...base, vniStartInclusive: 100 }, 400, 'vniEndInclusive');
    await refused('/v1/l2-networks', { ...base, vniStartInclusive: 200, vniEndInclusive: 100 }, 400, 'vniEndInclusive');
    await refused('/v1/l2-networks', { ...base, vniStartInclusive: 0, vniEndInclusive: 10 }, 400, 'vniStartInclusive');
    await refused('/v1/l2-networks', { ...base, vniStartInclusive: 1, vniEndInclusive: 16_777_215 }, 400, 'vniEndInclusive');
    await refused('/v1/l2-networks', { ...base, vniStartInclusive: 1, vniEndInclusive: 2, vni: 1 }, 400, 'vni');
    await refused('/v1/l2-networks', { name: 'x', zoneUuid: fc.ids.zone }, 400, 'physicalInterface');
    const p = await post('/v1/l2-networks', { ...base, name: 'fc-pool', vniStartInclusive: 100, vniEndInclusive: 102 });
    assert.equal(p.type, 'L2VxlanNetworkPool');
    ids.pool = p.uuid;
    await refused('/v1/l3-networks', { name: 'on-pool', l2NetworkUuid: ids.pool }, 400, 'l2NetworkUuid');
  });

  it('attaching a pool to a cluster needs a VTEP CIDR every host has an address in', async () => {
    let r = await attachPool(fc.ids.cluster!, { l2NetworkUuid: ids.pool });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(field(r), 'vtepCidr');
    r = await attachPool(fc.ids.cluster!, { l2NetworkUuid: ids.pool, vtepCidr: '198.18.0.0/24' });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(field(r), 'vtepCidr');
    assert.match(JSON.stringify(r.body), /has no address in 198\.18\.0\.0\/24/);
    r = await attachPool(fc.ids.cluster!, { l2NetworkUuid: ids.pool, vtepCidr: '192.0.2.0/33' });
    assert.equal(r.status, 400);
    assert.equal(field(r), 'vtepCidr');
    r = await attachPool(fc.ids.cluster!, { l2NetworkUuid: ids.pool, vtepCidr: '192.0.2.0/24' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    r = await attachPool(fc.ids.cluster!, { l2NetworkUuid: fc.ids.l2, vtepCidr: '192.0.2.0/24' });
    assert.equal(r.status, 400, 'a VTEP CIDR is for pools only');
    assert.equal(field(r), 'vtepCidr');
  });

  it('VXLAN networks: VNI allocated lowest-first or as given, unique in the pool; out of range → 400 vni; exhausted → 409', async () => {
    const a = await vxnet('fc-vx-a');
    assert.equal(a.status, 201, JSON.stringify(a.body));
    assert.equal(a.body.type, 'L2VxlanNetwork');
    assert.equal(a.body.vni, 100);
    ids.a = a.body.uuid;
    const c = await vxnet('fc-vx-c', { vni: 102 });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.vni, 102);
    ids.c = c.body.uuid;
    await refused('/v1/l2-networks', { name: 'out', zoneUuid: fc.ids.zone, type: 'VxlanNetwork', poolUuid: ids.pool, vni: 5000 }, 400, 'vni');
    await refused('/v1/l2-networks', { name: 'dup', zoneUuid: fc.ids.zone, type: 'VxlanNetwork', poolUuid: ids.pool, vni: 102 }, 409, 'vni');
    await refused('/v1/l2-networks', { name: 'nopool', zoneUuid: fc.ids.zone, type: 'VxlanNetwork' }, 400, 'poolUuid');
    await refused('/v1/l2-networks', { name: 'notpool', zoneUuid: fc.ids.zone, type: 'VxlanNetwork', poolUuid: fc.ids.l2 }, 400, 'poolUuid');
    const b = await vxnet('fc-vx-b');
    assert.equal(b.body.vni, 101, 'the lowest free VNI');
    ids.b = b.body.uuid;
    const full = await vxnet('fc-vx-full');
    assert.equal(full.status, 409, JSON.stringify(full.body));
    assert.match(full.body.error?.message ?? JSON.stringify(full.body), /no free VNI/);
    const claims = (await fc.controller.store.claims(vniNamespace(ids.pool))).map((x) => `${x.key}:${x.owner}`).sort();
    assert.deepEqual(claims, [`100:${ids.a}`, `101:${ids.b}`, `102:${ids.c}`].sort(), 'refused creates left no VNI claimed');
  });

  it('each host builds the network\'s vxlan device on its own VTEP with the other host as unicast peer', async () => {
    assert.deepEqual((await attachedFrom(fc.controller.store, 'cluster-l2-network', ids.a!)).sort(), [fc.ids.cluster], 'a VXLAN network follows its pool\'s clusters');
    for (const [n, me, peer] of [[0, '192.0.2.11', '192.0.2.12'], [1, '192.0.2.12', '192.0.2.11']] as const) {
      const dev = net(n).links.get('vxlan100');
      assert.ok(dev, `host ${n + 1} has vxlan100`);
      assert.equal(dev.kind, 'vxlan');
      assert.equal(dev.vni, 100);
      assert.equal(dev.local, me);
      assert.equal(dev.master, 'br_vx_100');
      assert.deepEqual(net(n).fdb.get('vxlan100'), [peer]);
      assert.ok(net(n).links.get('vxlan102'), 'every network of the pool');
    }
    const x = await fc.api.get(`/v1/l2-networks/${ids.a}`);
    assert.equal(x.body.bridgeName, 'br_vx_100');
  });

  it('a VXLAN network follows its pool: attaching it alone to another cluster is refused (400 l2NetworkUuid)', async () => {
    const c2 = await post('/v1/clusters', { name: 'fc-cluster2', zoneUuid: fc.ids.zone });
    const r = await fc.api.post(`/v1/clusters/${c2.uuid}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: ids.a } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(field(r), 'l2NetworkUuid');
    const d = await fc.api.post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { detachL2Network: { l2NetworkUuid: ids.a } });
    assert.equal(d.status, 400, 'detached only with the pool');
  });

  it('a VM on a flat L3 over a VXLAN network plugs into br_vx_<vni>; the network and the pool cannot go while it exists', async () => {
    const l3 = await post('/v1/l3-networks', { name: 'fc-vx-l3', l2NetworkUuid: ids.a });
    ids.l3 = l3.uuid;
    await post('/v1/ip-ranges', { l3NetworkUuid: ids.l3, networkCidr: '10.88.0.0/24' });
    const vm = await fc.createVm('fc-vx-vm', { l3NetworkUuids: [ids.l3] });
    assert.equal(vm.status, 200, JSON.stringify(vm.body));
    ids.vm = vm.body.uuid;
    const domain = [...fc.hosts.map((h) => h.kvm.driver)].flatMap((d) => [...(d as any).domains.values()]).find((x: any) => JSON.stringify(x).includes(ids.vm!));
    assert.match(JSON.stringify(domain), /br_vx_100/, 'the NIC is on the VXLAN bridge');
    const del = await fc.api.del(`/v1/l2-networks/${ids.a}?cascade=true`);
    assert.equal(del.status, 409, JSON.stringify(del.body));
    const dp = await fc.api.del(`/v1/l2-networks/${ids.pool}?cascade=true`);
    assert.equal(dp.status, 409, JSON.stringify(dp.body));
    const det = await fc.api.post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { detachL2Network: { l2NetworkUuid: ids.pool } });
    assert.equal(det.status, 409, JSON.stringify(det.body));
    assert.equal((await fc.api.del(`/v1/vm-instances/${ids.vm}?wait=true`)).status, 200);
    assert.equal((await fc.action(ids.vm!, 'expunge')).status, 200);
  });

  it('delete: a network\'s L3 needs cascade; its VNI is free again and its bridges leave the hosts', async () => {
    const plain = await fc.api.del(`/v1/l2-networks/${ids.a}`);
    assert.equal(plain.status, 409, JSON.stringify(plain.body));
    const r = await fc.api.del(`/v1/l2-networks/${ids.a}?cascade=true`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await fc.api.get(`/v1/l3-networks/${ids.l3}`)).status, 404);
    for (const n of [0, 1]) assert.equal(net(n).links.get('vxlan100'), undefined, `host ${n + 1}: vxlan100 gone`);
    const again = await vxnet('fc-vx-again');
    assert.equal(again.body.vni, 100, 'the VNI was given back');
    ids.again = again.body.uuid;
  });

  it('detaching the pool detaches its networks and removes their devices; deleting the pool needs cascade and takes its networks', async () => {
    const det = await fc.api.post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { detachL2Network: { l2NetworkUuid: ids.pool } });
    assert.equal(det.status, 200, JSON.stringify(det.body));
    assert.deepEqual(await attachedFrom(fc.controller.store, 'cluster-l2-network', ids.b!), []);
    for (const n of [0, 1]) assert.deepEqual([...net(n).links.keys()].filter((k) => k.startsWith('vxlan')), [], `host ${n + 1}: no vxlan device left`);
    const plain = await fc.api.del(`/v1/l2-networks/${ids.pool}`);
    assert.equal(plain.status, 409, JSON.stringify(plain.body));
    assert.match(JSON.stringify(plain.body), /VXLAN networks/);
    assert.equal((await fc.api.del(`/v1/l2-networks/${ids.pool}?cascade=true`)).status, 200);
    for (const u of [ids.b, ids.c, ids.again]) assert.equal((await fc.api.get(`/v1/l2-networks/${u}`)).status, 404);
    assert.deepEqual(await fc.controller.store.claims(vniNamespace(ids.pool!)), []);
  });
});
