// changeOwner (issue 18) on a real controller — SQLite and Redis — with the fake-cloud host: the
// admin gives a VM (with its root volume and NIC) to another account after checking that
// account's quotas (a refusal names the quota and moves nothing), the usage moves with it, and
// the old owner no longer sees it; images move too; only the admin may do it. A VM on a VPC
// network moves with the EIP and port forwards on its NIC and their VIPs (quotas checked, the
// router still serving them for the new owner); a move that would split a rule from its NIC is
// refused.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import type { ApiClient } from '../../harness/controller.js';
import { identityModule } from '../../../controller/identity/module.js';
import type { Resource } from '../../../controller/store/types.js';
import { vpcModule } from '../../../controller/vpc/module.js';
import * as VPC from '../../../shared/protocol/vpc.js';
import type { RouterSpecT } from '../../../shared/protocol/vpc.js';

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: changeOwner (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let fc: FakeCloud;
    let a: ApiClient & { accountUuid: string };
    let b: ApiClient & { accountUuid: string };

    const used = async (account: string): Promise<Record<string, number>> =>
      Object.fromEntries((await fc.api.get(`/v1/quotas?q=identityUuid=${account}`)).body.inventories.map((q: { name: string; used: number }) => [q.name, q.used]));

    before(async function () {
      const o: Parameters<typeof startFakeCloud>[1] = { modules: [identityModule({ repairPeriodMs: 0 }) as never, vpcModule() as never] };
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `o-${randomUUID().slice(0, 8)}:`;
      }
      fc = await startFakeCloud(cleanup, o);
      a = await fc.controller.account(`own-a-${backend}`);
      b = await fc.controller.account(`own-b-${backend}`);
    });

    it("a VM moves with its volume and NIC after the target's quotas are checked; usage moves with it", async function () {
      const vm = await a.post('/v1/vm-instances?wait=true', { name: 'moving', instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
      assert.equal(vm.status, 200, JSON.stringify(vm.body));
      const u = vm.body.uuid as string;
      const root = (await a.get(`/v1/volumes?q=vmInstanceUuid=${u}`)).body.inventories[0];
      assert.equal((await a.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } })).status, 403, 'admin only');
      assert.equal((await fc.api.post(`/v1/volumes/${root.uuid}/actions`, { changeOwner: { accountUuid: b.accountUuid } })).status, 409, 'a root volume goes with its VM');
      assert.equal((await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: randomUUID() } })).status, 400);

      assert.equal((await fc.api.post(`/v1/accounts/${b.accountUuid}/actions`, { updateQuota: { name: 'vm.cpuNum', value: 0 } })).status, 200);
      const refused = await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } });
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'QUOTA_EXCEEDED');
      assert.match(refused.body.message, /vm\.cpuNum/);
      assert.equal((await a.get(`/v1/vm-instances/${u}`)).status, 200, 'nothing moved');
      assert.equal((await b.get(`/v1/vm-instances/${u}`)).status, 404);
      assert.equal((await used(b.accountUuid))['vm.totalNum'], 0, "the refused reservation was undone");

      assert.equal((await fc.api.post(`/v1/accounts/${b.accountUuid}/actions`, { updateQuota: { name: 'vm.cpuNum', value: 80 } })).status, 200);
      const before = await used(a.accountUuid);
      const moved = await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } });
      assert.equal(moved.status, 200, JSON.stringify(moved.body));
      assert.deepEqual(moved.body.moved.map((m: { kind: string }) => m.kind).sort(), ['vm-instance', 'vm-nic', 'volume']);
      for (const m of moved.body.moved as Array<{ uuid: string }>) assert.equal((await fc.controller.store.get<Resource>(m.uuid))!.ownerAccountUuid, b.accountUuid);
      assert.equal((await a.get(`/v1/vm-instances/${u}`)).status, 404);
      assert.equal((await b.get(`/v1/vm-instances/${u}`)).status, 200);
      const ua = await used(a.accountUuid);
      const ub = await used(b.accountUuid);
      assert.equal(ua['vm.totalNum'], before['vm.totalNum']! - 1);
      assert.equal(ua['volume.capacity'], before['volume.capacity']! - Number(root.size));
      assert.equal(ub['vm.totalNum'], 1);
      assert.equal(ub['vm.num'], 1);
      assert.equal(ub['volume.capacity'], Number(root.size));
      const stop = await b.post(`/v1/vm-instances/${u}/actions?wait=true`, { stop: {} });
      assert.equal(stop.status, 200, JSON.stringify(stop.body));
      assert.equal((await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } })).status, 409, 'already its owner');
    });

    it("an image moves: the catalog image becomes the account's own, invisible to others", async function () {
      const now = new Date().toISOString();
      const img = await fc.controller.store.create<Resource>({ uuid: randomUUID(), kind: 'image', name: 'gift', ownerAccountUuid: fc.controller.auth.adminAccountUuid, tags: [], createDate: now, lastOpDate: now, state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 1 << 26 });
      assert.equal((await b.get(`/v1/images/${img.uuid}`)).status, 200, 'shared with all while the admin owns it');
      const r = await fc.api.post(`/v1/images/${img.uuid}/actions`, { changeOwner: { accountUuid: a.accountUuid } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await a.get(`/v1/images/${img.uuid}`)).status, 200);
      assert.equal((await b.get(`/v1/images/${img.uuid}`)).status, 404);
      assert.equal((await used(a.accountUuid))['image.num'], 1);
    });

    it('a VM on a VPC network moves with the EIP and port forwards on its NIC and their VIPs; a split binding is refused', async function () {
      const admin = async (path: string, body: unknown, expect = 201): Promise<any> => {
        const r = await fc.api.post(path, body);
        assert.equal(r.status, expect, `POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
        return r.body;
      };
      const l3 = async (name: string, vlan: number, extra: Record<string, unknown>, cidr: string): Promise<string> => {
        const l2 = await admin('/v1/l2-networks', { name: `${name}-l2`, zoneUuid: fc.ids.zone, physicalInterface: 'eth0', vlan });
        await admin(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: l2.uuid } }, 200);
        const n = await admin('/v1/l3-networks', { name, l2NetworkUuid: l2.uuid, ...extra });
        await admin('/v1/ip-ranges', { l3NetworkUuid: n.uuid, networkCidr: cidr });
        return n.uuid;
      };
      const pub = await l3('own-pub', 100, { category: 'Public' }, '198.51.100.0/24');
      const priv = await l3('own-vpc', 101, { type: 'L3VpcNetwork' }, '10.1.0.0/24');
      const offering = (await admin('/v1/virtual-router-offerings', { name: 'own-vr', zoneUuid: fc.ids.zone, publicNetworkUuid: pub, cpuNum: 1, memorySize: 268435456 })).uuid;
      const router = (await admin('/v1/vpc-routers', { name: 'own-router', virtualRouterOfferingUuid: offering })).uuid;
      await admin(`/v1/vpc-routers/${router}/actions?wait=true`, { attachL3Network: { l3NetworkUuid: priv } }, 200);
      const eipsOnRouter = (): RouterSpecT['eips'] => (fc.vrouter.callsOf(VPC.RouterApply.name).at(-1) as { router: RouterSpecT }).router.eips;

      const mk = async (c: ApiClient, path: string, body: Record<string, unknown>): Promise<any> => {
        const r = await c.post(path, body);
        assert.equal(r.status, path.includes('wait=true') ? 200 : 201, `POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
        return r.body;
      };
      const vm = await mk(a, '/v1/vm-instances?wait=true', { name: 'eip-vm', instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [priv] });
      const other = await mk(a, '/v1/vm-instances?wait=true', { name: 'eip-other', instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [priv] });
      const nic = vm.vmNics[0].uuid as string;
      const vip1 = (await mk(a, '/v1/vips', { name: 'a-vip1', l3NetworkUuid: pub })).uuid as string;
      const eip = await mk(a, '/v1/eips', { name: 'a-eip', vipUuid: vip1, vmNicUuid: nic });
      const vip2 = (await mk(a, '/v1/vips', { name: 'a-vip2', l3NetworkUuid: pub })).uuid as string;
      const pf = await mk(a, '/v1/port-forwarding-rules', { name: 'a-ssh', vipUuid: vip2, vipPortStart: 2222, privatePortStart: 22, protocolType: 'TCP', vmNicUuid: nic });
      // a second rule on the same VIP forwards to the VM that stays: moving the VM would split it
      const pfOther = await mk(a, '/v1/port-forwarding-rules', { name: 'a-other', vipUuid: vip2, vipPortStart: 2223, privatePortStart: 22, protocolType: 'TCP', vmNicUuid: other.vmNics[0].uuid });
      assert.deepEqual(eipsOnRouter(), [{ eip: eip.vipIp, privateIp: vm.vmNics[0].ip }]);
      const ua = await used(a.accountUuid);
      assert.deepEqual([ua['eip.num'], ua['vip.num'], ua['portForwarding.num']], [1, 2, 2]);

      const change = (col: string, uuid: string) => fc.api.post(`/v1/${col}/${uuid}/actions`, { changeOwner: { accountUuid: b.accountUuid } });
      for (const [col, uuid, rule] of [['vm-instances', vm.uuid, pfOther.uuid], ['eips', eip.uuid, eip.uuid], ['vips', vip1, eip.uuid], ['vips', vip2, pf.uuid]] as const) {
        const r = await change(col, uuid);
        assert.equal(r.status, 409, `${col} ${JSON.stringify(r.body)}`);
        assert.equal(r.body.details?.uuid ?? r.body.uuid, rule, JSON.stringify(r.body));
        assert.match(r.body.message, /would belong to different accounts/);
      }
      assert.equal((await b.get(`/v1/vm-instances/${vm.uuid}`)).status, 404, 'nothing moved');
      assert.equal((await b.get(`/v1/eips/${eip.uuid}`)).status, 404);

      assert.equal((await a.del(`/v1/port-forwarding-rules/${pfOther.uuid}`)).status, 200);
      assert.equal((await fc.api.post(`/v1/accounts/${b.accountUuid}/actions`, { updateQuota: { name: 'eip.num', value: 0 } })).status, 200);
      const refused = await change('vm-instances', vm.uuid);
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'QUOTA_EXCEEDED');
      assert.match(refused.body.message, /eip\.num/);
      assert.equal((await used(b.accountUuid))['vip.num'], 0, 'the refused reservations were undone');
      assert.equal((await fc.api.post(`/v1/accounts/${b.accountUuid}/actions`, { updateQuota: { name: 'eip.num', value: 20 } })).status, 200);

      const moved = await change('vm-instances', vm.uuid);
      assert.equal(moved.status, 200, JSON.stringify(moved.body));
      assert.deepEqual(moved.body.moved.map((m: { kind: string }) => m.kind).sort(), ['eip', 'port-forwarding-rule', 'vip', 'vip', 'vm-instance', 'vm-nic', 'volume']);
      for (const m of moved.body.moved as Array<{ uuid: string }>) assert.equal((await fc.controller.store.get<Resource>(m.uuid))!.ownerAccountUuid, b.accountUuid);
      const [ua2, ub] = [await used(a.accountUuid), await used(b.accountUuid)];
      assert.deepEqual([ua2['eip.num'], ua2['vip.num'], ua2['portForwarding.num']], [0, 0, 0]);
      assert.deepEqual([ub['eip.num'], ub['vip.num'], ub['portForwarding.num']], [1, 2, 1]);
      for (const [col, uuid] of [['eips', eip.uuid], ['vips', vip1], ['vips', vip2], ['port-forwarding-rules', pf.uuid]]) {
        assert.equal((await a.get(`/v1/${col}/${uuid}`)).status, 404, `${col} gone from A`);
        assert.equal((await b.get(`/v1/${col}/${uuid}`)).status, 200, `${col} seen by B`);
      }
      // the router still serves the EIP, and the new owner runs it: detach, attach again, delete
      await fc.controller.reconcile.idle();
      assert.deepEqual(eipsOnRouter(), [{ eip: eip.vipIp, privateIp: vm.vmNics[0].ip }]);
      assert.equal((await b.post(`/v1/eips/${eip.uuid}/actions?wait=true`, { detach: {} })).status, 200);
      assert.deepEqual(eipsOnRouter(), []);
      const re = await b.post(`/v1/eips/${eip.uuid}/actions?wait=true`, { attach: { vmNicUuid: nic } });
      assert.equal(re.status, 200, JSON.stringify(re.body));
      assert.deepEqual(eipsOnRouter(), [{ eip: eip.vipIp, privateIp: vm.vmNics[0].ip }]);
      assert.equal((await a.post(`/v1/eips`, { name: 'steal', vipUuid: vip1 })).status, 400, "A can no longer use the VIP");
      assert.equal((await b.del(`/v1/port-forwarding-rules/${pf.uuid}`)).status, 200);
      assert.equal((await used(b.accountUuid))['portForwarding.num'], 0);
      // a router's system VIP never moves with a rule on it
      const sys = (await fc.api.get(`/v1/vpc-routers/${router}`)).body.vipUuid as string;
      assert.equal((await change('vips', sys)).status, 409);
    });
  });
}
