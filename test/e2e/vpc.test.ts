// VPC routers end to end through the REST API with real guests: this machine added as a host
// over its own sshd (agents deployed from this tree), a public network on a test bridge whose
// only other member is an "internet" namespace holding the public gateway address (never the
// real uplink), two VPC networks on VXLAN networks of a pool behind one router, and two tiny VMs
// (qemu/TCG) booted once and reused by every case. The host has an address on each VXLAN bridge
// only to steer the guests over SSH; every probe of the router's work runs from inside a guest
// or from the internet namespace. A second router with its own VPC network and vm4 on it is the
// far end of the IPsec cases.
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { exec, execOk, startProcess } from '../../shared/exec.js';
import { useCleanup } from '../harness/cleanup.js';
import { selfSignedCert, servedCertFingerprint } from '../harness/lb.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { guestImage, makeSshKey, sshRun, waitForSerial } from '../harness/guest.js';
import { ensureLibvirt, virsh } from '../harness/libvirt.js';
import { createBridge, createNetns, deleteLink, deleteNetns } from '../harness/net.js';
import { runId, tmpDir } from '../harness/tmp.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout, pkgCache } from '../integration/host/fixture.js';
import { tokenPath, type HostLayout } from '../../controller/host/render.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { vpcModule } from '../../controller/vpc/module.js';
import { routerNames } from '../../vrouteragent/names.js';

const MiB = 1024 * 1024;

async function ok(api: ApiClient, path: string, body: unknown, method: 'post' | 'del' = 'post', timeoutMs = 1_200_000): Promise<any> {
  const r = method === 'post' ? await api.post(path, body) : await api.del(path);
  assert.ok([200, 201, 202].includes(r.status), `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  if (r.status !== 202) return r.body;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const j = await api.get(`/v1/jobs/${r.body.jobUuid}`);
    if (j.body.state !== 'Running') {
      assert.equal(j.body.state, 'Succeeded', `${method} ${path}: ${JSON.stringify(j.body)}`);
      return j.body.result;
    }
    if (Date.now() > deadline) throw new Error(`${method} ${path}: job ${r.body.jobUuid} still running`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await probe()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what}: not true after ${timeoutMs} ms`);
}

