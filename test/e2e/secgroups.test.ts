// Security groups end to end through the REST API with real guests: a controller with the
// reconcile queue (short period), this machine added as a host over its own sshd (agents
// deployed from this tree), a test bridge, a flat L3 (DHCP/DNS/metadata by the vrouteragent),
// three tiny VMs (qemu/TCG) booted once and reused by every test. Probes run from a "client"
// network namespace plugged into the bridge (its frames are bridged, so they cross the
// firewall) and from inside the guests over SSH from the host (the host's own traffic is not
// bridged and never filtered, so the test can always steer the guests).
import assert from 'node:assert/strict';
import { createReadStream, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { exec, execOk, execOut, startProcess } from '../../shared/exec.js';
import { useCleanup } from '../harness/cleanup.js';
import { expungeCloud, removeControllerKey } from '../harness/cloud-teardown.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { guestImage, makeSshKey, sshRun, waitForSerial } from '../harness/guest.js';
import { ensureLibvirt, virsh } from '../harness/libvirt.js';
import { createBridge, createNetns, deleteLink } from '../harness/net.js';
import { runId, tmpDir } from '../harness/tmp.js';
import { agentPid, alive, authorizedKey, builtTree, freePorts, killAgents, tempLayout, pkgCache } from '../integration/host/fixture.js';
import type { HostLayout } from '../../controller/host/render.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { secgroupModule } from '../../controller/secgroup/module.js';
import { Firewall } from '../../kvmagent/secgroup/firewall.js';

const MiB = 1024 * 1024;

/**
 * A call that must succeed. Long operations answer 202 + job; the job is polled rather than held
 * on one connection with ?wait=true (on a loaded machine a host deploy outlasts HTTP timeouts).
 */
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

/** Poll until probe() returns `want` (the hosts follow the API within seconds); returns the ms it took. */
async function until(what: string, probe: () => Promise<boolean>, want: boolean, timeoutMs = 30_000): Promise<number> {
  const t0 = Date.now();
  let got = !want;
  while (Date.now() - t0 < timeoutMs) {
    got = await probe();
    if (got === want) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(got, want, `${what}: still ${String(got)} after ${timeoutMs} ms`);
  return Date.now() - t0;
}

// the tracker's short test periods: a killed agent is Disconnected after 3 pings 2 s apart and
// re-deployed 2 s later (production: 10 s, 60 s); a ping still waits 5 s for a busy agent
const FAST_TRACKER = { pingIntervalMs: 2_000, pingTimeoutMs: 5_000, autoReconnectMs: 2_000 };

describe('e2e: security groups with real guests', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  const rid = runId();
  const bridge = `${rid}gbr`;
  const dummy = `${rid}gd0`;
  const clientNs = `${rid}gcl`;
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  const CLIENT = `${net}.253`;
  let c: TestController;
  let api: ApiClient;
  let key: { priv: string; pubKey: string };
  let imageServer: Server;
  const ids: Record<string, string> = {};
  const vms: Record<string, any> = {};
  const vmUuids: string[] = [];
  const ipOf = (vm: string): string => vms[vm].vmNics[0].ip;
  const nicOf = (vm: string): string => vms[vm].vmNics[0].uuid;
  const tapOf = (vm: string): string => `vn${nicOf(vm).replace(/-/g, '').slice(0, 11)}`;
  // probes from the client namespace (bridged: filtered)
  const clientPing = (vm: string): Promise<boolean> => execOk('ping', ['-c', '1', '-W', '1', ipOf(vm)], { netns: clientNs, timeoutMs: 10_000 });
  const clientSsh = async (vm: string): Promise<boolean> => {
    const r = await exec('socat', ['-T', '2', '-', `TCP:${ipOf(vm)}:22,connect-timeout=2`], { netns: clientNs, timeoutMs: 10_000, okCodes: [0, 1], quiet: true, stdin: '' }).catch(() => undefined);
    return /SSH-2\.0/.test(r?.stdout ?? '');
  };
  // probes from inside a guest (SSH from the host: never filtered)
  const inGuest = (vm: string, cmd: string): Promise<string> => sshRun({ host: ipOf(vm), key: key.priv, cmd, timeoutMs: 120_000 });
  const guestPing = async (vm: string, to: string): Promise<boolean> => (await inGuest(vm, `ping -c 1 -W 1 ${to} >/dev/null 2>&1 && echo YES || echo NO`)).includes('YES');
  const guestTcp = async (vm: string): Promise<boolean> => (await inGuest(vm, `echo | nc -w 2 ${CLIENT} 7000 2>/dev/null || true`)).includes('hello');
  const sg = (uuid: string, body: unknown) => ok(api, `/v1/security-groups/${uuid}/actions`, body);
  const timings: Record<string, number> = {};

  let hostLayout: HostLayout;
  before(async function () {
    await ensureLibvirt();
    const img = await guestImage();
    const tree = await builtTree();
    const sshKey = authorizedKey(cleanup, 'secgroups');
    const layout = await tempLayout(cleanup);
    hostLayout = layout;
    const ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    cleanup.add(async () => {
      for (const u of vmUuids) {
        await virsh(['destroy', `tstack-${u}`]).catch(() => undefined);
        await virsh(['undefine', `tstack-${u}`]).catch(() => undefined);
      }
    }, 'VM domains');
    // whatever happened, tstack's chains and sets leave this machine's tables
    cleanup.add(async () => void (await new Firewall().apply({ nics: [], sets: [] })), 'security-group chains');
    await createBridge(bridge, cleanup);
    await exec('ip', ['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    await exec('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', `${rid}gd1`]);
    cleanup.add(() => deleteLink(dummy), `veth ${dummy}`);
    // the client: a namespace on the bridge, greeting on TCP 7000 (egress probes from guests)
    await createNetns(clientNs, cleanup);
    await exec('ip', ['link', 'add', `${rid}gc0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', clientNs]);
    cleanup.add(() => deleteLink(`${rid}gc0`), 'client veth');
    await exec('ip', ['link', 'set', `${rid}gc0`, 'master', bridge, 'up']);
    await exec('ip', ['-n', clientNs, 'addr', 'add', `${CLIENT}/24`, 'dev', 'eth0']);
    await exec('ip', ['-n', clientNs, 'link', 'set', 'eth0', 'up']);
    await startProcess('socat', ['TCP-LISTEN:7000,fork,reuseaddr', 'SYSTEM:echo hello'], { netns: clientNs });
    const work = await tmpDir('secgroups', cleanup);
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
      modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, packageCacheDir: pkgCache(tree), listenHost: '127.0.0.1', ...FAST_TRACKER } }), secgroupModule()],
      reconcile: { periodMs: 3_000, baseBackoffMs: 500, maxBackoffMs: 3_000 },
    } as never);
    api = await c.login('admin', c.adminPassword);
    cleanup.add(() => removeControllerKey(c.dataDir), "controller key in root's authorized_keys");
    cleanup.add(() => expungeCloud(api), 'cloud resources');

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
    ids.l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2`, zoneUuid: ids.zone, physicalInterface: dummy, tags: [`bridgeName::${bridge}`] })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    ids.l3 = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3`, l2NetworkUuid: ids.l2 })).uuid;
    await ok(api, '/v1/ip-ranges', { l3NetworkUuid: ids.l3, startIp: `${net}.10`, endIp: `${net}.60`, netmask: '255.255.255.0', gateway: `${net}.1` });
    // the group, attached to the L3; vm1 and vm2 are created in it, vm3 outside
    ids.web = (await ok(api, '/v1/security-groups', { name: `${rid}-web` })).uuid;
    await sg(ids.web, { attachL3Network: { l3NetworkUuid: ids.l3 } });
    const mk = (name: string, extra: Record<string, unknown>) =>
      ok(api, '/v1/vm-instances', { name: `${rid}-${name}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], sshKey: key.pubKey, userData: `#!/bin/sh\necho USERDATA-${name}-RAN\n`, ...extra });
    const made = await Promise.all([mk('vm1', { securityGroupUuids: [ids.web] }), mk('vm2', { securityGroupUuids: [ids.web] }), mk('vm3', {})]);
    for (const [i, vm] of made.entries()) {
      vmUuids.push(vm.uuid);
      vms[`vm${i + 1}`] = vm;
    }
    for (const [name, vm] of Object.entries(vms)) {
      await waitForSerial(vm.serialLogPath, new RegExp(`USERDATA-${name}-RAN`), 600_000);
      await inGuest(name, 'true');
    }
  });

  after(() => {
    if (Object.keys(timings).length) process.stdout.write(`      security-group timings (API call → packets changed): ${JSON.stringify(timings)}\n`);
  });

  it('VMs created with securityGroupUuids are members; a guarded VM booted with DHCP and metadata (user-data ran, SSH key from metadata)', async () => {
    const g = (await api.get(`/v1/security-groups/${ids.web}`)).body;
    assert.deepEqual(g.vmNicUuids.sort(), [nicOf('vm1'), nicOf('vm2')].sort());
    const rules = await execOut('iptables', ['-w', '-S', `tsg-i-${tapOf('vm1')}`]);
    assert.match(rules, /-j DROP/);
  });

  it('ingress whitelist: ICMP and SSH from outside the group are dropped; an SSH rule opens SSH, an ICMP rule opens ping', async () => {
    assert.equal(await clientPing('vm1'), false);
    assert.equal(await clientSsh('vm1'), false);
    assert.equal(await clientPing('vm3'), true, 'a VM in no group is not filtered');
    const t0 = Date.now();
    const withSsh = await sg(ids.web, { addRules: { rules: [{ type: 'Ingress', protocol: 'TCP', startPort: 22, endPort: 22 }] } });
    await until('SSH opens', () => clientSsh('vm1'), true);
    timings.addRulesToSsh = Date.now() - t0;
    assert.equal(await clientPing('vm1'), false, 'ICMP still dropped');
    ids.sshRule = withSsh.rules.find((r: any) => r.startPort === 22).uuid;
    const t1 = Date.now();
    const withIcmp = await sg(ids.web, { addRules: { rules: [{ type: 'Ingress', protocol: 'ICMP' }] } });
    await until('ping opens', () => clientPing('vm1'), true);
    timings.addRulesToPing = Date.now() - t1;
    ids.icmpRule = withIcmp.rules.find((r: any) => r.protocol === 'ICMP').uuid;
  });

  it('stateful, default-open egress: a guarded VM reaches the client and gets the replies', async () => {
    assert.equal(await guestPing('vm1', CLIENT), true);
    assert.equal(await guestTcp('vm1'), true);
  });

  it('egress: one egress rule makes it a whitelist (members still reachable), removing it opens it again', async () => {
    const g = await sg(ids.web, { addRules: { rules: [{ type: 'Egress', protocol: 'TCP', startPort: 443, endPort: 443, allowedCidr: '192.0.2.0/24' }] } });
    const rule = g.rules.find((r: any) => r.startPort === 443).uuid;
    await until('egress closes', () => guestTcp('vm1'), false);
    assert.equal(await guestPing('vm1', CLIENT), false);
    assert.equal(await guestPing('vm1', ipOf('vm2')), true, 'the default rule: members reach members');
    await sg(ids.web, { removeRules: { ruleUuids: [rule] } });
    await until('egress opens', () => guestTcp('vm1'), true);
  });

  it('remote group: members reach each other, a non-member not; joining and leaving changes that', async () => {
    await sg(ids.web, { removeRules: { ruleUuids: [ids.icmpRule] } });
    await until('ping closed to outsiders', () => clientPing('vm1'), false);
    assert.equal(await guestPing('vm2', ipOf('vm1')), true, 'member → member');
    assert.equal(await guestPing('vm3', ipOf('vm1')), false, 'non-member → member');
    const t0 = Date.now();
    await sg(ids.web, { addVmNics: { vmNicUuids: [nicOf('vm3')] } });
    await until('vm3 joins', () => guestPing('vm3', ipOf('vm1')), true);
    timings.addVmNicsToPing = Date.now() - t0;
    await sg(ids.web, { removeVmNics: { vmNicUuids: [nicOf('vm3')] } });
    await until('vm3 left', () => guestPing('vm3', ipOf('vm1')), false);
  });

  it('a guarded VM rebooting still gets its DHCP lease and its metadata', async () => {
    const serial = (): string => readFileSync(vms.vm1.serialLogPath, 'utf8');
    const before = (serial().match(/USERDATA-vm1-RAN/g) ?? []).length;
    const r = await api.post(`/v1/vm-instances/${vms.vm1.uuid}/actions`, { reboot: {} });
    assert.ok(r.status === 202 || r.status === 200, JSON.stringify(r.body));
    const deadline = Date.now() + 600_000;
    while (Date.now() < deadline && (serial().match(/USERDATA-vm1-RAN/g) ?? []).length <= before) await new Promise((r) => setTimeout(r, 500));
    assert.ok((serial().match(/USERDATA-vm1-RAN/g) ?? []).length > before, 'user-data ran again (metadata reached)');
    const ipLines = serial().match(/eth0 ip=\S+/g) ?? [];
    assert.equal(ipLines.at(-1), `eth0 ip=${ipOf('vm1')}`, 'DHCP gave it its address again');
    assert.match(serial(), /datasource=ec2:169\.254\.169\.254/);
    await inGuest('vm1', 'true');
  });

  it("drift: tstack's chains flushed by hand are restored by the next reconcile pass", async () => {
    assert.equal(await clientPing('vm1'), false);
    await exec('iptables', ['-w', '-F', `tsg-i-${tapOf('vm1')}`]);
    await exec('iptables', ['-w', '-F', 'tstack-sg']);
    assert.equal(await clientPing('vm1'), true, 'flushed: unfiltered');
    timings.driftRepaired = await until('the periodic pass restores the rules', () => clientPing('vm1'), false, 30_000);
    const st = c.reconcile.status().find((s) => s.area === 'secgroup' && s.key === ids.host);
    assert.ok(st?.lastAppliedAt, JSON.stringify(st));
  });

  it('agent killed, chains flushed while it is down: once the agent is back, the reconcile pass restores the rules', async () => {
    const pid = agentPid(hostLayout, 'kvmagent');
    assert.ok(pid !== undefined && alive(pid), 'the deployed kvmagent runs');
    process.kill(pid, 'SIGKILL');
    await exec('iptables', ['-w', '-F', `tsg-i-${tapOf('vm1')}`]);
    await exec('iptables', ['-w', '-F', 'tstack-sg']);
    assert.equal(await clientPing('vm1'), true, 'flushed: unfiltered');
    // the host tracker notices the dead agent and restarts it over SSH; the next pass re-applies
    await until('a new kvmagent runs', async () => { const p = agentPid(hostLayout, 'kvmagent'); return p !== undefined && p !== pid && alive(p); }, true, 240_000);
    timings.agentRestartRepaired = await until('the rules are back', () => clientPing('vm1'), false, 120_000);
  });

  it('bad rules are refused (400 naming the field) and change nothing', async () => {
    const before = (await api.get(`/v1/security-groups/${ids.web}`)).body.rules.length;
    for (const [rule, field] of [
      [{ type: 'Ingress', protocol: 'TCP', startPort: 70000, endPort: 70000 }, 'addRules.rules.0.startPort'],
      [{ type: 'Ingress', protocol: 'TCP', startPort: 23, endPort: 22 }, 'addRules.rules.0.endPort'],
      [{ type: 'Ingress', protocol: 'ALL', allowedCidr: '10.0.0.0/33' }, 'addRules.rules.0.allowedCidr'],
      [{ type: 'Ingress', protocol: 'ICMP', startPort: 22, endPort: 22 }, 'addRules.rules.0.startPort'],
    ] as const) {
      const r = await api.post(`/v1/security-groups/${ids.web}/actions`, { addRules: { rules: [rule] } });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.details?.field ?? r.body.field, field);
    }
    const nic = await api.post(`/v1/security-groups/${ids.web}/actions`, { addVmNics: { vmNicUuids: ['12345678-0000-4000-8000-000000000000'] } });
    assert.equal(nic.status, 400);
    assert.equal((await api.get(`/v1/security-groups/${ids.web}`)).body.rules.length, before);
  });

  it('leaving the group restores traffic', async () => {
    await sg(ids.web, { removeVmNics: { vmNicUuids: [nicOf('vm1')] } });
    await until('vm1 unfiltered', () => clientPing('vm1'), true);
    assert.equal(await execOk('iptables', ['-w', '-S', `tsg-i-${tapOf('vm1')}`], { quiet: true }), false, "vm1's chains are gone");
  });

  it('deleting a group with members releases them; the last group gone leaves no chain, hook or set', async () => {
    assert.equal(await clientPing('vm2'), false);
    await ok(api, `/v1/security-groups/${ids.web}`, undefined, 'del');
    await until('vm2 unfiltered', () => clientPing('vm2'), true);
    await until('nothing of tstack left', async () => !/tstack-sg|tsg-/.test(await execOut('iptables-save', ['-t', 'filter'])), true, 15_000);
    assert.doesNotMatch(await execOut('ipset', ['list', '-n']), /^tsg/m);
  });
});
