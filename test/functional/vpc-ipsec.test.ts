// Functional tier: IPsec connections on the fake cloud — the real controller and API, the
// vrouter agent as a protocol fake recording every vrouter/apply. What is checked is the
// router's desired state each change sends (RouterSpec.ipsec, the VIP among its addresses), the
// manual's defaults, the CIDR actions, the key never shown, getStatus, and the API's refusals
// naming the field.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { fakeCloudApi, vpcNetworks, vpcRouter } from '../harness/fake-cloud-api.js';
import { vpcModule } from '../../controller/vpc/module.js';

describe('functional: IPsec connections (fake cloud)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const ids: Record<string, string> = {};

  const api = fakeCloudApi(() => fc);
  const { post, refused, lastRouterSpec: lastSpec } = api;
  const act = (uuid: string, action: string, params: Record<string, unknown> = {}) => api.act('ipsec-connections', uuid, action, params);
  const base = (): Record<string, unknown> => ({ name: 'to-site-b', vipUuid: ids.sysVip, l3NetworkUuids: [ids.a], peerAddress: '203.0.113.7', peerCidrs: ['10.50.0.0/24'], authKey: 'k3y "with" quotes' });

  before(async () => {
    fc = await startFakeCloud(cleanup, { modules: [vpcModule() as never] });
    const nets = await vpcNetworks(post, fc, 'ipsec', 120, '198.51.100.0/24', ['10.21.0.0/24', '10.22.0.0/24', '10.23.0.0/24']);
    ids.pub = nets.pub;
    [ids.a, ids.b, ids.c] = nets.vpc as [string, string, string];
    const r = await vpcRouter(post, fc, nets, [ids.a, ids.b]);
    ids.router = r.uuid;
    ids.sysVip = r.vipUuid;
    ids.publicIp = r.publicIp;
    ids.vip = (await post('/v1/vips', { name: 'ipsec-vip', l3NetworkUuid: ids.pub })).uuid;
  });

  it('a connection on the system VIP takes the manual\'s defaults; the router\'s state gets it, exempt from SNAT by the agent; the key is never returned', async () => {
    const c = await post('/v1/ipsec-connections', base());
    ids.conn = c.uuid;
    for (const [k, v] of Object.entries({ authMode: 'psk', ikeVersion: 'ike', ikeAuthAlgorithm: 'sha1', ikeEncryptionAlgorithm: '3des', ikeDhGroup: 2, policyAuthAlgorithm: 'sha1', policyEncryptionAlgorithm: '3des', pfs: 'dh-group2', policyMode: 'tunnel', transformProtocol: 'esp' })) assert.equal(c[k], v, k);
    assert.deepEqual(c.localCidrs, ['10.21.0.0/24']);
    assert.equal(c.vpcRouterUuid, ids.router);
    assert.equal(c.vipIp, ids.publicIp);
    assert.equal(c.authKey, undefined);
    assert.doesNotMatch(JSON.stringify((await fc.api.get(`/v1/ipsec-connections/${c.uuid}`)).body), /with/);
    assert.doesNotMatch(JSON.stringify((await fc.api.get('/v1/ipsec-connections')).body), /quotes/);
    assert.deepEqual(lastSpec().ipsec, [
      {
        connectionUuid: c.uuid,
        vip: ids.publicIp,
        peerAddress: '203.0.113.7',
        localCidrs: ['10.21.0.0/24'],
        peerCidrs: ['10.50.0.0/24'],
        psk: 'k3y "with" quotes',
        ikeVersion: 'ike',
        ikeAuthAlgorithm: 'sha1',
        ikeEncryptionAlgorithm: '3des',
        ikeDhGroup: 2,
        policyAuthAlgorithm: 'sha1',
        policyEncryptionAlgorithm: '3des',
        pfs: 'dh-group2',
      },
    ]);
    assert.ok((await fc.api.get(`/v1/vips/${ids.sysVip}`)).body.useFor.includes('IPsec'));
  });

  it('getStatus shows the tunnel as the router reports it (up/down, last error)', async () => {
    const r = await act(ids.conn!, 'getStatus');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.status, 'up');
    assert.equal(r.body.ikeState, 'ESTABLISHED');
    assert.equal(r.body.dataPlane, 'libipsec');
    assert.equal(r.body.authKey, undefined);
  });

  it('aes-256/sha256/group 14 on a custom VIP: the VIP joins the router\'s addresses; one connection per VIP and peer (409)', async () => {
    const c = await post('/v1/ipsec-connections', { ...base(), name: 'aes', vipUuid: ids.vip, l3NetworkUuids: [ids.a, ids.b], peerAddress: '192.0.2.9', ikeVersion: 'ikev2', ikeEncryptionAlgorithm: 'aes-256', ikeAuthAlgorithm: 'sha256', ikeDhGroup: 14, policyEncryptionAlgorithm: 'aes-128', policyAuthAlgorithm: 'sha256', pfs: 'none' });
    ids.aes = c.uuid;
    assert.deepEqual(c.localCidrs, ['10.21.0.0/24', '10.22.0.0/24']);
    const vip = (await fc.api.get(`/v1/vips/${ids.vip}`)).body;
    assert.deepEqual(vip.useFor, ['IPsec']);
    assert.equal(vip.vpcRouterUuid, ids.router);
    const spec = lastSpec();
    assert.ok(spec.vips.includes(vip.ip), 'the custom VIP is an address of the router');
    const mine = spec.ipsec!.find((x) => x.connectionUuid === c.uuid)!;
    assert.deepEqual([mine.ikeEncryptionAlgorithm, mine.ikeAuthAlgorithm, mine.ikeDhGroup, mine.policyEncryptionAlgorithm, mine.pfs, mine.ikeVersion], ['aes-256', 'sha256', 14, 'aes-128', 'none', 'ikev2']);
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), vipUuid: ids.vip, peerAddress: '192.0.2.9' }), 409, 'peerAddress');
  });

  it('bad input → 400 naming the field: overlapping CIDRs, a peer CIDR on a router network, host bits, bad peer address, unknown algorithm, foreign network', async () => {
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', peerCidrs: ['10.60.0.0/24', '10.21.0.0/16'] }), 400, 'peerCidrs.1');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', peerCidrs: ['10.22.0.0/25'] }), 400, 'peerCidrs.0');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', peerCidrs: ['10.60.0.1/24'] }), 400, 'peerCidrs.0');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.300' }), 400, 'peerAddress');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '224.0.0.5' }), 400, 'peerAddress');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: ids.publicIp }), 400, 'peerAddress');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', ikeEncryptionAlgorithm: 'blowfish' }), 400, 'ikeEncryptionAlgorithm');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', pfs: 'dh-group99' }), 400, 'pfs');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', authMode: 'rsa' }), 400, 'authMode');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', l3NetworkUuids: [ids.c] }), 400, 'l3NetworkUuids.0');
    refused(await fc.api.post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.8', authKey: '' }), 400, 'authKey');
  });

  it('addPeerCidrs / removePeerCidrs / addLocalCidrs / removeLocalCidrs change the router\'s state; overlaps and strangers are refused naming the field', async () => {
    let r = await act(ids.conn!, 'addPeerCidrs', { peerCidrs: ['10.51.0.0/24'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.peerCidrs, ['10.50.0.0/24', '10.51.0.0/24']);
    assert.deepEqual(lastSpec().ipsec!.find((x) => x.connectionUuid === ids.conn)!.peerCidrs, ['10.50.0.0/24', '10.51.0.0/24']);
    refused(await act(ids.conn!, 'addPeerCidrs', { peerCidrs: ['10.21.0.128/25'] }), 400, 'peerCidrs.0');
    refused(await act(ids.conn!, 'addPeerCidrs', { peerCidrs: ['10.50.0.0/24'] }), 409, 'peerCidrs.0');
    refused(await act(ids.conn!, 'addLocalCidrs', { localCidrs: ['10.51.0.0/16'] }), 400, 'localCidrs.0');
    r = await act(ids.conn!, 'addLocalCidrs', { localCidrs: ['10.30.0.0/16'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(lastSpec().ipsec!.find((x) => x.connectionUuid === ids.conn)!.localCidrs, ['10.21.0.0/24', '10.30.0.0/16']);
    r = await act(ids.conn!, 'removeLocalCidrs', { localCidrs: ['10.30.0.0/16'] });
    assert.deepEqual(r.body.localCidrs, ['10.21.0.0/24']);
    refused(await act(ids.conn!, 'removeLocalCidrs', { localCidrs: ['10.21.0.0/24'] }), 400, 'localCidrs');
    refused(await act(ids.conn!, 'removePeerCidrs', { peerCidrs: ['10.99.0.0/24'] }), 400, 'peerCidrs.0');
    r = await act(ids.conn!, 'removePeerCidrs', { peerCidrs: ['10.51.0.0/24'] });
    assert.deepEqual(r.body.peerCidrs, ['10.50.0.0/24']);
  });

  it('deleting a connection takes it out of the router and keeps the VIP; deleting the VIP deletes its connections', async () => {
    assert.equal((await fc.api.del(`/v1/ipsec-connections/${ids.conn}`)).status, 200);
    assert.deepEqual(lastSpec().ipsec!.map((x) => x.connectionUuid), [ids.aes]);
    assert.ok(!(await fc.api.get(`/v1/vips/${ids.sysVip}`)).body.useFor.includes('IPsec'));
    assert.equal((await fc.api.del(`/v1/vips/${ids.vip}`)).status, 200);
    assert.equal((await fc.api.get(`/v1/ipsec-connections/${ids.aes}`)).status, 404);
    assert.equal(lastSpec().ipsec, undefined);
  });

  // ZStack: deleting a VPC router deletes its system VIP and every service on it; a connection
  // joins the router's own networks, so one on a custom VIP goes with the router too
  it('deleting the router deletes its connections (system and custom VIP) and the load balancer and listeners on its system VIP', async () => {
    const vip2 = (await post('/v1/vips', { name: 'ipsec-vip2', l3NetworkUuid: ids.pub })).uuid;
    const onSys = await post('/v1/ipsec-connections', { ...base(), peerAddress: '203.0.113.9' });
    const onCustom = await post('/v1/ipsec-connections', { ...base(), vipUuid: vip2, peerAddress: '203.0.113.10' });
    const lb = await post('/v1/load-balancers', { name: 'sys-lb', vipUuid: ids.sysVip });
    const l = await post('/v1/load-balancer-listeners', { name: 'web', loadBalancerUuid: lb.uuid, protocol: 'tcp', loadBalancerPort: 80, instancePort: 8080 });
    const del = await fc.api.del(`/v1/vpc-routers/${ids.router}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    for (const [what, path] of [['connection on the system VIP', `ipsec-connections/${onSys.uuid}`], ['connection on a custom VIP', `ipsec-connections/${onCustom.uuid}`], ['load balancer', `load-balancers/${lb.uuid}`], ['listener', `load-balancer-listeners/${l.uuid}`]]) {
      assert.equal((await fc.api.get(`/v1/${path}`)).status, 404, `the ${what} went with the router`);
    }
    const v2 = (await fc.api.get(`/v1/vips/${vip2}`)).body;
    assert.equal(v2.vpcRouterUuid, undefined, 'the custom VIP stays, free');
    assert.ok(!(v2.useFor ?? []).includes('IPsec'));
    assert.equal((await fc.controller.store.list({ kind: 'ipsec-connection' })).total, 0);
  });
});