describe('e2e: VPC router with real guests (SNAT, EIP, port forwarding, DNS)', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  const rid = runId();
  const inetNs = `${rid}inet`;
  const o2 = randomInt(64, 127);
  const o3 = randomInt(1, 250);
  const PUB = `100.${o2}.${o3}`; // the public network (shared address space, never routed here)
  const INET = `${PUB}.1`; // "the internet": the public gateway, in its own namespace
  const vnet = `10.${randomInt(120, 200)}`;
  let c: TestController;
  let api: ApiClient;
  let key: { priv: string; pubKey: string };
  let imageServer: Server;
  const ids: Record<string, string> = {};
  const vms: Record<string, any> = {};
  const vmUuids: string[] = [];
  const ipOf = (vm: string): string => vms[vm].vmNics[0].ip;
  const inGuest = (vm: string, cmd: string): Promise<string> => sshRun({ host: ipOf(vm), key: key.priv, cmd, timeoutMs: 120_000 });
  /** The address the internet sees a guest's TCP connection come from. */
  /**
   * The source address the internet sees for a connection from `vm` (socat echoes it). No answer
   * at all (a TCG guest on a busy machine can miss nc's timeout) is asked again, up to `tries`
   * times; any answer, right or wrong, is returned as it is.
   */
  const seenAs = async (vm: string, tries = 3): Promise<string> => {
    let got = '';
    for (let i = 0; i < tries && got === ''; i++) got = (await inGuest(vm, `echo | nc -w 5 ${INET} 7000 2>/dev/null || true`)).trim();
    return got;
  };
  /** A real SSH login from the internet namespace; returns the guest's hostname, or undefined. */
  const sshFromInet = (host: string, port = 22, timeoutMs = 30_000): Promise<string | undefined> =>
    sshRun({ host, port, key: key.priv, cmd: 'hostname', netns: inetNs, timeoutMs }).then(
      (s) => s.trim(),
      () => undefined,
    );
  const timings: Record<string, number> = {};
  /** A process's name; undefined once it is gone (a zombie is gone too). */
  const commOf = (pid: number): string | undefined => {
    try {
      const m = /^\d+ \((.*)\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      return m && m[2] !== 'Z' ? m[1] : undefined;
    } catch {
      return undefined;
    }
  };
  /** The processes named `comm` in a namespace (none while it does not exist). */
  const daemonsIn = async (ns: string, comm: string): Promise<number[]> =>
    (await exec('ip', ['netns', 'pids', ns], { okCodes: [0, 1, 255], quiet: true })).stdout.split(/\s+/).filter(Boolean).map(Number).filter((p) => commOf(p) === comm);
  /**
   * A router namespace deleted behind tstack's back lives on, orphaned, while its daemons run, and
   * keeps forwarding until the agent replaces its interfaces: traffic proves the repair only once
   * the old daemons are gone and new ones run in the re-made namespace.
   */
  const deleteRouterNs = async (routerUuid: string, comm: string): Promise<() => Promise<boolean>> => {
    const ns = routerNames(routerUuid).namespace;
    const old = await daemonsIn(ns, comm);
    assert.ok(old.length > 0, `${comm} runs in ${ns}`);
    await exec('ip', ['netns', 'del', ns]);
    return async () => old.every((p) => commOf(p) === undefined) && (await daemonsIn(ns, comm)).length > 0;
  };
  let layout: HostLayout;
  let ports: Awaited<ReturnType<typeof freePorts>>;
  /** One ZStack/VIP metric of a VIP as the vrouteragent exports it (bytes or packets per second). */
  const vipMetric = async (name: string, vipUuid: string): Promise<number> => {
    const token = readFileSync(tokenPath(layout, 'vrouteragent'), 'utf8').trim();
    const text = await (await fetch(`http://127.0.0.1:${ports.vrouteragent}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    const m = new RegExp(`^ZStack_VIP_${name}\\{[^}]*VipUUID="${vipUuid}"[^}]*\\} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };

  before(async function () {
    await ensureLibvirt();
    const img = await guestImage();
    const tree = await builtTree();
    const sshKey = authorizedKey(cleanup, 'vpc');
    layout = await tempLayout(cleanup);
    ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    cleanup.add(async () => {
      for (const u of vmUuids) {
        await virsh(['destroy', `tstack-${u}`]).catch(() => undefined);
        await virsh(['undefine', `tstack-${u}`]).catch(() => undefined);
      }
    }, 'VM domains');
    // the public network: a test bridge; the VPC networks: VXLAN networks of a pool (their
    // bridges br_vx_<vni> are made by the kvmagent; VNIs random so parallel runs never clash)
    const bridges = { pub: `${rid}vp` };
    for (const br of Object.values(bridges)) {
      await createBridge(br, cleanup);
      // the L2's physicalInterface: a veth end of our own (never a real NIC)
      await exec('ip', ['link', 'add', `${br}d0`, 'type', 'veth', 'peer', 'name', `${br}d1`]);
      cleanup.add(() => deleteLink(`${br}d0`), `veth ${br}d0`);
    }
    await createNetns(inetNs, cleanup);
    await exec('ip', ['link', 'add', `${rid}vi0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', inetNs]);
    cleanup.add(() => deleteLink(`${rid}vi0`), 'internet veth');
    await exec('ip', ['link', 'set', `${rid}vi0`, 'master', bridges.pub, 'up']);
    await exec('ip', ['-n', inetNs, 'addr', 'add', `${INET}/24`, 'dev', 'eth0']);
    await exec('ip', ['-n', inetNs, 'link', 'set', 'eth0', 'up']);
    await exec('ip', ['-n', inetNs, 'link', 'set', 'lo', 'up']);
    // tells every TCP client the address it came from
    const who = await startProcess('socat', ['TCP-LISTEN:7000,fork,reuseaddr', 'SYSTEM:echo $SOCAT_PEERADDR'], { netns: inetNs });
    cleanup.add(() => who.stop(500), 'whoami listener');
    const work = await tmpDir('vpc', cleanup);
    const psDir = join(work, 'ps');
    const bsDir = join(work, 'bs');
    mkdirSync(psDir);
    mkdirSync(bsDir);
    key = await makeSshKey(join(work, 'keys'));
    imageServer = createServer((req, res) => {
      if (req.url !== '/tinyguest.qcow2') {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader('content-length', String(statSync(img.qcow2).size));
      createReadStream(img.qcow2).pipe(res);
    });
    await new Promise<void>((r) => imageServer.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => imageServer.close(() => r())), 'image server');
    c = await testController(cleanup, {
      modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, packageCacheDir: pkgCache(tree), listenHost: '127.0.0.1', pingIntervalMs: 5_000, agentExtra: { vrouteragent: { metricsIntervalMs: 1_000 } } } }), vpcModule()],
      reconcile: { periodMs: 3_000, baseBackoffMs: 500, maxBackoffMs: 3_000 },
    } as never);
    api = await c.login('admin', c.adminPassword);
    cleanup.add(() => {
      const pub = join(c.dataDir, 'ssh', 'id_ed25519.pub');
      if (!existsSync(pub)) return;
      const k = readFileSync(pub, 'utf8').trim().split(/\s+/)[1]!;
      const f = '/root/.ssh/authorized_keys';
      writeFileSync(f, readFileSync(f, 'utf8').split('\n').filter((l) => !l.includes(k)).join('\n'), { mode: 0o600 });
    }, "controller key in root's authorized_keys");
    cleanup.add(async () => {
      for (const u of vmUuids) {
        const v = await api.get(`/v1/vm-instances/${u}`);
        if (v.status !== 200) continue;
        if (v.body.state !== 'Destroyed') await api.del(`/v1/vm-instances/${u}?wait=true`);
        await api.post(`/v1/vm-instances/${u}/actions?wait=true`, { expunge: {} });
      }
      for (const r of [ids.router, ids.router2]) if (r) await api.del(`/v1/vpc-routers/${r}?cascade=true`);
      for (const k of ['a', 'b', 'c', 'f', 'pub']) if (ids[`l3${k}`]) await api.del(`/v1/l3-networks/${ids[`l3${k}`]}?wait=true`);
      if (ids.pool) await api.del(`/v1/l2-networks/${ids.pool}?cascade=true`);
    }, 'cloud resources');

    ids.zone = (await ok(api, '/v1/zones', { name: `${rid}-zone` })).uuid;
    ids.cluster = (await ok(api, '/v1/clusters', { name: `${rid}-cluster`, zoneUuid: ids.zone })).uuid;
    ids.host = (await ok(api, '/v1/hosts', { name: `${rid}-host`, clusterUuid: ids.cluster, managementIp: '127.0.0.1', username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' })).uuid;
    ids.bs = (await ok(api, '/v1/backup-storage', { name: `${rid}-bs`, hostname: '127.0.0.1', url: bsDir })).uuid;
    await ok(api, `/v1/zones/${ids.zone}/actions`, { attachBackupStorage: { backupStorageUuid: ids.bs } });
    ids.ps = (await ok(api, '/v1/primary-storage', { name: `${rid}-ps`, zoneUuid: ids.zone, type: 'LocalStorage', url: psDir })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ids.ps } });
    ids.offering = (await ok(api, '/v1/instance-offerings', { name: `${rid}-tiny`, cpuNum: 1, memorySize: 160 * MiB })).uuid;
    const addr = imageServer.address() as AddressInfo;
    ids.image = (await ok(api, '/v1/images', { name: `${rid}-tinyguest`, url: `http://127.0.0.1:${addr.port}/tinyguest.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] })).uuid;
    const vni0 = randomInt(1_000_000, 16_000_000);
    ids.pool = (await ok(api, '/v1/l2-networks', { name: `${rid}-vxpool`, zoneUuid: ids.zone, type: 'VxlanNetworkPool', vniStartInclusive: vni0, vniEndInclusive: vni0 + 9 })).uuid;
    // one host: its management IP is its tunnel endpoint
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: ids.pool, vtepCidr: '127.0.0.0/8' } });
    const outOfPool = await api.post('/v1/l2-networks', { name: 'bad', zoneUuid: ids.zone, type: 'VxlanNetwork', poolUuid: ids.pool, vni: vni0 + 10 });
    assert.equal(outOfPool.status, 400, JSON.stringify(outOfPool.body));
    assert.equal(outOfPool.body.error?.details?.field ?? outOfPool.body.details?.field ?? outOfPool.body.field, 'vni');
    const l3 = async (k: string, extra: Record<string, unknown>, range: Record<string, unknown>): Promise<string> => {
      let l2: string;
      if (k === 'pub') {
        const br = bridges.pub;
        l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2${k}`, zoneUuid: ids.zone, physicalInterface: `${br}d0`, tags: [`bridgeName::${br}`] })).uuid;
        await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: l2 } });
      } else {
        const vx = await ok(api, '/v1/l2-networks', { name: `${rid}-l2${k}`, zoneUuid: ids.zone, type: 'VxlanNetwork', poolUuid: ids.pool });
        l2 = vx.uuid;
        cleanup.add(() => deleteLink(`vxlan${vx.vni}`), `vxlan${vx.vni}`);
        cleanup.add(() => deleteLink(`br_vx_${vx.vni}`), `br_vx_${vx.vni}`);
        assert.equal(vx.bridgeName, `br_vx_${vx.vni}`);
        const dev = (await exec('ip', ['-d', 'link', 'show', `vxlan${vx.vni}`])).stdout;
        assert.match(dev, new RegExp(`vxlan id ${vx.vni} local 127\\.0\\.0\\.1`), dev);
        await exec('ip', ['addr', 'add', `${vnet}.${{ a: 1, b: 2, c: 3 }[k]}.254/24`, 'dev', vx.bridgeName]); // steering only
      }
      const u = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3${k}`, l2NetworkUuid: l2, ...extra })).uuid;
      await ok(api, '/v1/ip-ranges', { l3NetworkUuid: u, netmask: '255.255.255.0', ...range });
      ids[`l3${k}`] = u;
      return u;
    };
    await l3('pub', { category: 'Public' }, { startIp: `${PUB}.10`, endIp: `${PUB}.60`, gateway: INET });
    await l3('a', { type: 'L3VpcNetwork' }, { startIp: `${vnet}.1.10`, endIp: `${vnet}.1.60`, gateway: `${vnet}.1.1` });
    await l3('b', { type: 'L3VpcNetwork' }, { startIp: `${vnet}.2.10`, endIp: `${vnet}.2.60`, gateway: `${vnet}.2.1` });
    // VPC B: the far end of the IPsec cases, behind a second router
    await l3('c', { type: 'L3VpcNetwork' }, { startIp: `${vnet}.3.10`, endIp: `${vnet}.3.60`, gateway: `${vnet}.3.1` });
    ids.vro = (await ok(api, '/v1/virtual-router-offerings', { name: `${rid}-vro`, zoneUuid: ids.zone, publicNetworkUuid: ids.l3pub })).uuid;
    const t0 = Date.now();
    const router = await ok(api, '/v1/vpc-routers', { name: `${rid}-router`, virtualRouterOfferingUuid: ids.vro, dns: [INET] });
    timings.routerCreateMs = Date.now() - t0;
    ids.router = router.uuid;
    ids.publicIp = router.publicIp;
    const ns = routerNames(router.uuid).namespace;
    cleanup.add(() => deleteNetns(ns), `router namespace ${ns}`);
    assert.equal(router.state, 'Running');
    assert.equal(router.status, 'Connected');
    await ok(api, `/v1/vpc-routers/${ids.router}/actions`, { attachL3Network: { l3NetworkUuid: ids.l3a } });
    await ok(api, `/v1/vpc-routers/${ids.router}/actions`, { attachL3Network: { l3NetworkUuid: ids.l3b } });
    const router2 = await ok(api, '/v1/vpc-routers', { name: `${rid}-router2`, virtualRouterOfferingUuid: ids.vro });
    ids.router2 = router2.uuid;
    ids.publicIp2 = router2.publicIp;
    const ns2 = routerNames(router2.uuid).namespace;
    cleanup.add(() => deleteNetns(ns2), `router namespace ${ns2}`);
    await ok(api, `/v1/vpc-routers/${ids.router2}/actions`, { attachL3Network: { l3NetworkUuid: ids.l3c } });
    // the outside knows the way to the private networks: only the router keeps them closed
    await exec('ip', ['-n', inetNs, 'route', 'add', `${vnet}.0.0/16`, 'via', ids.publicIp]);
    // every guest serves its hostname on :8080 (busybox httpd, a load-balancer backend); a stop
    // through the API (ACPI) stops accepting first and lets requests in flight finish
    const web = [
      'mkdir -p /www && hostname > /www/index.html',
      'setsid busybox httpd -f -p 8080 -h /www </dev/null >/dev/null 2>&1 & echo $! > /run/httpd.pid',
      "printf '#!/bin/sh\\nkill $(cat /run/httpd.pid)\\nsleep 1\\n' > /etc/rc.shutdown && chmod 755 /etc/rc.shutdown",
    ].join('\n');
    const mk = (name: string, l3u: string) =>
      ok(api, '/v1/vm-instances', { name: `${rid}-${name}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [l3u], sshKey: key.pubKey, userData: `#!/bin/sh\n${web}\necho USERDATA-${name}-RAN\n` });
    // vm3: a second web VM on network A (a load balancer's backends share one network); vm4: in
    // VPC B, behind the second router
    const tBoot = Date.now();
    const made = await Promise.all([mk('vm1', ids.l3a), mk('vm2', ids.l3b), mk('vm3', ids.l3a), mk('vm4', ids.l3c)]);
    for (const [i, vm] of made.entries()) {
      vmUuids.push(vm.uuid);
      vms[`vm${i + 1}`] = vm;
    }
    for (const [name, vm] of Object.entries(vms)) {
      await waitForSerial(vm.serialLogPath, new RegExp(`USERDATA-${name}-RAN`), 600_000);
      await inGuest(name, 'true');
      timings[`${name}ReadyMs`] = Date.now() - tBoot;
    }
  });

  after(() => {
    if (Object.keys(timings).length) process.stdout.write(`      VPC timings: ${JSON.stringify(timings)}\n`);
  });

  it('VMs of two VPC networks got addresses (gateway = the router) and reach each other through the router', async () => {
    assert.equal(vms.vm1.vmNics[0].gateway, `${vnet}.1.1`);
    assert.match(await inGuest('vm1', 'ip route'), new RegExp(`default via ${vnet}\\.1\\.1`));
    assert.match(await inGuest('vm1', `ping -c 2 -W 2 ${ipOf('vm2')} >/dev/null && echo REACHED || echo NO`), /REACHED/);
    assert.match(await inGuest('vm2', `ping -c 2 -W 2 ${ipOf('vm1')} >/dev/null && echo REACHED || echo NO`), /REACHED/);
  });

  it('SNAT: a guest reaches the internet as the router\'s public IP; the guest is closed from outside', async () => {
    assert.equal(await seenAs('vm1'), ids.publicIp);
    assert.equal(await seenAs('vm2'), ids.publicIp);
    assert.equal(await execOk('ping', ['-c', '1', '-W', '1', ipOf('vm1')], { netns: inetNs, timeoutMs: 10_000 }), false);
    assert.equal(await sshFromInet(ipOf('vm1'), 22, 4_000), undefined);
  });

  it('DNS: a VM resolves the other VM\'s name through the router', async () => {
    const name = `${rid}-vm2`.toLowerCase();
    const out = await inGuest('vm1', `nslookup ${name} ${vnet}.1.1 2>&1 || true`);
    assert.match(out, new RegExp(ipOf('vm2').replace(/\./g, '\\.')), out);
  });

  it('EIP: SSH in from the internet through the EIP; traffic leaves as the EIP, and after detach as the public IP again', async () => {
    const field = (r: { body: any }): unknown => r.body?.error?.details?.field ?? r.body?.details?.field ?? r.body?.field;
    const bad = await api.post('/v1/vips', { name: 'bad', l3NetworkUuid: ids.l3a });
    assert.equal(bad.status, 400);
    assert.equal(field(bad), 'l3NetworkUuid', 'a private L3 as the VIP network');
    // another account's EIP cannot take this account's NIC
    const other = await c.account(`${rid}-other`);
    const ov = await other.post('/v1/vips', { name: `${rid}-other-vip`, l3NetworkUuid: ids.l3pub });
    assert.equal(ov.status, 201, JSON.stringify(ov.body));
    const theirs = await other.post('/v1/eips', { name: `${rid}-other-eip`, vipUuid: ov.body.uuid, vmNicUuid: vms.vm1.vmNics[0].uuid });
    assert.equal(theirs.status, 400, JSON.stringify(theirs.body));
    assert.equal(field(theirs), 'vmNicUuid', "an EIP on another account's NIC");
    assert.ok((await other.del(`/v1/vips/${ov.body.uuid}`)).status < 300);
    const vip = await ok(api, '/v1/vips', { name: `${rid}-eipvip`, l3NetworkUuid: ids.l3pub });
    const t0 = Date.now();
    const eip = await ok(api, '/v1/eips', { name: `${rid}-eip`, vipUuid: vip.uuid, vmNicUuid: vms.vm1.vmNics[0].uuid });
    ids.eip = eip.uuid;
    assert.equal(await sshFromInet(vip.ip), `${rid}-vm1`.toLowerCase());
    timings.eipToSshMs = Date.now() - t0;
    assert.equal(await seenAs('vm1'), vip.ip);
    assert.equal(await seenAs('vm2'), ids.publicIp, 'the other VM still leaves as the public IP');
    // ZStack/VIP metrics: pings from the internet to the EIP (1000-byte payloads, answered by vm1)
    // show as the VIP's inbound and outbound traffic on the vrouteragent's /metrics
    const pinging = execOk('ping', ['-c', '40', '-i', '0.2', '-s', '1000', vip.ip], { netns: inetNs, timeoutMs: 30_000 });
    const t1 = Date.now();
    await until('VIPInBoundTrafficInBytes and VIPOutBoundTrafficInBytes of the EIP > 1000 B/s', async () => (await vipMetric('VIPInBoundTrafficInBytes', vip.uuid)) > 1000 && (await vipMetric('VIPOutBoundTrafficInBytes', vip.uuid)) > 1000, 20_000);
    timings.vipMetricMs = Date.now() - t1;
    assert.ok((await vipMetric('VIPInBoundTrafficInPackages', vip.uuid)) > 0);
    assert.ok(await pinging, 'the EIP answered the pings');
    await ok(api, `/v1/eips/${ids.eip}/actions`, { detach: {} });
    assert.equal(await seenAs('vm1'), ids.publicIp);
    assert.equal(await sshFromInet(vip.ip, 22, 4_000), undefined, 'detached: closed again');
  });

  it('port forwarding VIP:2222 → vm2:22; an overlapping rule is refused', async () => {
    const vip = await ok(api, '/v1/vips', { name: `${rid}-pfvip`, l3NetworkUuid: ids.l3pub });
    await ok(api, '/v1/port-forwarding-rules', { name: `${rid}-ssh`, vipUuid: vip.uuid, vipPortStart: 2222, privatePortStart: 22, protocolType: 'TCP', vmNicUuid: vms.vm2.vmNics[0].uuid });
    assert.equal(await sshFromInet(vip.ip, 2222), `${rid}-vm2`.toLowerCase());
    assert.equal(await sshFromInet(vip.ip, 22, 4_000), undefined, 'only the forwarded port');
    const clash = await api.post('/v1/port-forwarding-rules', { name: 'clash', vipUuid: vip.uuid, vipPortStart: 2200, vipPortEnd: 2300, privatePortStart: 2200, privatePortEnd: 2300, protocolType: 'TCP' });
    assert.equal(clash.status, 409, JSON.stringify(clash.body));
  });

  // issue 13: an EIP on a flat network is 1:1 NAT on the VM's host (vrouteragent/flat-eip.ts);
  // its own flat L3 on a test bridge (gateway .1 exists nowhere: the host answers for it) and VM
  describe('EIP on a flat-network VM', function () {
    const FLAT = `10.${randomInt(201, 250)}.${randomInt(1, 250)}`;

    before(async function () {
      const br = `${rid}vf`;
      await createBridge(br, cleanup);
      await exec('ip', ['link', 'add', `${br}d0`, 'type', 'veth', 'peer', 'name', `${br}d1`]);
      cleanup.add(() => deleteLink(`${br}d0`), `veth ${br}d0`);
      await exec('ip', ['addr', 'add', `${FLAT}.254/24`, 'dev', br]); // steering only
      const l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2f`, zoneUuid: ids.zone, physicalInterface: `${br}d0`, tags: [`bridgeName::${br}`] })).uuid;
      await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: l2 } });
      ids.l3f = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3f`, l2NetworkUuid: l2 })).uuid;
      await ok(api, '/v1/ip-ranges', { l3NetworkUuid: ids.l3f, netmask: '255.255.255.0', startIp: `${FLAT}.10`, endIp: `${FLAT}.60`, gateway: `${FLAT}.1` });
      const t0 = Date.now();
      const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-fvm`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3f], sshKey: key.pubKey, userData: '#!/bin/sh\necho USERDATA-fvm-RAN\n' });
      vmUuids.push(vm.uuid);
      vms.fvm = vm;
      await waitForSerial(vm.serialLogPath, /USERDATA-fvm-RAN/, 600_000);
      await inGuest('fvm', 'true');
      timings.flatVmBootMs = Date.now() - t0;
    });

    it('SSH and ping from outside through the EIP; traffic leaves as the EIP; repaired after its namespace is deleted; detach closes it', async () => {
      const vip = await ok(api, '/v1/vips', { name: `${rid}-fvip`, l3NetworkUuid: ids.l3pub });
      const t0 = Date.now();
      const eip = await ok(api, '/v1/eips', { name: `${rid}-feip`, vipUuid: vip.uuid, vmNicUuid: vms.fvm.vmNics[0].uuid });
      assert.equal(eip.vpcRouterUuid, undefined, 'served by the host, not a router');
      assert.equal(await sshFromInet(vip.ip), `${rid}-fvm`.toLowerCase());
      timings.flatEipToSshMs = Date.now() - t0;
      assert.ok(await execOk('ping', ['-c', '2', '-W', '2', vip.ip], { netns: inetNs, timeoutMs: 10_000 }), 'the EIP answers pings');
      assert.equal(await seenAs('fvm'), vip.ip, 'outbound traffic leaves as the EIP');
      // the host's EIP namespace deleted behind tstack's back: the agent's watchdog or the reconcile pass rebuilds it
      await exec('ip', ['netns', 'del', 'tsflat-eip']);
      const t1 = Date.now();
      await until('the flat EIP answers again', () => execOk('ping', ['-c', '1', '-W', '1', vip.ip], { netns: inetNs, timeoutMs: 5_000 }), 60_000);
      timings.flatEipRestoredMs = Date.now() - t1;
      await ok(api, `/v1/eips/${eip.uuid}/actions`, { detach: {} });
      assert.equal(await sshFromInet(vip.ip, 22, 4_000), undefined, 'detached: closed');
      assert.notEqual(await seenAs('fvm', 1), vip.ip, 'detached: no longer leaves as the EIP');
    });
  });

  it('the router namespace deleted behind tstack\'s back comes back and traffic resumes', async () => {
    // its DNS forwarder marks the namespace: SNAT is probed once the old one is gone (see deleteRouterNs)
    const rebuilt = await deleteRouterNs(ids.router, 'dnsmasq');
    const t0 = Date.now();
    await until('the old DNS forwarder stopped, a new one in the re-made namespace', rebuilt, 120_000);
    await until('SNAT works again', async () => (await seenAs('vm1')) === ids.publicIp, 120_000);
    timings.namespaceRestoredMs = Date.now() - t0;
    assert.match(await inGuest('vm1', `ping -c 1 -W 2 ${ipOf('vm2')} >/dev/null && echo REACHED || echo NO`), /REACHED/);
  });

  // issue 14: its own block on the file's bring-up (vm1 and vm3 on network A are the backends)
  describe('load balancer', () => {
    it('vm1 and vm3 answer in turn through a TCP listener on a public VIP, from outside and east-west; an HTTPS listener presents the uploaded certificate; a port clash → 409', async () => {
      const work = await tmpDir('vpclb', cleanup);
      const [mine, other] = await Promise.all([selfSignedCert(work, 'lb.e2e.test'), selfSignedCert(work, 'other.e2e.test')]);
      const mismatched = await api.post('/v1/certificates', { name: `${rid}-bad`, certificate: mine.cert, privateKey: other.key });
      assert.equal(mismatched.status, 400, JSON.stringify(mismatched.body));
      assert.equal(mismatched.body?.field, 'privateKey');
      const cert = await ok(api, '/v1/certificates', { name: `${rid}-cert`, certificate: mine.cert, privateKey: mine.key });
      const vip = await ok(api, '/v1/vips', { name: `${rid}-lbvip`, l3NetworkUuid: ids.l3pub });
      ids.lbVip = vip.ip;
      const lb = await ok(api, '/v1/load-balancers', { name: `${rid}-lb`, vipUuid: vip.uuid });
      const nics = [vms.vm1.vmNics[0].uuid, vms.vm3.vmNics[0].uuid];
      const fast = { healthCheckInterval: 1, healthCheckTimeout: 1 };
      const t0 = Date.now();
      const tcp = await ok(api, '/v1/load-balancer-listeners', { name: `${rid}-tcp`, loadBalancerUuid: lb.uuid, protocol: 'tcp', loadBalancerPort: 80, instancePort: 8080, vmNicUuids: nics, ...fast });
      ids.tcpListener = tcp.uuid;
      const status = async (u: string): Promise<Record<string, string>> => Object.fromEntries((await ok(api, `/v1/load-balancer-listeners/${u}/actions`, { getStatus: {} })).backends.map((b: any) => [b.vmNicUuid, b.status]));
      await until('both backends UP', async () => Object.values(await status(tcp.uuid)).filter((x) => x === 'UP').length === 2);
      const get = async (url: string): Promise<string> => (await exec('curl', ['-sk', '-m', '20', url], { netns: inetNs, timeoutMs: 30_000 })).stdout.trim();
      const seen: string[] = [];
      for (let i = 0; i < 4; i++) seen.push(await get(`http://${vip.ip}/`));
      timings.lbListenerToAnswerMs = Date.now() - t0;
      const names = [`${rid}-vm1`.toLowerCase(), `${rid}-vm3`.toLowerCase()];
      assert.deepEqual([...new Set(seen)].sort(), names.sort(), seen.join(','));
      assert.notEqual(seen[0], seen[1], `in turn: ${seen.join(',')}`);
      // east-west: from a VM inside the VPC: vm2 (the other network) and vm1 (a backend itself, on
      // the backends' network: haproxy connects from the router's address, so no hairpin NAT)
      // (busybox 1.35's static wget segfaults with -T: the time limit comes from `timeout`)
      for (const from of ['vm2', 'vm1']) {
        const got = new Set<string>();
        for (let i = 0; i < 2; i++) got.add((await inGuest(from, `timeout 15 wget -qO- http://${vip.ip}/ 2>&1 || echo WGET-FAILED`)).trim());
        assert.deepEqual([...got].sort(), names.sort(), `east-west from ${from}`);
      }
      const https = await ok(api, '/v1/load-balancer-listeners', { name: `${rid}-https`, loadBalancerUuid: lb.uuid, protocol: 'https', loadBalancerPort: 443, instancePort: 8080, certificateUuid: cert.uuid, healthCheckTarget: 'http:/index.html', vmNicUuids: nics, ...fast });
      await until('https backends UP', async () => Object.values(await status(https.uuid)).filter((x) => x === 'UP').length === 2);
      assert.ok(names.includes(await get(`https://${vip.ip}/`)));
      assert.equal(await servedCertFingerprint(inetNs, vip.ip, 443, 'lb.e2e.test'), cert.fingerprint);
      assert.equal(cert.fingerprint, mine.fingerprint256);
      const clash = await api.post('/v1/load-balancer-listeners', { name: 'clash', loadBalancerUuid: lb.uuid, protocol: 'http', loadBalancerPort: 80, instancePort: 8080 });
      assert.equal(clash.status, 409, JSON.stringify(clash.body));
      assert.equal(clash.body?.field, 'loadBalancerPort');
    });

    it('vm3 stopped through the API is taken out by the health check with no failed client request', async () => {
      let n = 0;
      const failed: string[] = [];
      let done = false;
      const loop = (async () => {
        while (!done) {
          const r = await exec('curl', ['-s', '-m', '20', '-o', '/dev/null', '-w', '%{http_code}', `http://${ids.lbVip}/`], { netns: inetNs, timeoutMs: 30_000, okCodes: [0, 7, 28, 52, 56] });
          n++;
          if (r.stdout !== '200') failed.push(`${r.code}/${r.stdout}`);
          await new Promise((res) => setTimeout(res, 100));
        }
      })();
      const t0 = Date.now();
      await ok(api, `/v1/vm-instances/${vms.vm3.uuid}/actions`, { stop: {} });
      const nic3 = vms.vm3.vmNics[0].uuid;
      await until('vm3 DOWN', async () => (await ok(api, `/v1/load-balancer-listeners/${ids.tcpListener}/actions`, { getStatus: {} })).backends.find((b: any) => b.vmNicUuid === nic3).status === 'DOWN', 60_000);
      timings.lbBackendDownMs = Date.now() - t0;
      await new Promise((res) => setTimeout(res, 1_000));
      done = true;
      await loop;
      assert.deepEqual(failed, [], `${failed.length} of ${n} requests failed`);
      assert.ok(n >= 5, `${n} requests`);
    });

    it('the router namespace deleted: the TCP and HTTPS listeners come back', async () => {
      const rebuilt = await deleteRouterNs(ids.router, 'haproxy');
      const t0 = Date.now();
      await until('the old haproxy stopped, a new one in the re-made namespace', rebuilt, 60_000);
      for (const url of [`http://${ids.lbVip}/`, `https://${ids.lbVip}/`]) {
        await until(`the listener ${url} answers again`, async () => (await exec('curl', ['-sk', '-m', '5', url], { netns: inetNs, timeoutMs: 15_000, okCodes: [0, 7, 28, 35, 52, 56] })).stdout.trim() === `${rid}-vm1`.toLowerCase(), 60_000);
      }
      timings.lbRestoredMs = Date.now() - t0;
    });
  });

  // issue 14: a site-to-site tunnel between the two routers, vm1 (VPC A) ↔ vm4 (VPC B)
  describe('IPsec', () => {
    const ipsec: Record<string, string> = {};
    const reaches = async (): Promise<boolean> => /REACHED/.test(await inGuest('vm1', `ping -c 1 -W 2 ${ipOf('vm4')} >/dev/null && echo REACHED || echo NO`));

    it('a connection on each router through the API carries a ping from vm1 to vm4\'s private address (unNATed); both report up', async () => {
      assert.equal(await reaches(), false, 'no tunnel yet: VPC B is not reachable from VPC A');
      const r1 = (await api.get(`/v1/vpc-routers/${ids.router}`)).body;
      const r2 = (await api.get(`/v1/vpc-routers/${ids.router2}`)).body;
      const t0 = Date.now();
      ipsec.c1 = (await ok(api, '/v1/ipsec-connections', { name: `${rid}-to-r2`, vipUuid: r1.vipUuid, l3NetworkUuids: [ids.l3a], peerAddress: ids.publicIp2, peerCidrs: [`${vnet}.3.0/24`], authKey: `${rid}-psk` })).uuid;
      ipsec.c2 = (await ok(api, '/v1/ipsec-connections', { name: `${rid}-to-r1`, vipUuid: r2.vipUuid, l3NetworkUuids: [ids.l3c], peerAddress: ids.publicIp, peerCidrs: [`${vnet}.1.0/24`], authKey: `${rid}-psk` })).uuid;
      await until('vm1 pings vm4 through the tunnel', reaches, 60_000);
      timings.ipsecTunnelMs = Date.now() - t0;
      // the tunnel's selectors are the private CIDRs: a ping SNATed to the public IP would not
      // enter it, so vm4 answering (and reaching vm1 back) shows the private addresses are kept
      assert.match(await inGuest('vm4', `ping -c 1 -W 2 ${ipOf('vm1')} >/dev/null && echo REACHED || echo NO`), /REACHED/, 'and back');
      assert.equal((await inGuest('vm1', `timeout 15 wget -qO- http://${ipOf('vm4')}:8080/ 2>&1 || echo WGET-FAILED`)).trim(), `${rid}-vm4`.toLowerCase(), 'TCP through the tunnel');
      for (const u of [ipsec.c1, ipsec.c2]) {
        const st = await ok(api, `/v1/ipsec-connections/${u}/actions`, { getStatus: {} });
        assert.equal(st.status, 'up', JSON.stringify(st));
      }
    });

    it('the router namespace deleted behind tstack\'s back: a new charon in the new namespace brings the tunnel back', async () => {
      const rebuilt = await deleteRouterNs(ids.router, 'charon');
      const t0 = Date.now();
      await until('the old charon stopped, a new one in the re-made namespace', rebuilt, 60_000);
      await until('vm1 pings vm4 through the tunnel again', reaches, 60_000);
      timings.ipsecRestoredMs = Date.now() - t0;
    });

    it('deleting the connection stops the tunnel, and no reconcile brings it back', async () => {
      await ok(api, `/v1/ipsec-connections/${ipsec.c1}`, undefined, 'del');
      const t0 = Date.now();
      await until('the tunnel is gone with the connection', async () => !(await reaches()), 30_000);
      timings.ipsecStoppedMs = Date.now() - t0;
      await new Promise((r) => setTimeout(r, 4_000)); // longer than a reconcile period
      assert.equal(await reaches(), false, 'still gone after a reconcile pass');
      const st = await ok(api, `/v1/ipsec-connections/${ipsec.c2}/actions`, { getStatus: {} });
      assert.notEqual(st.status, 'up', `the peer's connection is down too: ${JSON.stringify(st)}`);
    });
  });
});
