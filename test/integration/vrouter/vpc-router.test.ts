// vrouteragent, VPC routers, checked with namespaces standing in for VMs and for "the internet"
// (a namespace on the public bridge holding the public gateway address; never the real uplink):
// routing between two networks of one router, SNAT as the public IP, EIP 1:1 NAT both ways,
// port forwarding with a shifted port, private addresses closed from outside, the DNS
// forwarder, interfaces of detached networks removed, a deleted namespace restored by the
// agent's watchdog and by a restarted agent (from its state on disk). Real namespaces, iptables-restore, dnsmasq, a real agent process.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { exec, startProcess, type ExecResult } from '../../../shared/exec.js';
import { vpc } from '../../../shared/protocol/index.js';
import type { RouterSpecT } from '../../../shared/protocol/vpc.js';
import { useCleanup } from '../../harness/cleanup.js';
import { createBridge, deleteNetns, netnsExists } from '../../harness/net.js';
import { runId } from '../../harness/tmp.js';
import { routerNames } from '../../../vrouteragent/names.js';
import { client, fakeVm, nslookup, restartHost, startHost, type Host, type Vm } from './helpers.js';

/** GET with a short timeout (closed paths are expected to time out). */
async function curl(vm: Vm, url: string): Promise<{ status: number; body: string }> {
  const r: ExecResult = await exec('curl', ['-s', '-m', '2', '-w', '\\n%{http_code}', url], { netns: vm.ns, timeoutMs: 10_000, okCodes: [0, 7, 28, 52, 56] });
  const i = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

/** A TCP server answering every HTTP request with the client's address as it sees it. */
const WHOAMI = `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.HTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()
`;

describe('vrouteragent: VPC router in a namespace (SNAT, EIP, port forwarding, DNS)', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  const R = randomUUID();
  const NET_A = randomUUID();
  const NET_B = randomUUID();
  let host: Host;
  let spec: RouterSpecT;
  let inet: Vm;
  let a: Vm;
  let b: Vm;

  const apply = (s: RouterSpecT) => client.call(vpc.RouterApply, host.ep, { router: s });
  const whoami = async (vm: Vm, port: number): Promise<void> => {
    const p = await startProcess('/usr/bin/python3', ['-c', WHOAMI, String(port)], { netns: vm.ns });
    cleanup.add(() => p.stop(500), `whoami ${vm.ns}:${port}`);
    const listening = async (): Promise<boolean> => (await exec('ss', ['-Hltn', `sport = :${port}`], { netns: vm.ns })).stdout.trim() !== '';
    assert.ok(await until(listening), `whoami on ${vm.ns}:${port} listens`);
  };
  const ping = (vm: Vm, ip: string): Promise<boolean> =>
    exec('ping', ['-c', '1', '-W', '1', ip], { netns: vm.ns, timeoutMs: 10_000 }).then(
      () => true,
      () => false,
    );
  const until = async (fn: () => Promise<boolean>, ms = 10_000): Promise<boolean> => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await fn()) return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  };

  before(async () => {
    const id = runId();
    const brP = await createBridge(`${id}vp`, cleanup);
    const brA = await createBridge(`${id}va`, cleanup);
    const brB = await createBridge(`${id}vb`, cleanup);
    host = await startHost('v', cleanup, []);
    const ns = routerNames(R, host.scheme).namespace;
    cleanup.add(() => deleteNetns(ns), `router namespace ${ns}`);
    inet = await fakeVm('vi', brP, '52:54:00:99:00:01', cleanup);
    await exec('ip', ['-n', inet.ns, 'addr', 'add', '198.51.100.1/24', 'dev', inet.ifname]);
    a = await fakeVm('va', brA, '52:54:00:99:00:0a', cleanup);
    await exec('ip', ['-n', a.ns, 'addr', 'add', '10.1.0.5/24', 'dev', a.ifname]);
    await exec('ip', ['-n', a.ns, 'route', 'add', 'default', 'via', '10.1.0.1']);
    b = await fakeVm('vb', brB, '52:54:00:99:00:0b', cleanup);
    await exec('ip', ['-n', b.ns, 'addr', 'add', '10.2.0.7/24', 'dev', b.ifname]);
    await exec('ip', ['-n', b.ns, 'route', 'add', 'default', 'via', '10.2.0.1']);
    // the outside knows where the private networks are: only the router's filter keeps them closed
    await exec('ip', ['-n', inet.ns, 'route', 'add', '10.0.0.0/8', 'via', '198.51.100.10']);
    for (const vm of [inet, a, b]) await exec('ip', ['-n', vm.ns, 'link', 'set', 'lo', 'up']);
    await whoami(inet, 8080);
    await whoami(a, 8081);
    await whoami(b, 8082);
    spec = {
      routerUuid: R,
      public: { bridge: brP, ip: '198.51.100.10', prefix: 24, gateway: '198.51.100.1' },
      networks: [
        { l3NetworkUuid: NET_A, bridge: brA, ip: '10.1.0.1', cidr: '10.1.0.0/24' },
        { l3NetworkUuid: NET_B, bridge: brB, ip: '10.2.0.1', cidr: '10.2.0.0/24' },
      ],
      vips: [],
      eips: [],
      portForwards: [],
      dns: { forwarders: [], records: [{ name: 'vm-a', ip: '10.1.0.5' }, { name: 'vm-b', ip: '10.2.0.7' }] },
    };
  });

  it('routes between its networks and SNATs to the outside as its public IP; private addresses stay closed', async () => {
    const r = await apply(spec);
    assert.equal(r.router.namespace, routerNames(R, host.scheme).namespace);
    assert.ok(r.durationMs < 5000, `apply took ${r.durationMs} ms`);
    assert.ok(await until(() => ping(a, '10.2.0.7')), 'network A reaches network B through the router');
    assert.equal((await curl(a, 'http://198.51.100.1:8080/')).body, '198.51.100.10');
    assert.equal((await curl(b, 'http://198.51.100.1:8080/')).body, '198.51.100.10');
    assert.notEqual((await curl(inet, 'http://10.1.0.5:8081/')).status, 200, 'a private address is not reachable from outside');
    const again = await apply(spec);
    assert.equal(again.changed, false, 'the same state again changes nothing');
  });

  it('EIP: the outside reaches the VM at its EIP, and the VM leaves as its EIP; its traffic shows in ZStack/VIP metrics', async () => {
    const VIP = randomUUID();
    await apply({ ...spec, vips: ['198.51.100.20'], eips: [{ eip: '198.51.100.20', privateIp: '10.1.0.5' }], vipUuids: [{ ip: '198.51.100.20', vipUuid: VIP }] });
    assert.equal((await curl(inet, 'http://198.51.100.20:8081/')).body, '198.51.100.1');
    assert.equal((await curl(a, 'http://198.51.100.1:8080/')).body, '198.51.100.20');
    const metric = async (name: string): Promise<number> => {
      const text = await (await fetch(`${host.ep.url}/metrics`, { headers: { authorization: `Bearer ${host.ep.token}` } })).text();
      return Number(new RegExp(`^ZStack_VIP_${name}\\{[^}]*VipUUID="${VIP}"[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    };
    // traffic both ways through the EIP while the agent samples (every 500 ms here)
    const seen = await until(async () => {
      await curl(inet, 'http://198.51.100.20:8081/');
      await curl(a, 'http://198.51.100.1:8080/');
      return (await metric('VIPInBoundTrafficInBytes')) > 0 && (await metric('VIPOutBoundTrafficInBytes')) > 0 && (await metric('VIPInBoundTrafficInPackages')) > 0 && (await metric('VIPOutBoundTrafficInPackages')) > 0;
    });
    assert.ok(seen, `VIP metrics: ${await metric('VIPInBoundTrafficInBytes')} B/s in, ${await metric('VIPOutBoundTrafficInBytes')} B/s out`);
    assert.equal((await curl(b, 'http://198.51.100.1:8080/')).body, '198.51.100.10', 'others still leave as the public IP');
    await apply(spec);
    assert.notEqual((await curl(inet, 'http://198.51.100.20:8081/')).status, 200, 'detached: the EIP leads nowhere');
    assert.equal((await curl(a, 'http://198.51.100.1:8080/')).body, '198.51.100.10', 'detached: SNAT as the public IP again');
  });

  it('port forwarding VIP:2222 → VM:8082, only from the allowed CIDR', async () => {
    const pf = { vip: '198.51.100.30', protocol: 'TCP' as const, vipPortStart: 2222, vipPortEnd: 2222, privateIp: '10.2.0.7', privatePortStart: 8082, privatePortEnd: 8082 };
    await apply({ ...spec, vips: ['198.51.100.30'], portForwards: [pf] });
    assert.equal((await curl(inet, 'http://198.51.100.30:2222/')).body, '198.51.100.1');
    assert.notEqual((await curl(inet, 'http://198.51.100.30:8082/')).status, 200, 'only the forwarded port');
    await apply({ ...spec, vips: ['198.51.100.30'], portForwards: [{ ...pf, allowedCidr: '203.0.113.0/24' }] });
    assert.notEqual((await curl(inet, 'http://198.51.100.30:2222/')).status, 200, 'a source outside allowedCidr is not forwarded');
  });

  it('DNS forwarder: a VM resolves a VM of the other network through its gateway', async () => {
    await apply(spec);
    assert.equal(await nslookup(a, 'vm-b', '10.1.0.1'), '10.2.0.7');
    assert.equal(await nslookup(b, 'vm-a', '10.2.0.1'), '10.1.0.5');
  });

  it('a detached network loses its interface; a deleted namespace comes back by itself (watchdog)', async () => {
    await apply({ ...spec, networks: [spec.networks[0]!] });
    assert.equal(await ping(b, '10.2.0.1'), false, 'network B has no gateway any more');
    await apply(spec);
    await exec('ip', ['netns', 'del', routerNames(R, host.scheme).namespace]);
    assert.ok(await until(async () => (await netnsExists(routerNames(R, host.scheme).namespace)) && (await curl(a, 'http://198.51.100.1:8080/')).body === '198.51.100.10', 15_000), 'the router is back and SNAT works');
  });

  it('agent SIGKILLed and the namespace deleted while it is down: the restarted agent rebuilds the router from disk', async () => {
    await host.agent.kill9();
    await exec('ip', ['netns', 'del', routerNames(R, host.scheme).namespace]);
    await restartHost(host, cleanup);
    assert.ok(await until(async () => (await curl(a, 'http://198.51.100.1:8080/')).body === '198.51.100.10', 30_000), `SNAT works again (agent log: ${host.agent.logTail(20)})`);
    assert.equal((await client.call(vpc.RouterStatus, host.ep, {})).routers.find((x) => x.routerUuid === R)?.present, true);
  });

  it('route table: a static route via a neighbour on a network and a blackhole; both leave when the table does', async () => {
    const ns = routerNames(R, host.scheme).namespace;
    // VM b stands for another router: it owns 172.16.5.9 behind it
    await exec('ip', ['-n', b.ns, 'addr', 'add', '172.16.5.9/32', 'dev', 'lo']);
    const routes: RouterSpecT['routes'] = [
      { destination: '172.16.5.0/24', type: 'Static', nextHop: '10.2.0.7', metric: 128 },
      { destination: '172.16.6.0/24', type: 'Blackhole', metric: 128 },
    ];
    await apply({ ...spec, routes });
    assert.ok(await until(() => ping(a, '172.16.5.9')), 'A reaches the address behind B through the static route');
    const shown = (await exec('ip', ['-n', ns, 'route', 'show', 'proto', 'static'])).stdout;
    assert.match(shown, /172\.16\.5\.0\/24 via 10\.2\.0\.7/);
    assert.match(shown, /blackhole 172\.16\.6\.0\/24/);
    assert.equal((await apply({ ...spec, routes })).changed, false, 'the same routes again change nothing');
    await apply(spec);
    assert.equal((await exec('ip', ['-n', ns, 'route', 'show', 'proto', 'static'])).stdout.trim(), '', 'no table: no routes');
    assert.equal(await ping(a, '172.16.5.9'), false);
    await assert.rejects(apply({ ...spec, routes: [{ destination: '10.1.0.0/25', type: 'Blackhole' }] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.routes.0.destination');
    await assert.rejects(apply({ ...spec, routes: [{ destination: '172.16.7.0/24', type: 'Static', nextHop: '10.2.0.1' }] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.routes.0.nextHop');
    await assert.rejects(apply({ ...spec, routes: [{ destination: '172.16.7.0/24', type: 'Static', nextHop: '192.0.2.1' }] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.routes.0.nextHop');
  });

  it('bad input is refused with the field named, nothing applied', async () => {
    await assert.rejects(apply({ ...spec, eips: [{ eip: '198.51.100.10', privateIp: '10.1.0.5' }] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.eips.0.eip');
    await assert.rejects(apply({ ...spec, public: { ...spec.public, bridge: 'nosuchbr0' } }), /bridge nosuchbr0 does not exist/);
    assert.equal((await curl(a, 'http://198.51.100.1:8080/')).body, '198.51.100.10');
  });

  it('delete removes the namespace (idempotent)', async () => {
    assert.equal((await client.call(vpc.RouterDelete, host.ep, { routerUuid: R })).deleted, true);
    assert.equal(await netnsExists(routerNames(R, host.scheme).namespace), false);
    assert.equal((await client.call(vpc.RouterDelete, host.ep, { routerUuid: R })).deleted, false);
  });
});
