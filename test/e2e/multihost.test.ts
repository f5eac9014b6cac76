// Several real hosts: this machine (host 1, on the management fabric's first address) and a
// namespaced host (scripts/nshost: own libvirtd, sshd, network stack) added over SSH through
// the host API like any server; a shared-mount-point primary storage seen by both; the flat L3
// on an L2 that spans both hosts. Real guests: a VM on each host (they ping each other across
// hosts), live migration both ways through the API keeping the guest's boot id and an open SSH
// session, fault injection in the migration flow (the VM stays on exactly one host), and host
// maintenance (its VMs live-migrate away; new VMs avoid it); anti-affinity; a third namespaced
// host and a local primary storage (a private disk per host at one path): a stopped VM cold-migrates
// to host 3 with its volume and boots there with its data, live-migrates with its disk to host 2
// and back once the global config allows it, then host 3's maintenance stops it; host 3 enabled
// again; HA on three hosts (the namespaced host's kvmagent killed alone: no restart; every process
// of it killed: its NeverStop VM comes back on one of the two others). The HA cases run last: they
// leave host 2 dead.
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createHash, randomInt } from 'node:crypto';
import { exec, execOk } from '../../shared/exec.js';
import { Cleanup, useCleanup } from '../harness/cleanup.js';
import { expungeCloud, removeControllerKey } from '../harness/cloud-teardown.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { guestImage, makeSshKey, sshRun, waitForSerial } from '../harness/guest.js';
import { ensureLibvirt } from '../harness/libvirt.js';
import { createBridge, createNetns, deleteLink } from '../harness/net.js';
import { nsExec, nsFabric, nsHostUp, type NsFabric, type NsHost } from '../harness/nshost.js';
import { runId, tmpDir } from '../harness/tmp.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout, pkgCache } from '../integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { secgroupModule } from '../../controller/secgroup/module.js';
import { pidPath, type HostLayout } from '../../controller/host/render.js';

const MiB = 1024 * 1024;

