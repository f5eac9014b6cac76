// vrouteragent, load balancer of a VPC router: a real agent process, real haproxy in the router's
// namespace, namespaces standing in for two web VMs (busybox httpd) and for "the internet".
// Round robin through a TCP listener, a dead backend taken out by haproxy's check with no failed
// request, UP/DOWN through vrouter/lb/status, TLS terminated with the given certificate, a
// reload under load that drops nothing, a deleted namespace restored with its listeners.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { exec, type RunningProcess } from '../../../shared/exec.js';
import { lb, vpc } from '../../../shared/protocol/index.js';
import type { RouterLbListenerT } from '../../../shared/protocol/lb.js';
import type { RouterSpecT } from '../../../shared/protocol/vpc.js';
import { useCleanup } from '../../harness/cleanup.js';
import { routerListener, selfSignedCert, servedCertFingerprint, startWebBackend, type SelfSigned } from '../../harness/lb.js';
import { createBridge, deleteNetns, netnsExists } from '../../harness/net.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { routerNames } from '../../../vrouteragent/names.js';
import { client, curl, fakeVm, startHost, type Host, type Vm } from './helpers.js';

const until = async (fn: () => Promise<boolean>, ms = 15_000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
};

describe('vrouteragent: load balancer (haproxy in the router namespace)', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  const R = randomUUID();
  const NET_A = randomUUID();
  const NIC1 = randomUUID();
  const NIC2 = randomUUID();
  const TCP = randomUUID();
  const HTTPS = randomUUID();
  const CERT = randomUUID();
  let host: Host;
  let spec: RouterSpecT;
  let inet: Vm;
  let web: Vm[];
  const httpd: RunningProcess[] = [];
  let work: string;
  let cert: SelfSigned;

  const apply = (s: RouterSpecT) => client.call(vpc.RouterApply, host.ep, { router: s });
  const status = () => client.call(lb.LbStatus, host.ep, { routerUuid: R });
  const listener = (o: Partial<RouterLbListenerT>): RouterLbListenerT =>
    routerListener({
      listenerUuid: TCP,
      vip: '198.51.100.10',
      backends: [
        { vmNicUuid: NIC1, ip: '10.1.0.5' },
        { vmNicUuid: NIC2, ip: '10.1.0.6' },
      ],
      ...o,
    });
  const startWeb = async (i: number): Promise<void> => {
    httpd[i] = await startWebBackend(web[i]!.ns, join(work, `www${i}`), `web${i}`);
    cleanup.add(() => httpd[i]!.stop(500), `httpd ${i}`);
  };
  const serversUp = async (n: number, listenerUuid = TCP): Promise<boolean> => {
    const s = await status();
    return (s.listeners.find((l) => l.listenerUuid === listenerUuid)?.servers ?? []).filter((x) => x.status === 'UP').length === n;
  };

  before(async () => {
    const id = runId();
    work = await tmpDir('vpclb', cleanup);
    const brP = await createBridge(`${id}lp`, cleanup);
    const brA = await createBridge(`${id}la`, cleanup);
    host = await startHost('l', cleanup, []);
    const ns = routerNames(R, host.scheme).namespace;
    cleanup.add(() => deleteNetns(ns), `router namespace ${ns}`);
    inet = await fakeVm('li', brP, '52:54:00:98:00:01', cleanup);
    await exec('ip', ['-n', inet.ns, 'addr', 'add', '198.51.100.1/24', 'dev', inet.ifname]);
    web = [await fakeVm('l1', brA, '52:54:00:98:00:0a', cleanup), await fakeVm('l2', brA, '52:54:00:98:00:0b', cleanup)];
    for (const [i, vm] of web.entries()) {
      await exec('ip', ['-n', vm.ns, 'addr', 'add', `10.1.0.${5 + i}/24`, 'dev', vm.ifname]);
      await exec('ip', ['-n', vm.ns, 'route', 'add', 'default', 'via', '10.1.0.1']);
    }
    for (const vm of [inet, ...web]) await exec('ip', ['-n', vm.ns, 'link', 'set', 'lo', 'up']);
    await startWeb(0);
    await startWeb(1);
    cert = await selfSignedCert(work, 'lb.example.test');
    spec = {
      routerUuid: R,
      public: { bridge: brP, ip: '198.51.100.10', prefix: 24, gateway: '198.51.100.1' },
      networks: [{ l3NetworkUuid: NET_A, bridge: brA, ip: '10.1.0.1', cidr: '10.1.0.0/24' }],
      vips: ['198.51.100.20'],
      eips: [],
      portForwards: [],
      loadBalancers: [listener({})],
    };
  });

  it('a TCP listener on the public IP: both backends answer in turn; the same state again changes nothing', async () => {
    await apply(spec);
    assert.ok(await until(() => serversUp(2)), JSON.stringify(await status()));
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push((await curl(inet, 'http://198.51.100.10/')).body.trim());
    assert.deepEqual([...new Set(seen)].sort(), ['web0', 'web1']);
    assert.notEqual(seen[0], seen[1], `round robin: ${seen.join(',')}`);
    assert.match((await curl(web[0]!, 'http://198.51.100.10/')).body, /^web[01]$/m, 'east-west: from a VM behind the router');
    assert.equal((await apply(spec)).changed, false);
  });

  it('a backend that dies is taken out by the health check (DOWN in the status) and no request fails', async () => {
    let failures = 0;
    let n = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const r = await curl(inet, 'http://198.51.100.10/');
        n++;
        if (r.status !== 200) failures++;
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    await httpd[1]!.stop(500);
    const down = async (): Promise<boolean> => (await status()).listeners[0]!.servers.find((x) => x.vmNicUuid === NIC2)!.status === 'DOWN';
    assert.ok(await until(down), JSON.stringify(await status()));
    assert.ok(await serversUp(1));
    await new Promise((r) => setTimeout(r, 1000));
    stop = true;
    await loop;
    assert.equal(failures, 0, `${failures} of ${n} requests failed`);
    assert.ok(n > 5, `${n} requests`);
    await startWeb(1);
    assert.ok(await until(() => serversUp(2)), 'back UP after it answers again');
  });

  it('an HTTPS listener on a VIP presents the certificate and speaks HTTP to the backends; a reload under load drops nothing', async () => {
    let failures = 0;
    let stop = false;
    const loop = (async () => {
      while (!stop) if ((await curl(inet, 'http://198.51.100.10/')).status !== 200) failures++;
    })();
    const https = listener({ listenerUuid: HTTPS, vip: '198.51.100.20', protocol: 'https', port: 443, certificate: { certificateUuid: CERT, pem: cert.pem }, healthCheckTarget: 'http:/index.html' });
    const r = await apply({ ...spec, loadBalancers: [listener({}), https] });
    assert.equal(r.changed, true);
    stop = true;
    await loop;
    assert.equal(failures, 0, 'the TCP listener kept answering through the reload');
    assert.ok(await until(() => serversUp(2, HTTPS)), JSON.stringify(await status()));
    const body = await exec('curl', ['-sk', '-m', '5', 'https://198.51.100.20/'], { netns: inet.ns, timeoutMs: 10_000 });
    assert.match(body.stdout, /^web[01]$/m);
    assert.equal(await servedCertFingerprint(inet.ns, '198.51.100.20', 443, 'lb.example.test'), cert.fingerprint256);
    spec = { ...spec, loadBalancers: [listener({}), https] };
  });

  it('the namespace deleted: the watchdog brings the router back with its listeners', async () => {
    await exec('ip', ['netns', 'del', routerNames(R, host.scheme).namespace]);
    assert.ok(await until(async () => (await netnsExists(routerNames(R, host.scheme).namespace)) && /^web[01]$/.test((await curl(inet, 'http://198.51.100.10/')).body.trim()), 20_000), 'the TCP listener answers again');
    assert.ok(await until(async () => (await exec('curl', ['-sk', '-m', '3', 'https://198.51.100.20/'], { netns: inet.ns, timeoutMs: 10_000, okCodes: [0, 7, 28, 35] })).stdout.startsWith('web')), 'the HTTPS listener too');
  });

  it('bad listeners are refused naming the field; removing every listener stops haproxy', async () => {
    const noCert = listener({ listenerUuid: HTTPS, protocol: 'https', port: 443 });
    await assert.rejects(apply({ ...spec, loadBalancers: [noCert] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.loadBalancers.0.certificate');
    await assert.rejects(apply({ ...spec, loadBalancers: [listener({ vip: '198.51.100.99' })] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.loadBalancers.0.vip');
    await assert.rejects(apply({ ...spec, loadBalancers: [listener({}), listener({ listenerUuid: HTTPS })] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.loadBalancers.1.port');
    await assert.rejects(apply({ ...spec, loadBalancers: [listener({ backends: [{ vmNicUuid: NIC1, ip: '10.9.0.5' }] })] }), (e: Error & { details?: { field?: string } }) => e.details?.field === 'router.loadBalancers.0.backends.0.ip');
    await apply({ ...spec, loadBalancers: [] });
    assert.equal((await status()).running, false);
    assert.notEqual((await curl(inet, 'http://198.51.100.10/')).status, 200);
    assert.equal((await client.call(vpc.RouterDelete, host.ep, { routerUuid: R })).deleted, true);
  });
});
