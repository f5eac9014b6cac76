// vrouteragent, IPsec between two VPC routers: a real agent process running two router
// namespaces on one public bridge, real charon in each (kernel-libipsec on this kernel), and
// namespaces standing in for a VM behind each router. A site-to-site tunnel carries a ping and a
// TCP connection between the private addresses (not SNATed: the far side sees the private
// source); up/down and the last error through vrouter/ipsec/status; a deleted namespace and a
// killed charon come back with the tunnel; removing the connection stops the traffic.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, execOk, startProcess } from '../../../shared/exec.js';
import { ipsec, vpc } from '../../../shared/protocol/index.js';
import type { RouterIpsecConnectionT } from '../../../shared/protocol/ipsec.js';
import type { RouterSpecT } from '../../../shared/protocol/vpc.js';
import { useCleanup } from '../../harness/cleanup.js';
import { createBridge, deleteNetns, netnsExists } from '../../harness/net.js';
import { runId } from '../../harness/tmp.js';
import { routerNames } from '../../../vrouteragent/names.js';
import { routerRoot } from '../../../vrouteragent/router.js';
import { connName, ipsecPaths, VICI_URI } from '../../../vrouteragent/render/strongswan.js';
import { capIpsecLogs, findCharon } from '../../../vrouteragent/ipsec.js';
import { client, fakeVm, startHost, type Host, type Vm } from './helpers.js';

const until = async (fn: () => Promise<boolean>, ms = 20_000): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
};

