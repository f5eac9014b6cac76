// Functional tier: route tables of VPC routers on the fake cloud — the entries reach the
// router's desired state (vrouter/apply `routes`), and bad entries are refused naming the field.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { fakeCloudApi, vpcNetworks, vpcRouter } from '../harness/fake-cloud-api.js';
import { vpcModule } from '../../controller/vpc/module.js';

describe('functional: route tables of VPC routers (fake cloud)', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const ids: Record<string, string> = {};

  const api = fakeCloudApi(() => fc);
  const { post, field, lastRouterSpec: lastSpec } = api;
  const act = (uuid: string, action: string, params: Record<string, unknown>) => api.act('route-tables', uuid, action, params);
  const refused = async (uuid: string, action: string, params: Record<string, unknown>, status: number, f: string): Promise<void> => {
    const r = await act(uuid, action, params);
    assert.equal(r.status, status, `${action} ${JSON.stringify(params)}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(field(r), f, JSON.stringify(r.body));
  };

  before(async () => {
    fc = await startFakeCloud(cleanup, { modules: [vpcModule() as never] });
    const nets = await vpcNetworks(post, fc, 'rt', 100, '198.51.100.0/24', ['10.1.0.0/24']);
    ids.pub = nets.pub;
    ids.a = nets.vpc[0]!;
    ids.router = (await vpcRouter(post, fc, nets)).uuid;
  });

  it('a table attached at create; entries appear in the router\'s desired state as static and blackhole routes', async () => {
    const t = await post('/v1/route-tables', { name: 'rt1', vpcRouterUuids: [ids.router] });
    ids.t = t.uuid;
    assert.deepEqual(t.routes, []);
    assert.equal(lastSpec().routes, undefined, 'an empty table: no routes');
    let r = await act(ids.t, 'addRouteEntry', { destination: '172.16.0.0/16', target: '10.1.0.5' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.routes, [{ destination: '172.16.0.0/16', type: 'UserStatic', target: '10.1.0.5', distance: 128 }]);
    r = await act(ids.t, 'addRouteEntry', { destination: '203.0.113.7/24', type: 'UserBlackHole', distance: 10 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(lastSpec().routes, [
      { destination: '172.16.0.0/16', type: 'Static', nextHop: '10.1.0.5', metric: 128 },
      { destination: '203.0.113.0/24', type: 'Blackhole', metric: 10 },
    ]);
    assert.equal(lastSpec().routerUuid, ids.router);
  });

  it('bad entries: 400 naming destination or target; a duplicate destination 409', async () => {
    await refused(ids.t!, 'addRouteEntry', { destination: '172.17.0.0/16' }, 400, 'target');
    await refused(ids.t!, 'addRouteEntry', { destination: '172.17.0.0/16', type: 'UserBlackHole', target: '10.1.0.5' }, 400, 'target');
    await refused(ids.t!, 'addRouteEntry', { destination: '172.17.0.0/16', target: '192.0.2.1' }, 400, 'target');
    await refused(ids.t!, 'addRouteEntry', { destination: '172.17.0.0/16', target: '10.1.0.1' }, 400, 'target');
    await refused(ids.t!, 'addRouteEntry', { destination: '10.1.0.128/25', target: '10.1.0.5' }, 400, 'destination');
    await refused(ids.t!, 'addRouteEntry', { destination: '0.0.0.0/0', target: '198.51.100.77' }, 400, 'destination');
    await refused(ids.t!, 'addRouteEntry', { destination: '10.300.0.0/16', target: '10.1.0.5' }, 400, 'destination');
    await refused(ids.t!, 'addRouteEntry', { destination: '172.16.0.0/16', target: '10.1.0.6' }, 409, 'destination');
    await refused(ids.t!, 'removeRouteEntry', { destination: '172.18.0.0/16' }, 400, 'destination');
  });

  it('a router takes one table (409); remove, detach and delete take the routes away', async () => {
    const t2 = await post('/v1/route-tables', { name: 'rt2' });
    await refused(t2.uuid, 'attachVpcRouter', { vpcRouterUuid: ids.router }, 409, 'vpcRouterUuid');
    const dup = await fc.api.post('/v1/route-tables', { name: 'rt3', vpcRouterUuids: [ids.router] });
    assert.equal(dup.status, 409, JSON.stringify(dup.body));
    assert.equal((await act(ids.t!, 'removeRouteEntry', { destination: '172.16.0.0/16' })).status, 200);
    assert.deepEqual(lastSpec().routes, [{ destination: '203.0.113.0/24', type: 'Blackhole', metric: 10 }]);
    assert.equal((await act(ids.t!, 'detachVpcRouter', { vpcRouterUuid: ids.router })).status, 200);
    assert.equal(lastSpec().routes, undefined);
    assert.equal((await act(t2.uuid, 'addRouteEntry', { destination: '172.20.0.0/16', target: '198.51.100.50' })).status, 200, 'unattached: not checked against a router yet');
    assert.equal((await act(t2.uuid, 'attachVpcRouter', { vpcRouterUuid: ids.router })).status, 200);
    assert.deepEqual(lastSpec().routes, [{ destination: '172.20.0.0/16', type: 'Static', nextHop: '198.51.100.50', metric: 128 }], 'a next hop on the public network');
    await refused(ids.t!, 'attachVpcRouter', { vpcRouterUuid: ids.router }, 409, 'vpcRouterUuid');
    assert.equal((await fc.api.del(`/v1/route-tables/${t2.uuid}`)).status, 200);
    assert.equal(lastSpec().routes, undefined, 'the table deleted: its routes leave the router');
  });
});