async function ok(api: ApiClient, path: string, body: unknown, method: 'post' | 'del' = 'post'): Promise<any> {
  const sep = path.includes('?') ? '&' : '?';
  const r = method === 'post' ? await api.post(`${path}${sep}wait=true`, body) : await api.del(`${path}${sep}wait=true`);
  assert.ok(r.status === 200 || r.status === 201, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** POST as a job and wait for it (a host add deploys the agents: longer than an HTTP request may wait). */
async function viaJob(api: ApiClient, path: string, body: unknown): Promise<any> {
  const r = await api.post(path, body);
  assert.equal(r.status, 202, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
  const deadline = Date.now() + 900_000;
  for (;;) {
    const j = await api.get(`/v1/jobs/${r.body.jobUuid}`);
    if (j.body.state !== 'Running') {
      assert.equal(j.body.state, 'Succeeded', JSON.stringify(j.body));
      return j.body.result;
    }
    if (Date.now() > deadline) throw new Error(`job ${r.body.jobUuid} still running`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** Domain names (tstack-…) running under a libvirt URI. */
async function domains(uri: string): Promise<string[]> {
  const out = (await exec('virsh', ['-c', uri, 'list', '--name'], { timeoutMs: 30_000 })).stdout;
  return out.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('tstack-'));
}

describe('e2e: several hosts — namespaced host added over SSH, shared storage, cross-host network, live migration', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  const lateHosts = new Cleanup();
  const rid = runId();
  // host 1's vrouteragent names its namespaces and links after the run: leftovers are attributable
  const runPrefixes = { namePrefix: rid, ...(rid.length <= 7 ? { ifPrefix: rid } : {}) };
  const bridge = `${rid}mbr`;
  const nic = `${rid}md0`;
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  let fab: NsFabric;
  let host2: NsHost;
  /** Local primary storage: the same path on every host, each namespaced host with its own disk there. */
  let localDir: string;
  let c: TestController;
  let api: ApiClient;
  let layout: HostLayout;
  let sharedDir: string;
  let bsDir: string;
  let key: { priv: string; pubKey: string };
  let imageServer: Server;
  const ids: Record<string, string> = {};
  const uris: Record<string, string> = {};
  const vms: Record<string, any> = {};

  before(async function () {
    await ensureLibvirt();
    const img = await guestImage();
    const tree = await builtTree();
    const sshKey = authorizedKey(cleanup, 'multihost');
    layout = await tempLayout(cleanup);
    const ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop host 1 agents');
    // the VM network: a bridge with this machine's address and a veth end as host 1's L2 interface
    await createBridge(bridge, cleanup);
    await exec('ip', ['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    await exec('ip', ['link', 'add', nic, 'type', 'veth', 'peer', 'name', `${rid}md1`]);
    cleanup.add(() => deleteLink(nic), `veth ${nic}`);
    // every extra host gets an interface of the same name joined to the same bridge, and its own
    // agent config/data/run/log directories (the install directory is shared, as on one image)
    localDir = await tmpDir('multihost-local', cleanup);
    fab = await nsFabric(cleanup, { links: [{ bridge, ifname: nic }], private: [layout.etcDir, layout.dataDir, layout.runDir, layout.logDir, localDir] });
    const h2 = await nsHostUp(fab, 2, cleanup);
    host2 = h2;
    uris.h1 = 'qemu:///system';
    uris.h2 = h2.uri;
    const work = await tmpDir('multihost', cleanup);
    sharedDir = join(work, 'shared');
    bsDir = join(work, 'bs');
    mkdirSync(sharedDir);
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
    // the controller listens on the fabric: agents on every host post their events to it
    c = await testController(cleanup, {
      listenHost: fab.ip(1),
      // HA: a host is dead 8 s after its storage heartbeat stopped (production: 12 s); the tracker
      // pings every 2 s (Disconnected after 3 misses; a ping still waits 5 s for a busy agent)
      modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, packageCacheDir: pkgCache(tree), listenHost: '0.0.0.0', pingIntervalMs: 2_000, pingTimeoutMs: 5_000, agentExtra: { vrouteragent: runPrefixes } }, ha: { checkIntervalMs: 2_000, heartbeatIntervalMs: 1_000, hostDeadAfterMs: 8_000 } }), secgroupModule()],
    } as never);
    api = await c.login('admin', c.adminPassword);
    cleanup.add(() => removeControllerKey(c.dataDir), "controller key in root's authorized_keys");
    // hosts added by the tests go down after the cloud's resources are gone (their agents delete
    // what the hosts hold); the Cleanup runs last-in first-out
    cleanup.add(() => lateHosts.run(), 'namespaced hosts added by the tests');
    cleanup.add(() => expungeCloud(api), 'cloud resources');
    Object.assign(ids, { sshKey: sshKey.privateKey });
  });

  it('adds this machine and a namespaced host over SSH; shared storage, image, L2 and flat L3 span both', async () => {
    ids.zone = (await ok(api, '/v1/zones', { name: `${rid}-zone` })).uuid;
    ids.cluster = (await ok(api, '/v1/clusters', { name: `${rid}-cluster`, zoneUuid: ids.zone })).uuid;
    for (const n of [1, 2]) {
      const h = await viaJob(api, '/v1/hosts', { name: `${rid}-host${n}`, clusterUuid: ids.cluster, managementIp: fab.ip(n), username: 'root', sshPrivateKey: ids.sshKey, virtType: 'qemu' });
      assert.equal(h.status, 'Connected', JSON.stringify(h));
      ids[`h${n}`] = h.uuid;
    }
    const h2 = (await api.get(`/v1/hosts/${ids.h2}`)).body;
    assert.equal(h2.hostname, 'nsh-h2', 'the second host reports its own host name');
    ids.bs = (await ok(api, '/v1/backup-storage', { name: `${rid}-bs`, hostname: fab.ip(1), url: bsDir })).uuid;
    await ok(api, `/v1/zones/${ids.zone}/actions`, { attachBackupStorage: { backupStorageUuid: ids.bs } });
    ids.ps = (await ok(api, '/v1/primary-storage', { name: `${rid}-shared`, zoneUuid: ids.zone, type: 'SharedMountPoint', url: sharedDir })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ids.ps } });
    assert.equal((await api.get(`/v1/primary-storage/${ids.ps}`)).body.status, 'Connected');
    ids.offering = (await ok(api, '/v1/instance-offerings', { name: `${rid}-tiny`, cpuNum: 1, memorySize: 160 * MiB })).uuid;
    const addr = imageServer.address() as AddressInfo;
    ids.image = (await viaJob(api, '/v1/images', { name: `${rid}-guest`, url: `http://127.0.0.1:${addr.port}/tinyguest.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] })).uuid;
    ids.l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2`, zoneUuid: ids.zone, physicalInterface: nic, tags: [`bridgeName::${bridge}`] })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    ids.l3 = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3`, l2NetworkUuid: ids.l2, dnsDomain: 'multi.test' })).uuid;
    await ok(api, '/v1/ip-ranges', { l3NetworkUuid: ids.l3, startIp: `${net}.10`, endIp: `${net}.60`, netmask: '255.255.255.0', gateway: `${net}.1` });
  });

  it('VXLAN across the two hosts: a pool with the fabric as VTEP CIDR; each host tunnels its br_vx_<vni> to the other', async () => {
    const vni0 = randomInt(1_000_000, 16_000_000);
    const pool = await ok(api, '/v1/l2-networks', { name: `${rid}-vxpool`, zoneUuid: ids.zone, type: 'VxlanNetworkPool', vniStartInclusive: vni0, vniEndInclusive: vni0 + 4 });
    cleanup.add(async () => void (await api.del(`/v1/l2-networks/${pool.uuid}?cascade=true`)), 'VXLAN pool');
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: pool.uuid, vtepCidr: `${fab.net}.0/24` } });
    const vx = await ok(api, '/v1/l2-networks', { name: `${rid}-vx`, zoneUuid: ids.zone, type: 'VxlanNetwork', poolUuid: pool.uuid });
    cleanup.add(() => deleteLink(`vxlan${vx.vni}`), `vxlan${vx.vni}`);
    cleanup.add(() => deleteLink(`br_vx_${vx.vni}`), `br_vx_${vx.vni}`);
    // each host's tunnel device: its own fabric address, the other host's as flood peer
    for (const [n, run] of [[1, (c: string, a: string[]) => exec(c, a)], [2, (c: string, a: string[]) => nsExec(fab, 2, c, a)]] as const) {
      const dev = (await run('ip', ['-d', 'link', 'show', `vxlan${vx.vni}`])).stdout;
      assert.match(dev, new RegExp(`vxlan id ${vx.vni} local ${fab.ip(n).replace(/\./g, '\\.')}`), dev);
      assert.match((await run('bridge', ['fdb', 'show', 'dev', `vxlan${vx.vni}`])).stdout, new RegExp(`00:00:00:00:00:00 dst ${fab.ip(3 - n).replace(/\./g, '\\.')}`));
    }
    // one endpoint on each host's bridge (a namespace here, a veth end in host 2): they ping through the tunnel
    const sub = `172.31.${randomInt(1, 250)}`;
    const ns = `${rid}vx1`;
    await createNetns(ns, cleanup);
    await exec('ip', ['link', 'add', `${rid}vxa`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    cleanup.add(() => deleteLink(`${rid}vxa`), 'VXLAN endpoint veth');
    await exec('ip', ['link', 'set', `${rid}vxa`, 'master', vx.bridgeName, 'up']);
    await exec('ip', ['-n', ns, 'addr', 'add', `${sub}.1/24`, 'dev', 'eth0']);
    await exec('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await nsExec(fab, 2, 'ip', ['link', 'add', `${rid}vxb`, 'type', 'veth', 'peer', 'name', `${rid}vxc`]);
    await nsExec(fab, 2, 'ip', ['link', 'set', `${rid}vxb`, 'master', vx.bridgeName, 'up']);
    await nsExec(fab, 2, 'ip', ['addr', 'add', `${sub}.2/24`, 'dev', `${rid}vxc`]);
    await nsExec(fab, 2, 'ip', ['link', 'set', `${rid}vxc`, 'up']);
    const ping = await exec('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-W', '2', `${sub}.2`], { timeoutMs: 30_000 });
    assert.match(ping.stdout, / 0% packet loss/, ping.stdout);
    // our endpoints leave first: the kvmagent never deletes a bridge that still has foreign members
    await nsExec(fab, 2, 'ip', ['link', 'del', `${rid}vxb`]);
    await deleteLink(`${rid}vxa`);
    await ok(api, `/v1/l2-networks/${pool.uuid}?cascade=true`, undefined, 'del');
    assert.equal(await execOk('ip', ['link', 'show', `vxlan${vx.vni}`]), false, 'deleting the pool removes the tunnel device');
  });

  it('a VM on each host: both boot from the shared storage, get their IPs from their own host and ping each other', async () => {
    const mk = (name: string, hostUuid: string) =>
      ok(api, '/v1/vm-instances', { name, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], sshKey: key.pubKey, hostUuid });
    // one at a time: two TCG boots at once on a shared 2-core machine only slow both down
    vms.a = await mk(`${rid}-a`, ids.h1!);
    vms.b = await mk(`${rid}-b`, ids.h2!);
    assert.equal(vms.a.hostUuid, ids.h1);
    assert.equal(vms.b.hostUuid, ids.h2);
    assert.ok((await domains(uris.h2!)).includes(`tstack-${vms.b.uuid}`), 'VM b runs under host 2’s libvirtd');
    assert.ok(!(await domains(uris.h1!)).includes(`tstack-${vms.b.uuid}`), 'and not under this machine’s');
    for (const vm of [vms.a, vms.b]) {
      await waitForSerial(vm.serialLogPath, /TINYGUEST-READY/, 300_000);
      const line = await waitForSerial(vm.serialLogPath, /eth0 ip=/, 5_000);
      assert.ok(line.includes(`ip=${vm.vmNics[0].ip}`), `${vm.name} got its address from its host's DHCP: ${line}`);
      const out = await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'hostname', timeoutMs: 180_000 });
      assert.ok(out.trim().length > 0);
    }
    const ping = await sshRun({ host: vms.a.vmNics[0].ip, key: key.priv, cmd: `ping -c 3 -W 2 ${vms.b.vmNics[0].ip}` });
    assert.match(ping, / 0% packet loss/, ping);
  });

  it('a security group across the two hosts: remote-group rules filter traffic between VMs on different hosts, each host applying its own part', async () => {
    const sg = (body: unknown) => ok(api, `/v1/security-groups/${ids.sg}/actions`, body);
    // ping from VM a (this machine) to VM b (the namespaced host): b's ingress is filtered by host 2's firewall
    const pings = async (): Promise<boolean> =>
      / 0% packet loss/.test(await sshRun({ host: vms.a.vmNics[0].ip, key: key.priv, cmd: `ping -c 2 -W 1 ${vms.b.vmNics[0].ip} || true` }));
    const waitPing = async (want: boolean, why: string) => {
      const end = Date.now() + 60_000;
      for (;;) {
        if ((await pings()) === want) return;
        assert.ok(Date.now() < end, `ping a → b should ${want ? 'pass' : 'be dropped'}: ${why}`);
        await new Promise((r) => setTimeout(r, 1_000));
      }
    };
    const g = await ok(api, '/v1/security-groups', { name: `${rid}-sg` });
    ids.sg = g.uuid;
    const defaultIngress = g.rules.find((r: any) => r.type === 'Ingress' && r.remoteSecurityGroupUuid === g.uuid);
    assert.ok(defaultIngress, 'a new group has the default member-to-member ingress rule');
    // SSH from this test machine (outside the group) stays open so the test can drive VM a
    await sg({ addRules: { rules: [{ type: 'Ingress', protocol: 'TCP', startPort: 22, endPort: 22 }] } });
    await sg({ attachL3Network: { l3NetworkUuid: ids.l3 } });
    await sg({ addVmNics: { vmNicUuids: [vms.a.vmNics[0].uuid, vms.b.vmNics[0].uuid] } });
    await waitPing(true, 'members of one group reach each other through the default rule');
    await sg({ removeRules: { ruleUuids: [defaultIngress.uuid] } });
    await waitPing(false, 'without an ingress rule for ICMP, host 2 drops it');
    await sg({ addRules: { rules: [{ type: 'Ingress', protocol: 'ICMP', remoteSecurityGroupUuid: ids.sg }] } });
    await waitPing(true, 'an ICMP rule with the group as remote group admits VM a’s address on host 2');
    // leave no group behind for the migration tests: deleting it unguards both NICs
    await ok(api, `/v1/security-groups/${ids.sg}`, undefined, 'del');
    await waitPing(true, 'deleting the group restores open traffic');
    const out = await sshRun({ host: vms.b.vmNics[0].ip, key: key.priv, cmd: 'hostname' });
    assert.ok(out.trim().length > 0, 'VM b answers SSH again');
  });

  it('live-migrates a VM to the namespaced host and back through the API: same boot id, the SSH session survives', async () => {
    const vm = vms.a;
    const ip = vm.vmNics[0].ip;
    const bootId = (await sshRun({ host: ip, key: key.priv, cmd: 'cat /proc/sys/kernel/random/boot_id' })).trim();
    for (const [to, uri, from] of [['h2', uris.h2!, uris.h1!], ['h1', uris.h1!, uris.h2!]] as const) {
      // an SSH session open across the migration: it prints the boot id when it ends
      const session = sshRun({ host: ip, key: key.priv, cmd: 'sleep 12; cat /proc/sys/kernel/random/boot_id', timeoutMs: 60_000 });
      await new Promise((r) => setTimeout(r, 2_000));
      const started = Date.now();
      // host 2 first by name; the way back without hostUuid: the only other host
      const moved = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { migrate: to === 'h2' ? { hostUuid: ids.h2 } : {} });
      const ms = Date.now() - started;
      assert.equal(moved.state, 'Running');
      assert.equal(moved.hostUuid, ids[to], `the VM record says ${to}`);
      assert.ok((await domains(uri)).includes(`tstack-${vm.uuid}`), `the domain runs on ${to}`);
      assert.ok(!(await domains(from)).includes(`tstack-${vm.uuid}`), 'and no longer on the source');
      assert.equal((await session).trim(), bootId, 'the SSH session opened before the migration finished, in the same boot');
      assert.equal((await sshRun({ host: ip, key: key.priv, cmd: 'cat /proc/sys/kernel/random/boot_id' })).trim(), bootId);
      assert.equal((await c.store.claims(`host-capacity:${ids[to === 'h2' ? 'h1' : 'h2']}`)).some((x) => x.key === vm.uuid), false, 'the source reservation is released');
      assert.equal((await c.store.claims(`host-capacity:${ids[to]}`)).some((x) => x.key === vm.uuid), true, 'the destination holds it');
      console.log(`      migration to ${to} through the API: ${ms} ms`);
    }
    // reaches VM b on the other host after the moves
    const ping = await sshRun({ host: ip, key: key.priv, cmd: `ping -c 2 -W 2 ${vms.b.vmNics[0].ip}` });
    assert.match(ping, / 0% packet loss/);
  });

  it('refuses what cannot work with a 4xx: a stopped VM, the host it is on, an unknown host', async () => {
    const vm = vms.a;
    const same = await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { migrate: { hostUuid: ids.h1 } });
    assert.equal(same.status, 400, JSON.stringify(same.body));
    const unknown = await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { migrate: { hostUuid: '00000000-0000-4000-8000-000000000000' } });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    const disabled = await ok(api, `/v1/hosts/${ids.h2}/actions`, { changeState: { stateEvent: 'disable' } });
    assert.equal(disabled.state, 'Disabled');
    try {
      const r = await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { migrate: {} });
      assert.ok(r.status >= 400 && r.status < 500, JSON.stringify(r.body));
      assert.match(r.body.message, /Disabled/, 'the refusal names why the other host cannot take it');
    } finally {
      await ok(api, `/v1/hosts/${ids.h2}/actions`, { changeState: { stateEvent: 'enable' } });
    }
  });

  for (const step of ['prepare', 'migrate']) {
    it(`fault injected at the ${step} step: the VM runs on exactly one host and its record says which`, async () => {
      const vm = vms.b;
      process.env.TSTACK_FAULT_INJECT = `vm-migrate:${step}`;
      let r;
      try {
        r = await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { migrate: {} });
      } finally {
        delete process.env.TSTACK_FAULT_INJECT;
      }
      assert.equal(r.body.code, 'INJECTED_FAULT', JSON.stringify(r.body));
      const now = (await api.get(`/v1/vm-instances/${vm.uuid}`)).body;
      assert.equal(now.state, 'Running');
      // before the switch-over nothing moved; after it the record followed the domain
      const expected = step === 'prepare' ? 'h2' : 'h1';
      assert.equal(now.hostUuid, ids[expected]);
      const on1 = (await domains(uris.h1!)).includes(`tstack-${vm.uuid}`);
      const on2 = (await domains(uris.h2!)).includes(`tstack-${vm.uuid}`);
      assert.deepEqual([on1, on2], [expected === 'h1', expected === 'h2'], 'the domain runs on exactly that host');
      const other = ids[expected === 'h1' ? 'h2' : 'h1'];
      assert.equal((await c.store.claims(`host-capacity:${other}`)).some((x) => x.key === vm.uuid), false, 'no reservation left on the other host');
      await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'true', timeoutMs: 60_000 });
    });
  }

  it('maintenance empties a host (its VMs live-migrate away) and new VMs avoid it; enable takes it back', async () => {
    // after the fault tests both VMs are on host 1
    for (const vm of [vms.a, vms.b]) assert.equal((await api.get(`/v1/vm-instances/${vm.uuid}`)).body.hostUuid, ids.h1);
    const h = await ok(api, `/v1/hosts/${ids.h1}/actions`, { changeState: { stateEvent: 'maintain' } });
    assert.equal(h.state, 'Maintenance');
    for (const vm of [vms.a, vms.b]) {
      const now = (await api.get(`/v1/vm-instances/${vm.uuid}`)).body;
      assert.equal(now.state, 'Running');
      assert.equal(now.hostUuid, ids.h2, `${vm.name} moved to host 2`);
      assert.ok((await domains(uris.h2!)).includes(`tstack-${vm.uuid}`));
    }
    assert.deepEqual((await domains(uris.h1!)).filter((n) => n.includes(vms.a.uuid) || n.includes(vms.b.uuid)), []);
    await sshRun({ host: vms.a.vmNics[0].ip, key: key.priv, cmd: 'true' });
    const c1 = await ok(api, '/v1/vm-instances', { name: `${rid}-c`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], strategy: 'CreateStopped' });
    vms.c = c1;
    const placed = await ok(api, `/v1/vm-instances/${c1.uuid}/actions`, { start: {} });
    assert.equal(placed.hostUuid, ids.h2, 'a new VM avoids the host in maintenance');
    const pinned = await api.post(`/v1/vm-instances/${c1.uuid}/actions?wait=true`, { migrate: { hostUuid: ids.h1 } });
    assert.ok(pinned.status >= 400 && pinned.status < 500, JSON.stringify(pinned.body));
    assert.match(pinned.body.message, /Maintenance/);
    assert.equal((await ok(api, `/v1/hosts/${ids.h1}/actions`, { changeState: { stateEvent: 'enable' } })).state, 'Enabled');
  });

  it('anti-affinity (antiHard): the group spreads its VMs over the two hosts and refuses a third, naming the group; migration honours it', async () => {
    // a and b run on host 2 (maintenance moved them), c too
    const g = await ok(api, '/v1/affinity-groups', { name: `${rid}-web`, policy: 'antiHard' });
    await ok(api, `/v1/affinity-groups/${g.uuid}/actions`, { addVm: { vmUuid: vms.a.uuid } });
    const clash = await api.post(`/v1/affinity-groups/${g.uuid}/actions?wait=true`, { addVm: { vmUuid: vms.c.uuid } });
    assert.equal(clash.status, 409, 'c runs next to a: refused');
    await ok(api, `/v1/vm-instances/${vms.c.uuid}/actions`, { stop: { type: 'cold' } });
    await ok(api, `/v1/affinity-groups/${g.uuid}/actions`, { addVm: { vmUuid: vms.c.uuid } });
    const c2 = await ok(api, `/v1/vm-instances/${vms.c.uuid}/actions`, { start: {} });
    assert.equal(c2.hostUuid, ids.h1, 'c is placed away from a');
    const mig = await api.post(`/v1/vm-instances/${vms.c.uuid}/actions?wait=true`, { migrate: { hostUuid: ids.h2 } });
    assert.ok(mig.status >= 400 && mig.status < 500, JSON.stringify(mig.body));
    assert.match(mig.body.message, new RegExp(`affinity group ${rid}-web \\(antiHard\\)`));
    // a third VM of the group with both hosts taken
    await ok(api, `/v1/vm-instances/${vms.b.uuid}/actions`, { stop: { type: 'cold' } });
    await ok(api, `/v1/affinity-groups/${g.uuid}/actions`, { addVm: { vmUuid: vms.b.uuid } });
    const third = await api.post(`/v1/vm-instances/${vms.b.uuid}/actions?wait=true`, { start: {} });
    assert.ok(third.status >= 400 && third.status < 500, JSON.stringify(third.body));
    assert.match(third.body.message, new RegExp(`${rid}-host1 .*affinity group ${rid}-web`));
    assert.match(third.body.message, new RegExp(`${rid}-host2 .*affinity group ${rid}-web`));
    assert.equal((await api.get(`/v1/vm-instances/${vms.b.uuid}`)).body.state, 'Stopped');
    // the group disabled: it constrains nothing
    await ok(api, `/v1/affinity-groups/${g.uuid}/actions`, { changeState: { stateEvent: 'disable' } });
    assert.equal((await ok(api, `/v1/vm-instances/${vms.b.uuid}/actions`, { start: {} })).state, 'Running');
  });

  /**
   * Live migration of a running VM on local storage (global config
   * localStoragePrimaryStorage.liveMigrationWithStorage.allow): refused while it is false; then host 3 →
   * host 2 and back, the root disk copied each way — same boot id, an SSH session open across it, the
   * data written on host 1 still there, the source's copy freed. Used by the three-host case on VM d.
   */
  async function liveWithStorage(vm: any, ip: string, md5: string): Promise<void> {
    const t0 = Date.now();
    const cfg = (await api.get('/v1/global-configs?q=name=liveMigrationWithStorage.allow')).body.inventories[0];
    assert.equal(cfg?.value, 'false', 'off by default');
    const off = await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { migrate: { hostUuid: ids.h2 } });
    assert.equal(off.status, 409, JSON.stringify(off.body));
    assert.match(off.body.message, /liveMigrationWithStorage\.allow/);
    await ok(api, `/v1/global-configs/${cfg.uuid}/actions`, { updateGlobalConfig: { value: 'true' } });
    const root = vm.rootVolumeUuid as string;
    const rel = join('volumes', root, `${root}.qcow2`);
    const bootId = (await sshRun({ host: ip, key: key.priv, cmd: 'cat /proc/sys/kernel/random/boot_id' })).trim();
    try {
      for (const [to, from] of [['h2', 'h3'], ['h3', 'h2']] as const) {
        const session = sshRun({ host: ip, key: key.priv, cmd: 'sleep 10; cat /proc/sys/kernel/random/boot_id', timeoutMs: 120_000 });
        await new Promise((r) => setTimeout(r, 2_000));
        const t1 = Date.now();
        const moved = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { migrate: { hostUuid: ids[to] } });
        console.log(`      live migration with its disk, ${from} → ${to}: ${Date.now() - t1} ms`);
        assert.equal(moved.state, 'Running');
        assert.equal(moved.hostUuid, ids[to]);
        assert.equal((await api.get(`/v1/volumes/${root}`)).body.hostUuid, ids[to], 'the root volume’s record follows');
        assert.ok((await domains(uris[to]!)).includes(`tstack-${vm.uuid}`), `runs under ${to}’s libvirtd`);
        assert.ok(!(await domains(uris[from]!)).includes(`tstack-${vm.uuid}`), `gone from ${from}`);
        const n = (h: string) => Number(h.slice(1));
        assert.ok(existsSync(join(fab.privateDir(n(to), localDir), rel)), `the disk is on ${to}’s local disk`);
        assert.ok(!existsSync(join(fab.privateDir(n(from), localDir), rel)), `${from}’s copy is freed`);
        assert.equal((await session).trim(), bootId, 'the SSH session lived through the migration, in the same boot');
      }
      const got = (await sshRun({ host: ip, key: key.priv, cmd: 'dd if=/dev/vda bs=1M skip=40 count=1 iflag=direct 2>/dev/null | md5sum' })).split(/\s+/)[0];
      assert.equal(got, md5, 'the data is intact after two disk copies');
    } finally {
      await ok(api, `/v1/global-configs/${cfg.uuid}/actions`, { updateGlobalConfig: { value: 'false' } });
    }
    console.log(`      live migration with storage, both ways: ${Date.now() - t0} ms`);
  }

  it('three hosts: a third namespaced host added over SSH; a stopped VM on local storage cold-migrates to it (volume copied, source freed) and boots there with its data; with the global config on it live-migrates with its disk to host 2 and back (boot id, SSH session, data kept); maintenance of that host stops it', async () => {
    const t0 = Date.now();
    await nsHostUp(fab, 3, lateHosts);
    uris.h3 = `qemu+tcp://${fab.ip(3)}/system`;
    const h3 = await viaJob(api, '/v1/hosts', { name: `${rid}-host3`, clusterUuid: ids.cluster, managementIp: fab.ip(3), username: 'root', sshPrivateKey: ids.sshKey, virtType: 'qemu' });
    assert.equal(h3.status, 'Connected', JSON.stringify(h3));
    ids.h3 = h3.uuid;
    ids.local = (await ok(api, '/v1/primary-storage', { name: `${rid}-local`, zoneUuid: ids.zone, type: 'LocalStorage', url: localDir })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ids.local } });
    // created stopped on host 1's local disk; data written into its root volume beyond the image (at 40 MiB)
    vms.d = await ok(api, '/v1/vm-instances', { name: `${rid}-d`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], sshKey: key.pubKey, hostUuid: ids.h1, primaryStorageUuidForRootVolume: ids.local, rootDiskSize: 64 * MiB, strategy: 'CreateStopped' });
    const root = vms.d.rootVolumeUuid as string;
    const rel = join('volumes', root, `${root}.qcow2`);
    assert.ok(existsSync(join(localDir, rel)), 'the root volume is on host 1’s local disk');
    await exec('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 40M 1M', join(localDir, rel)]);
    const want = createHash('md5').update(Buffer.alloc(MiB, 0x5a)).digest('hex');
    const targets = (await api.get(`/v1/vm-instances/${vms.d.uuid}/migration-targets`)).body;
    assert.deepEqual(targets.inventories.map((h: any) => h.uuid).sort(), [ids.h2, ids.h3].sort(), 'both other hosts can take it');
    const t1 = Date.now();
    const moved = await ok(api, `/v1/vm-instances/${vms.d.uuid}/actions`, { migrate: { hostUuid: ids.h3 } });
    console.log(`      cold migration of a 64 MiB root volume to host 3: ${Date.now() - t1} ms`);
    assert.equal(moved.state, 'Stopped');
    assert.equal((await api.get(`/v1/volumes/${root}`)).body.hostUuid, ids.h3);
    assert.ok(existsSync(join(fab.privateDir(3, localDir), rel)), 'the copy is on host 3’s local disk');
    assert.ok(!existsSync(join(localDir, rel)), 'host 1’s copy is freed');
    const started = await ok(api, `/v1/vm-instances/${vms.d.uuid}/actions`, { start: {} });
    assert.equal(started.hostUuid, ids.h3, 'it starts where its disk is');
    assert.ok((await domains(uris.h3)).includes(`tstack-${vms.d.uuid}`), 'under host 3’s libvirtd');
    const ip = started.vmNics[0].ip;
    const got = (await sshRun({ host: ip, key: key.priv, cmd: 'dd if=/dev/vda bs=1M skip=40 count=1 2>/dev/null | md5sum', timeoutMs: 300_000 })).split(/\s+/)[0];
    assert.equal(got, want, 'the data written on host 1 reads back in the guest on host 3');
    console.log(`      third host added, cold migration, boot on host 3: ${Date.now() - t0} ms`);
    await liveWithStorage(vms.d, ip, want);
    // maintenance with local storage (the manual): the VM is stopped, not moved; new VMs avoid the host
    const m = await ok(api, `/v1/hosts/${ids.h3}/actions`, { changeState: { stateEvent: 'maintain' } });
    assert.equal(m.state, 'Maintenance');
    const d = (await api.get(`/v1/vm-instances/${vms.d.uuid}`)).body;
    assert.equal(d.state, 'Stopped');
    assert.ok(!(await domains(uris.h3)).includes(`tstack-${vms.d.uuid}`));
    // expunged here, where the test checks host 3's local disk
    await ok(api, `/v1/vm-instances/${vms.d.uuid}`, undefined, 'del');
    await ok(api, `/v1/vm-instances/${vms.d.uuid}/actions`, { expunge: {} });
    assert.ok(!existsSync(join(fab.privateDir(3, localDir), rel)), 'expunged from host 3’s local disk');
    delete vms.d;
    console.log(`      third host added, cold migration, boot on host 3, live migration with storage, maintenance: ${Date.now() - t0} ms`);
  });

  const vmNow = async (uuid: string): Promise<any> => (await api.get(`/v1/vm-instances/${uuid}`)).body;
  const waitFor = async (what: string, ms: number, fn: () => Promise<boolean>): Promise<number> => {
    const t0 = Date.now();
    while (!(await fn())) {
      assert.ok(Date.now() - t0 < ms, `timed out after ${ms} ms waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return Date.now() - t0;
  };

  it('three hosts for HA: host 3 (empty after its maintenance) enabled again, so a failed host’s VMs have two hosts to go to', async () => {
    assert.equal((await ok(api, `/v1/hosts/${ids.h3}/actions`, { changeState: { stateEvent: 'enable' } })).state, 'Enabled');
    assert.equal((await api.get(`/v1/hosts/${ids.h3}`)).body.status, 'Connected');
  });

  it('HA: host 2’s kvmagent killed alone (its VM still runs, its storage heartbeat beats): the NeverStop VM is not started twice', async () => {
    // VM b: on host 2 since its create; moved there if earlier tests left it elsewhere
    const vm = vms.b;
    if ((await vmNow(vm.uuid)).hostUuid !== ids.h2) await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { migrate: { hostUuid: ids.h2 } });
    assert.equal((await vmNow(vm.uuid)).hostUuid, ids.h2);
    assert.equal((await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { setHaLevel: { level: 'NeverStop' } })).haLevel, 'NeverStop');
    const runDir = fab.privateDir(2, layout.runDir);
    const pid = readFileSync(pidPath({ ...layout, runDir }, 'kvmagent'), 'utf8').trim();
    assert.match(pid, /^\d+$/);
    await nsExec(fab, 2, 'kill', ['-9', pid]);
    await waitFor('host 2 is Disconnected and VM b Unknown', 60_000, async () => (await vmNow(vm.uuid)).state === 'Unknown');
    // longer than the dead-after time (8 s) plus monitor rounds: a silent agent alone proves nothing
    await new Promise((r) => setTimeout(r, 16_000));
    const now = await vmNow(vm.uuid);
    assert.equal(now.state, 'Unknown');
    assert.equal(now.hostUuid, ids.h2);
    assert.match(String(now.haReason), /not proven dead: the storage heartbeat still beats/);
    assert.ok((await domains(uris.h2!)).includes(`tstack-${vm.uuid}`), 'still running on host 2');
    for (const h of ['h1', 'h3']) assert.ok(!(await domains(uris[h]!)).includes(`tstack-${vm.uuid}`), `and not started on ${h}`);
    // reconnecting re-deploys the agent: the VM is Running on host 2 again
    await viaJob(api, `/v1/hosts/${ids.h2}/actions`, { reconnect: {} });
    await waitFor('VM b is Running again on host 2', 60_000, async () => (await vmNow(vm.uuid)).state === 'Running');
    assert.equal((await vmNow(vm.uuid)).hostUuid, ids.h2);
  });

  it('HA: every process of host 2 killed (QEMUs included): the NeverStop VM restarts on one of the two other hosts and answers SSH', async () => {
    const vm = vms.b;
    const heartbeat = join(sharedDir, '.tstack-ha', `${ids.h2}.json`);
    assert.ok(existsSync(heartbeat), 'host 2 writes its storage heartbeat on the shared storage');
    const t0 = Date.now();
    await host2.down();
    const ms = await waitFor('VM b runs on host 1 or 3', 180_000, async () => {
      const v = await vmNow(vm.uuid);
      return v.state === 'Running' && (v.hostUuid === ids.h1 || v.hostUuid === ids.h3);
    });
    const now = await vmNow(vm.uuid);
    assert.ok(now.lastHaStartDate, 'lastHaStartDate');
    const on = now.hostUuid === ids.h1 ? 'h1' : 'h3';
    assert.ok((await domains(uris[on]!)).includes(`tstack-${vm.uuid}`), `its domain runs on ${on}`);
    assert.ok(!(await domains(uris[on === 'h1' ? 'h3' : 'h1']!)).includes(`tstack-${vm.uuid}`), 'and only there');
    const out = await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'cat /proc/sys/kernel/random/boot_id', timeoutMs: 240_000 });
    assert.ok(out.trim().length > 0);
    console.log(`      host 2 killed → VM b Running on ${on} after ${ms} ms; SSH back after ${Date.now() - t0} ms`);
  });
});