describe('vrouteragent: IPsec site-to-site between two VPC routers (charon in the router namespaces)', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  const R1 = randomUUID();
  const R2 = randomUUID();
  const C1 = randomUUID();
  const C2 = randomUUID();
  let host: Host;
  let spec1: RouterSpecT;
  let spec2: RouterSpecT;
  let vm1: Vm;
  let vm2: Vm;
  let vm3: Vm;
  let brC: string;

  const conn = (o: Partial<RouterIpsecConnectionT>): RouterIpsecConnectionT => ({
    connectionUuid: C1,
    vip: '198.51.100.11',
    peerAddress: '198.51.100.12',
    localCidrs: ['10.1.0.0/24'],
    peerCidrs: ['10.2.0.0/24'],
    psk: 'tunnel-key "with quotes"',
    ikeVersion: 'ike',
    ikeAuthAlgorithm: 'sha1',
    ikeEncryptionAlgorithm: '3des',
    ikeDhGroup: 2,
    policyAuthAlgorithm: 'sha1',
    policyEncryptionAlgorithm: '3des',
    pfs: 'dh-group2',
    ...o,
  });
  const apply = (s: RouterSpecT) => client.call(vpc.RouterApply, host.ep, { router: s });
  const status = (r: string) => client.call(ipsec.IpsecStatus, host.ep, { routerUuid: r });
  const up = async (r: string): Promise<boolean> => (await status(r)).connections[0]?.status === 'up';
  const ping = (from: Vm, to: string): Promise<boolean> => execOk('ping', ['-c', '1', '-W', '1', to], { netns: from.ns, timeoutMs: 5_000 });
  const logTail = (r: string): string => {
    try {
      return readFileSync(ipsecPaths(join(routerRoot(host.agent.dataDir), r.replace(/-/g, ''))).log, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const pings = (ms = 25_000): Promise<boolean> => until(() => ping(vm1, '10.2.0.5'), ms);

  before(async () => {
    const id = runId();
    const brP = await createBridge(`${id}sp`, cleanup);
    const brA = await createBridge(`${id}sa`, cleanup);
    const brB = await createBridge(`${id}sb`, cleanup);
    host = await startHost('s', cleanup, []);
    for (const r of [R1, R2]) {
      const ns = routerNames(r, host.scheme).namespace;
      cleanup.add(() => deleteNetns(ns), `router namespace ${ns}`);
    }
    vm1 = await fakeVm('s1', brA, '52:54:00:97:00:01', cleanup);
    vm2 = await fakeVm('s2', brB, '52:54:00:97:00:02', cleanup);
    brC = await createBridge(`${id}sc`, cleanup);
    vm3 = await fakeVm('s3', brC, '52:54:00:97:00:03', cleanup);
    for (const [vm, net] of [[vm1, 1], [vm2, 2], [vm3, 3]] as const) {
      await exec('ip', ['-n', vm.ns, 'link', 'set', 'lo', 'up']);
      await exec('ip', ['-n', vm.ns, 'addr', 'add', `10.${net}.0.5/24`, 'dev', vm.ifname]);
      await exec('ip', ['-n', vm.ns, 'route', 'add', 'default', 'via', `10.${net}.0.1`]);
    }
    // vm2 answers every TCP connection on 7000 with the source address it sees
    const echo = await startProcess('socat', ['TCP-LISTEN:7000,reuseaddr,fork', 'SYSTEM:echo $SOCAT_PEERADDR'], { netns: vm2.ns });
    cleanup.add(() => echo.stop(500), 'socat');
    const router = (r: string, ip: string, net: number, bridge: string): RouterSpecT => ({
      routerUuid: r,
      public: { bridge: brP, ip, prefix: 24 },
      networks: [{ l3NetworkUuid: randomUUID(), bridge, ip: `10.${net}.0.1`, cidr: `10.${net}.0.0/24` }],
      vips: [],
      eips: [],
      portForwards: [],
    });
    spec1 = router(R1, '198.51.100.11', 1, brA);
    spec2 = router(R2, '198.51.100.12', 2, brB);
    await apply(spec1);
    await apply(spec2);
    assert.equal(await ping(vm1, '10.2.0.5'), false, 'no tunnel yet: the private networks do not reach each other');
  });

  it('a connection on each router (the manual\'s defaults: 3des/sha1/modp1024) carries a ping and TCP between the private addresses, unNATed; both report up', async () => {
    const t0 = Date.now();
    spec1 = { ...spec1, ipsec: [conn({})] };
    spec2 = { ...spec2, ipsec: [conn({ connectionUuid: C2, vip: '198.51.100.12', peerAddress: '198.51.100.11', localCidrs: ['10.2.0.0/24'], peerCidrs: ['10.1.0.0/24'] })] };
    assert.equal((await apply(spec1)).changed, true);
    assert.equal((await apply(spec2)).changed, true);
    assert.ok(await pings(), `no ping through the tunnel: ${JSON.stringify(await status(R1))}`);
    console.log(`      tunnel carrying a ping ${Date.now() - t0} ms after the applies`);
    const seen = await exec('socat', ['-T', '3', '-', 'TCP:10.2.0.5:7000'], { netns: vm1.ns, stdin: '', timeoutMs: 10_000 });
    assert.equal(seen.stdout.trim(), '10.1.0.5', 'the far VM sees the private source address (no SNAT into the tunnel)');
    assert.ok(await until(async () => (await up(R1)) && (await up(R2)), 10_000));
    const s = await status(R1);
    assert.equal(s.running, true);
    assert.ok(s.dataPlane === 'libipsec' || s.dataPlane === 'kernel', String(s.dataPlane));
    console.log(`      data plane: ${s.dataPlane}`);
    assert.equal(s.connections[0]!.ikeState, 'ESTABLISHED');
    assert.equal(s.connections[0]!.childState, 'INSTALLED');
    assert.equal((await apply(spec1)).changed, false, 'the same state again changes nothing');
    const conf = readFileSync(ipsecPaths(join(routerRoot(host.agent.dataDir), R1.replace(/-/g, ''))).swanctlConf, 'utf8');
    assert.ok(!conf.includes('with quotes'), 'the key is not written in clear text');
  });

  it('charon.log over its cap is moved to charon.log.1 and charon writes a fresh one (the watchdog\'s capIpsecLogs); the tunnel stays up', async () => {
    const r = { spec: spec1, namespace: routerNames(R1, host.scheme).namespace, dir: join(routerRoot(host.agent.dataDir), R1.replace(/-/g, '')) };
    const p = ipsecPaths(r.dir);
    assert.deepEqual(await capIpsecLogs(r, 1), { rotated: true, truncated: false });
    assert.ok(readFileSync(`${p.log}.1`, 'utf8').includes(connName(C1)), 'the old log kept as .1');
    // something charon logs at level 1, without touching the tunnel
    await exec('swanctl', ['--rekey', '--ike', connName(C1), '--uri', VICI_URI], { netns: r.namespace, cwd: p.dir, timeoutMs: 10_000 });
    assert.ok(await until(async () => existsSync(p.log) && readFileSync(p.log, 'utf8').includes(connName(C1)), 10_000), 'charon writes to a fresh charon.log');
    assert.ok(await pings(10_000), 'the tunnel still carries the ping');
  });

  it('a wrong key on one side: down, with the authentication failure as the last error; the right key brings it back', async () => {
    const bad = { ...spec2, ipsec: [{ ...spec2.ipsec![0]!, psk: 'not-the-same-key' }] };
    await apply(bad);
    const failed = async (): Promise<boolean> => {
      const c = (await status(R2)).connections[0]!;
      return c.status === 'down' && /AUTH|authentication|MAC/i.test(c.lastError ?? '');
    };
    const c1Failed = async (): Promise<boolean> => /AUTH|authentication|MAC/i.test((await status(R1)).connections[0]?.lastError ?? '');
    assert.ok(await until(async () => (await failed()) || (await c1Failed()), 20_000), `${JSON.stringify(await status(R1))} ${JSON.stringify(await status(R2))}`);
    await apply(spec2);
    assert.ok(await pings(), `not back after the key was fixed: ${JSON.stringify(await status(R2))}`);
  });

  it('the router namespace deleted: the watchdog re-creates it, charon comes back and so does the tunnel', async () => {
    const t0 = Date.now();
    await exec('ip', ['netns', 'del', routerNames(R1, host.scheme).namespace]);
    assert.ok(await until(() => netnsExists(routerNames(R1, host.scheme).namespace), 10_000));
    assert.ok(await pings(40_000), `no tunnel after the namespace came back: ${JSON.stringify(await status(R1))} ${JSON.stringify(await status(R2))}`);
    console.log(`      namespace deleted → tunnel carrying a ping again in ${Date.now() - t0} ms`);
  });

  it('charon killed: the watchdog restarts it and the tunnel is back', async () => {
    const p = ipsecPaths(join(routerRoot(host.agent.dataDir), R2.replace(/-/g, '')));
    const pid = Number(readFileSync(p.pid, 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    const pidNow = (): number => {
      try {
        return Number(readFileSync(p.pid, 'utf8').trim());
      } catch {
        return 0; // being restarted
      }
    };
    assert.ok(await until(async () => pidNow() > 0 && pidNow() !== pid && (await status(R2)).running, 15_000), 'charon restarted');
    assert.ok(await pings(40_000), `no tunnel after charon restarted: ${JSON.stringify(await status(R2))}`);
    console.log(`      charon killed → tunnel carrying a ping again in ${Date.now() - t0} ms`);
  });

  it('a network attached and added on both sides (local / peer CIDR) is carried at once: the connection is re-established with the new selectors', async () => {
    // kernel-libipsec routes into its TUN device from an address of the router in the local
    // selector: a local CIDR is one of the router's networks (docs/ipsec.md)
    spec2 = { ...spec2, networks: [...spec2.networks, { l3NetworkUuid: randomUUID(), bridge: brC, ip: '10.3.0.1', cidr: '10.3.0.0/24' }] };
    spec1 = { ...spec1, ipsec: [conn({ peerCidrs: ['10.2.0.0/24', '10.3.0.0/24'] })] };
    spec2 = { ...spec2, ipsec: [{ ...spec2.ipsec![0]!, localCidrs: ['10.2.0.0/24', '10.3.0.0/24'] }] };
    await apply(spec2);
    await apply(spec1);
    assert.ok(await until(() => ping(vm1, '10.3.0.5'), 25_000), `10.3.0.5 not reached: ${JSON.stringify(await status(R1))}\n${logTail(R1)}\n${logTail(R2)}`);
  });

  it('bad connections are refused naming the field', async () => {
    const refused = (s: RouterSpecT, field: string) => assert.rejects(apply(s), (e: Error & { details?: { field?: string } }) => e.details?.field === field || (console.log(e), false));
    await refused({ ...spec1, ipsec: [conn({ vip: '198.51.100.99' })] }, 'router.ipsec.0.vip');
    await refused({ ...spec1, ipsec: [conn({ peerCidrs: ['10.1.0.128/25'] })] }, 'router.ipsec.0.peerCidrs.0');
  });

  it('the connection removed: charon stopped, the tunnel gone, the ping fails', async () => {
    await apply({ ...spec1, ipsec: [] });
    assert.equal((await status(R1)).running, false);
    assert.equal(await ping(vm1, '10.2.0.5'), false);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await ping(vm1, '10.2.0.5'), false, 'still no tunnel after a watchdog pass');
    const p2 = ipsecPaths(join(routerRoot(host.agent.dataDir), R2.replace(/-/g, '')));
    assert.ok(findCharon(p2) !== undefined);
    for (const r of [R1, R2]) assert.equal((await client.call(vpc.RouterDelete, host.ep, { routerUuid: r })).deleted, true);
    assert.equal(findCharon(p2), undefined, 'deleting the router stops its charon');
  });
});
