// Functional tier: load balancers, listeners and certificates on the fake cloud — the real
// controller and API, the vrouter agent as a protocol fake recording every vrouter/apply. What is
// checked is the router's desired state each change sends (RouterSpec.loadBalancers), the
// manual's defaults, and the API's refusals naming the field.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { fakeCloudApi, vpcNetworks, vpcRouter } from '../harness/fake-cloud-api.js';
import { tmpDir } from '../harness/tmp.js';
import { selfSignedCert } from '../harness/lb.js';
import { vpcModule } from '../../controller/vpc/module.js';

describe('functional: load balancers, listeners, certificates (fake cloud)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const ids: Record<string, string> = {};
  let pemA: { cert: string; key: string };
  let pemB: { cert: string; key: string };
  const { post, act, refused, lastRouterSpec: lastSpec } = fakeCloudApi(() => fc);



  before(async () => {
    const dir = await tmpDir('lbcert', cleanup);
    [pemA, pemB] = await Promise.all([selfSignedCert(dir, 'a.example.test'), selfSignedCert(dir, 'b.example.test')]);
    fc = await startFakeCloud(cleanup, { modules: [vpcModule() as never] });
    const nets = await vpcNetworks(post, fc, 'lb', 110, '198.51.100.0/24', ['10.11.0.0/24', '10.12.0.0/24']);
    ids.pub = nets.pub;
    [ids.a, ids.b] = nets.vpc as [string, string];
    const r = await vpcRouter(post, fc, nets);
    ids.router = r.uuid;
    ids.sysVip = r.vipUuid;
    ids.publicIp = r.publicIp;
    for (const [k, net] of [['web1', ids.a], ['web2', ids.a], ['other', ids.b]] as const) {
      const vm = await fc.createVm(`lb-${k}`, { l3NetworkUuids: [net] });
      assert.equal(vm.status, 200, JSON.stringify(vm.body));
      ids[k] = vm.body.vmNics[0].uuid;
      ids[`${k}Ip`] = vm.body.vmNics[0].ip;
    }
    ids.vip = (await post('/v1/vips', { name: 'lb-vip', l3NetworkUuid: ids.pub })).uuid;
  });

  it('certificates: parsed with node:crypto; garbage, a mismatched key or a bad chain → 400 naming the field; the key is never returned', async () => {
    refused(await fc.api.post('/v1/certificates', { name: 'x', certificate: 'hello', privateKey: pemA.key }), 400, 'certificate');
    refused(await fc.api.post('/v1/certificates', { name: 'x', certificate: pemA.cert.replace(/[A-Za-z]{8}\n/, 'AAAAAAAA\n'), privateKey: pemA.key }), 400, 'certificate');
    refused(await fc.api.post('/v1/certificates', { name: 'x', certificate: pemA.cert, privateKey: 'nope' }), 400, 'privateKey');
    refused(await fc.api.post('/v1/certificates', { name: 'x', certificate: pemA.cert, privateKey: pemB.key }), 400, 'privateKey');
    refused(await fc.api.post('/v1/certificates', { name: 'x', certificate: pemA.cert, privateKey: pemA.key, certificateChain: 'junk' }), 400, 'certificateChain');
    const c = await post('/v1/certificates', { name: 'lb-cert', certificate: pemA.cert, privateKey: pemA.key, certificateChain: pemB.cert });
    ids.cert = c.uuid;
    assert.match(c.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.match(c.subject, /CN=a\.example\.test/);
    assert.equal(c.privateKey, undefined);
    assert.doesNotMatch(JSON.stringify((await fc.api.get(`/v1/certificates/${c.uuid}`)).body), /PRIVATE KEY/);
  });

  it('a TCP listener with the manual\'s defaults; addVmNics puts both backends and the VIP into the router\'s state', async () => {
    const lb = await post('/v1/load-balancers', { name: 'lb1', vipUuid: ids.vip });
    ids.lb = lb.uuid;
    const vip = (await fc.api.get(`/v1/vips/${ids.vip}`)).body;
    assert.deepEqual(vip.useFor, ['LoadBalancer']);
    const l = await post('/v1/load-balancer-listeners', { name: 'web', loadBalancerUuid: ids.lb, protocol: 'tcp', loadBalancerPort: 80, instancePort: 8080 });
    ids.tcp = l.uuid;
    for (const [k, v] of Object.entries({ balancerAlgorithm: 'roundrobin', connectionIdleTimeout: 60, healthyThreshold: 2, unhealthyThreshold: 2, healthCheckInterval: 5, healthCheckTimeout: 2, healthCheckTarget: 'tcp:default', maxConnection: 5000 })) assert.equal(l[k], v, k);
    assert.deepEqual(l.vmNicUuids, []);
    const r = await act('load-balancer-listeners', ids.tcp, 'addVmNics', { vmNicUuids: [ids.web1, ids.web2] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.vmNicUuids, [ids.web1, ids.web2]);
    const spec = lastSpec();
    assert.equal(spec.routerUuid, ids.router);
    assert.ok(spec.vips.includes(vip.ip));
    assert.deepEqual(spec.loadBalancers, [
      {
        listenerUuid: ids.tcp,
        vip: vip.ip,
        protocol: 'tcp',
        port: 80,
        instancePort: 8080,
        algorithm: 'roundrobin',
        idleTimeoutSec: 60,
        healthyThreshold: 2,
        unhealthyThreshold: 2,
        healthCheckIntervalSec: 5,
        healthCheckTimeoutSec: 2,
        healthCheckTarget: 'tcp:default',
        maxConnection: 5000,
        backends: [
          { vmNicUuid: ids.web1, ip: ids.web1Ip },
          { vmNicUuid: ids.web2, ip: ids.web2Ip },
        ],
      },
    ]);
    const lbNow = (await fc.api.get(`/v1/load-balancers/${ids.lb}`)).body;
    assert.equal(lbNow.vpcRouterUuid, ids.router);
    assert.equal(lbNow.l3NetworkUuid, ids.a);
  });

  it('backends on another network, a NIC twice, an unknown NIC are refused', async () => {
    refused(await act('load-balancer-listeners', ids.tcp, 'addVmNics', { vmNicUuids: [ids.other] }), 400, 'vmNicUuids.0');
    assert.equal((await act('load-balancer-listeners', ids.tcp, 'addVmNics', { vmNicUuids: [ids.web1] })).status, 409);
    refused(await act('load-balancer-listeners', ids.tcp, 'addVmNics', { vmNicUuids: ['0badcafe-0000-4000-8000-000000000000'] }), 400, 'vmNicUuids.0');
    refused(await act('load-balancer-listeners', ids.tcp, 'removeVmNics', { vmNicUuids: [ids.other] }), 400, 'vmNicUuids.0');
  });

  it('a port used twice on one VIP is refused (listener vs listener, port forward vs listener, both ways) → 409 naming the field', async () => {
    refused(await fc.api.post('/v1/load-balancer-listeners', { name: 'dup', loadBalancerUuid: ids.lb, protocol: 'http', loadBalancerPort: 80, instancePort: 80 }), 409, 'loadBalancerPort');
    const lb2 = await post('/v1/load-balancers', { name: 'lb2-same-vip', vipUuid: ids.vip });
    refused(await fc.api.post('/v1/load-balancer-listeners', { name: 'dup', loadBalancerUuid: lb2.uuid, protocol: 'tcp', loadBalancerPort: 80, instancePort: 80 }), 409, 'loadBalancerPort');
    refused(await fc.api.post('/v1/port-forwarding-rules', { name: 'pf', vipUuid: ids.vip, vipPortStart: 70, vipPortEnd: 90, privatePortStart: 70, privatePortEnd: 90, protocolType: 'TCP' }), 409, 'vipPortStart');
    assert.equal((await fc.api.post('/v1/port-forwarding-rules', { name: 'pf-udp', vipUuid: ids.vip, vipPortStart: 80, privatePortStart: 80, protocolType: 'UDP' })).status, 201, 'UDP 80 is another port');
    await post('/v1/port-forwarding-rules', { name: 'pf-ssh', vipUuid: ids.vip, vipPortStart: 2222, privatePortStart: 22, protocolType: 'TCP' });
    refused(await fc.api.post('/v1/load-balancer-listeners', { name: 'dup', loadBalancerUuid: ids.lb, protocol: 'tcp', loadBalancerPort: 2222, instancePort: 22 }), 409, 'loadBalancerPort');
    assert.equal((await fc.api.del(`/v1/load-balancers/${lb2.uuid}`)).status < 300, true);
  });

  it('listener checks: https needs a certificate, only https takes one, udp is not implemented, timeout ≤ interval, a bad health target', async () => {
    const base = { name: 'x', loadBalancerUuid: ids.lb, instancePort: 80 };
    refused(await fc.api.post('/v1/load-balancer-listeners', { ...base, protocol: 'https', loadBalancerPort: 443 }), 400, 'certificateUuid');
    refused(await fc.api.post('/v1/load-balancer-listeners', { ...base, protocol: 'http', loadBalancerPort: 81, certificateUuid: ids.cert }), 400, 'certificateUuid');
    refused(await fc.api.post('/v1/load-balancer-listeners', { ...base, protocol: 'udp', loadBalancerPort: 53 }), 400, 'protocol');
    refused(await fc.api.post('/v1/load-balancer-listeners', { ...base, protocol: 'tcp', loadBalancerPort: 82, healthCheckInterval: 2, healthCheckTimeout: 5 }), 400, 'healthCheckTimeout');
    refused(await fc.api.post('/v1/load-balancer-listeners', { ...base, protocol: 'tcp', loadBalancerPort: 83, healthCheckTarget: 'http:/a b' }), 400, 'healthCheckTarget');
    refused(await fc.api.post('/v1/load-balancer-listeners', { ...base, protocol: 'tcp', loadBalancerPort: 84, balancerAlgorithm: 'random' }), 400, 'balancerAlgorithm');
  });

  it('an HTTPS listener sends certificate, chain and key to the router; getStatus shows each backend', async () => {
    const l = await post('/v1/load-balancer-listeners', { name: 'tls', loadBalancerUuid: ids.lb, protocol: 'https', loadBalancerPort: 443, instancePort: 8080, certificateUuid: ids.cert, healthCheckTarget: 'http:/health', balancerAlgorithm: 'leastconn', vmNicUuids: [ids.web2] });
    ids.https = l.uuid;
    const x = lastSpec().loadBalancers!.find((y) => y.listenerUuid === ids.https)!;
    assert.equal(x.algorithm, 'leastconn');
    assert.equal(x.healthCheckTarget, 'http:/health');
    assert.equal(x.certificate!.certificateUuid, ids.cert);
    assert.equal(x.certificate!.pem, pemA.cert + pemB.cert + pemA.key);
    const s = await act('load-balancer-listeners', ids.tcp, 'getStatus');
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.deepEqual(s.body.backends.map((b: any) => [b.vmNicUuid, b.status]), [[ids.web1, 'UP'], [ids.web2, 'UP']]);
    assert.equal((await fc.api.del(`/v1/certificates/${ids.cert}`)).status, 409, 'a certificate in use stays');
  });

  it('an EIP is refused on a load balancer\'s VIP; a load balancer on the router\'s system VIP works', async () => {
    refused(await fc.api.post('/v1/eips', { name: 'e', vipUuid: ids.vip }), 400, 'vipUuid');
    const lb = await post('/v1/load-balancers', { name: 'lb-sys', vipUuid: ids.sysVip });
    assert.equal(lb.vpcRouterUuid, ids.router);
    const l = await post('/v1/load-balancer-listeners', { name: 'sys', loadBalancerUuid: lb.uuid, protocol: 'tcp', loadBalancerPort: 8000, instancePort: 8080 });
    const x = lastSpec().loadBalancers!.find((y) => y.listenerUuid === l.uuid)!;
    assert.equal(x.vip, ids.publicIp);
    assert.deepEqual(x.backends, []);
    assert.equal((await fc.api.del(`/v1/load-balancers/${lb.uuid}`)).status < 300, true);
    assert.ok(!lastSpec().loadBalancers!.some((y) => y.listenerUuid === l.uuid));
  });

  it('removeVmNics takes a backend out; deleting the load balancer removes its listeners and keeps the VIP', async () => {
    const r = await act('load-balancer-listeners', ids.tcp, 'removeVmNics', { vmNicUuids: [ids.web1] });
    assert.deepEqual(r.body.vmNicUuids, [ids.web2]);
    assert.deepEqual(lastSpec().loadBalancers!.find((y) => y.listenerUuid === ids.tcp)!.backends.map((b) => b.ip), [ids.web2Ip]);
    const del = await fc.api.del(`/v1/load-balancers/${ids.lb}`);
    assert.ok(del.status < 300, JSON.stringify(del.body));
    assert.equal((await fc.api.get(`/v1/load-balancer-listeners/${ids.tcp}`)).status, 404);
    assert.equal((await fc.api.get(`/v1/load-balancer-listeners/${ids.https}`)).status, 404);
    assert.equal(lastSpec().loadBalancers, undefined);
    const vip = (await fc.api.get(`/v1/vips/${ids.vip}`)).body;
    assert.equal(vip.uuid, ids.vip);
    assert.ok(!vip.useFor.includes('LoadBalancer'));
    assert.equal((await fc.api.del(`/v1/certificates/${ids.cert}`)).status < 300, true, 'no longer in use');
  });
});
