// vrouteragent, flat networks, checked with namespaces standing in for VMs (busybox udhcpc,
// curl, nslookup): exact DHCP answers, static-only service, DNS, per-VM metadata, two "hosts"
// on one bridge answering only for their own VMs, SIGKILL + restart with leases renewing, and
// typed errors with nothing applied. Real dnsmasq, real namespaces, real agent processes.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../../shared/errors.js';
import { startProcess } from '../../../shared/exec.js';
import { vrouter } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { until } from '../../harness/assert.js';
import { createBridge, createNetns, createVeth, moveToNetns, netnsExists } from '../../harness/net.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { exec } from '../../../shared/exec.js';
import { flatNames } from '../../../vrouteragent/names.js';
import { digestOf } from '../../../shared/dns-set.js';
import { client, curl, dhcpOnce, fakeVm, leaseEvents, nslookup, pidAlive, restartHost, startHost, writeUdhcpcScript, type Host, type Vm } from './helpers.js';

const L3 = randomUUID();
const NET = (h: 'a' | 'b', bridge: string) => ({
  l3NetworkUuid: L3,
  bridge,
  cidr: '10.77.0.0/24',
  dhcpServerIp: h === 'a' ? '10.77.0.2' : '10.77.0.3',
  gateway: '10.77.0.1',
  ipRanges: [{ startIp: '10.77.0.10', endIp: '10.77.0.200' }],
  dnsDomain: 'flat.test',
  mtu: 1400,
  leaseTimeSec: 600,
});
const MAC1 = '52:54:00:77:00:11';
const MAC2 = '52:54:00:77:00:12';
const MAC3 = '52:54:00:77:00:13';
const MAC4 = '52:54:00:77:00:14';
const NO_DNS = { records: [], forwarders: [] };
// flat/apply's form: each NIC once (its DHCP entry, DNS name and metadata record)
const NIC1 = { mac: MAC1, ip: '10.77.0.11', vmUuid: randomUUID(), hostname: 'vm-one', userData: 'secret-of-vm1\n', sshKeys: ['ssh-ed25519 AAAAone one@test'] };
const nic = (mac: string, ip: string, hostname: string, named = true) => ({ mac, ip, vmUuid: randomUUID(), hostname, ...(named ? {} : { named: false }) });

async function expectInvalid(p: Promise<unknown>, field: string): Promise<TStackError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TStackError, String(e));
    assert.equal(e.code, 'INVALID_ARGUMENT', e.message);
    assert.equal(e.details?.field, field, e.message);
    return e;
  }
  assert.fail(`expected INVALID_ARGUMENT on ${field}`);
}

const leaseFileOf = (h: Host): string => join(h.agent.dataDir, 'vrouter/flat', L3.replace(/-/g, ''), 'leases');

describe('vrouteragent flat network (namespaces as VMs)', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let dir: string;
  let script: string;
  let bridge: string;
  let A: Host;
  let B: Host;
  let vm1: Vm;
  let vm2: Vm;
  let vm3: Vm;
  const leaseFile = (): string => leaseFileOf(A);

  before(async () => {
    dir = await tmpDir('vrouter', cleanup);
    script = writeUdhcpcScript(dir);
    bridge = await createBridge(`${runId()}vbr`, cleanup);
    A = await startHost('a', cleanup, [L3]);
    B = await startHost('b', cleanup, [L3]);
    vm1 = await fakeVm('v1', bridge, MAC1, cleanup);
    vm2 = await fakeVm('v2', bridge, MAC2, cleanup);
    vm3 = await fakeVm('v3', bridge, MAC3, cleanup);
  });

  it('namespace/ensure is idempotent: netns, veth in the bridge, DHCP server address, dnsmasq', async () => {
    const r1 = await client.call(vrouter.NamespaceEnsure, A.ep, { network: NET('a', bridge) });
    assert.equal(r1.changed, true);
    const n = flatNames(L3, A.scheme);
    assert.equal(r1.namespace.namespace, n.namespace);
    assert.ok(r1.namespace.hostVeth.length <= 15 && r1.namespace.nsVeth.length <= 15);
    assert.ok(await netnsExists(n.namespace));
    assert.equal(readFileSync(`/sys/class/net/${n.hostVeth}/master/uevent`, 'utf8').match(/INTERFACE=(\S+)/)?.[1], bridge);
    const addr = await exec('ip', ['-n', n.namespace, '-br', 'addr', 'show', 'dev', n.nsVeth]);
    assert.match(addr.stdout, /10\.77\.0\.2\/24/);
    const r2 = await client.call(vrouter.NamespaceEnsure, A.ep, { network: NET('a', bridge) });
    assert.equal(r2.changed, false, 'a second ensure changes nothing');
    assert.equal(r2.namespace.dnsmasqPid, r1.namespace.dnsmasqPid, 'dnsmasq was not restarted');
    await client.call(vrouter.NamespaceEnsure, B.ep, { network: NET('b', bridge) });
  });

  it('DHCP: exactly the assigned IP, hostname, gateway, DNS, domain, MTU, lease and the metadata route', async () => {
    await client.call(vrouter.DhcpApply, A.ep, { l3NetworkUuid: L3, entries: [{ mac: MAC1, ip: '10.77.0.11', hostname: 'vm-one' }] });
    const l = await dhcpOnce(vm1, script, dir);
    assert.ok(l, 'vm1 got a lease');
    assert.equal(l.ip, '10.77.0.11');
    assert.equal(l.mask, '24');
    assert.equal(l.router, '10.77.0.1');
    assert.equal(l.dns, '10.77.0.2');
    assert.equal(l.domain, 'flat.test');
    assert.equal(l.hostname, 'vm-one');
    assert.equal(l.mtu, '1400');
    assert.equal(l.lease, '600');
    assert.equal(l.serverid, '10.77.0.2');
    assert.equal(l.staticroutes, '169.254.169.254/32 10.77.0.2 0.0.0.0/0 10.77.0.1');
  });

  it('static only: a MAC without an entry gets no answer', async () => {
    assert.equal(await dhcpOnce(vm3, script, dir, 2), undefined);
  });

  it('two hosts on one bridge each answer only for their own VMs (DHCP and metadata)', async () => {
    await client.call(vrouter.DhcpApply, B.ep, { l3NetworkUuid: L3, entries: [{ mac: MAC2, ip: '10.77.0.12', hostname: 'vm-two' }] });
    const l2 = await dhcpOnce(vm2, script, dir);
    assert.ok(l2, 'vm2 got a lease');
    assert.equal(l2.ip, '10.77.0.12');
    assert.equal(l2.serverid, '10.77.0.3', 'vm2 is served by host B');
    assert.equal(l2.staticroutes, '169.254.169.254/32 10.77.0.3 0.0.0.0/0 10.77.0.1');
    const l1 = await dhcpOnce(vm1, script, dir);
    assert.equal(l1?.serverid, '10.77.0.2', 'vm1 is served by host A');
    // neither dnsmasq answered for the other's VM
    const logA = readFileSync(join(A.agent.dataDir, 'vrouter/flat', L3.replace(/-/g, ''), 'dnsmasq.log'), 'utf8');
    const logB = readFileSync(join(B.agent.dataDir, 'vrouter/flat', L3.replace(/-/g, ''), 'dnsmasq.log'), 'utf8');
    assert.doesNotMatch(logA, new RegExp(`DHCP(OFFER|ACK)\\S* 10\\.77\\.0\\.12`));
    assert.doesNotMatch(logB, new RegExp(`DHCP(OFFER|ACK)\\S* 10\\.77\\.0\\.11`));
    assert.match(logA, /DHCPACK\S* 10\.77\.0\.11 52:54:00:77:00:11 vm-one/);
    assert.match(logB, /DHCPACK\S* 10\.77\.0\.12 52:54:00:77:00:12 vm-two/);

    await client.call(vrouter.MetadataApply, A.ep, {
      l3NetworkUuid: L3,
      records: [{ ip: '10.77.0.11', instanceId: 'i-one', hostname: 'vm-one', userData: 'secret-of-vm1\n', sshKeys: ['ssh-ed25519 AAAAone one@test'] }],
    });
    await client.call(vrouter.MetadataApply, B.ep, {
      l3NetworkUuid: L3,
      records: [{ ip: '10.77.0.12', instanceId: 'i-two', hostname: 'vm-two', userData: 'secret-of-vm2\n' }],
    });
    assert.deepEqual(await curl(vm1, 'http://169.254.169.254/latest/user-data'), { status: 200, body: 'secret-of-vm1\n' });
    assert.deepEqual(await curl(vm2, 'http://169.254.169.254/latest/user-data'), { status: 200, body: 'secret-of-vm2\n' });
    assert.equal((await curl(vm1, 'http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key')).body, 'ssh-ed25519 AAAAone one@test\n');
    assert.equal((await curl(vm2, 'http://169.254.169.254/latest/meta-data/local-hostname')).body, 'vm-two');
    const os = JSON.parse((await curl(vm1, 'http://169.254.169.254/openstack/latest/meta_data.json')).body) as { uuid: string; hostname: string };
    assert.deepEqual([os.uuid, os.hostname], ['i-one', 'vm-one']);
    assert.equal((await curl(vm1, 'http://169.254.169.254/openstack/latest/user_data')).body, 'secret-of-vm1\n');
  });

  it("a VM cannot read another VM's user-data, not even through the other host's namespace", async () => {
    // vm2 asks host A directly (its own host B has no record for vm1 either way)
    await exec('ip', ['-n', vm2.ns, 'route', 'replace', '169.254.169.254/32', 'via', '10.77.0.2']);
    const r = await curl(vm2, 'http://169.254.169.254/latest/user-data');
    assert.equal(r.status, 404);
    assert.doesNotMatch(r.body, /secret-of-vm1/);
    await exec('ip', ['-n', vm2.ns, 'route', 'replace', '169.254.169.254/32', 'via', '10.77.0.3']);
    // an address with no record (vm3, statically configured) gets nothing either
    await exec('ip', ['-n', vm3.ns, 'addr', 'add', '10.77.0.13/24', 'dev', vm3.ifname]);
    await exec('ip', ['-n', vm3.ns, 'route', 'add', '169.254.169.254/32', 'via', '10.77.0.2']);
    const r3 = await curl(vm3, 'http://169.254.169.254/openstack/latest/user_data');
    assert.equal(r3.status, 404);
    await exec('ip', ['-n', vm3.ns, 'addr', 'flush', 'dev', vm3.ifname]);
  });

  it('DNS: names of the L3 resolvable (records + DHCP hostnames), other names forwarded upstream', async () => {
    // an "upstream" resolver on the same L2
    const up = await createNetns(`${runId()}up`, cleanup);
    const [uh, upeer] = await createVeth(`${runId()}uph`, `${runId()}upp`, cleanup);
    await exec('ip', ['link', 'set', uh, 'master', bridge, 'up']);
    await moveToNetns(upeer, up);
    await exec('ip', ['-n', up, 'addr', 'add', '10.77.0.250/24', 'dev', upeer]);
    const upstream = await startProcess('dnsmasq', ['-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--interface=${upeer}`, '--bind-interfaces', '--address=/upstream.test/203.0.113.7', `--pid-file=${dir}/up.pid`], { netns: up });
    cleanup.add(() => upstream.stop(), 'upstream dnsmasq');
    await client.call(vrouter.DnsApply, A.ep, { l3NetworkUuid: L3, records: [{ name: 'vm-two', ip: '10.77.0.12' }, { name: 'db', ip: '10.77.0.40' }], forwarders: ['10.77.0.250'] });
    assert.equal(await nslookup(vm1, 'vm-two.flat.test', '10.77.0.2'), '10.77.0.12');
    assert.equal(await nslookup(vm1, 'db', '10.77.0.2'), '10.77.0.40');
    assert.equal(await nslookup(vm1, 'vm-one.flat.test', '10.77.0.2'), '10.77.0.11', 'a DHCP hostname of this host');
    let fwd: string | undefined;
    for (let i = 0; i < 20 && !fwd; i++) {
      fwd = await nslookup(vm1, 'www.upstream.test', '10.77.0.2');
      if (!fwd) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(fwd, '203.0.113.7', 'forwarded to the upstream resolver');
    await client.call(vrouter.DnsApply, A.ep, { l3NetworkUuid: L3, records: [{ name: 'vm-two', ip: '10.77.0.12' }, { name: 'db', ip: '10.77.0.41' }], forwarders: ['10.77.0.250'] });
    assert.equal(await nslookup(vm1, 'db.flat.test', '10.77.0.2'), '10.77.0.41', 'record replaced by name');
    await client.call(vrouter.DnsApply, A.ep, { l3NetworkUuid: L3, records: [{ name: 'vm-two', ip: '10.77.0.12' }], forwarders: ['10.77.0.250'] });
    assert.equal(await nslookup(vm1, 'db.flat.test', '10.77.0.2'), undefined, 'record removed');
    await client.call(vrouter.DnsApply, A.ep, { l3NetworkUuid: L3, records: [], forwarders: [] });
    assert.equal(await nslookup(vm1, 'vm-two.flat.test', '10.77.0.2'), undefined, 'records replaced');
  });

  it('flat/apply: the whole state at once; an added entry reloads with SIGHUP (same dnsmasq, other leases kept)', async () => {
    const pid = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!.namespace.dnsmasqPid!;
    const NIC3 = nic(MAC3, '10.77.0.13', 'vm-three');
    const r = await client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1, NIC3], dns: NO_DNS });
    assert.equal(r.changed, true);
    assert.equal(r.releasedLeases, 0);
    assert.equal(r.namespace.dnsmasqPid, pid, 'no dnsmasq restart for a new entry');
    const l3 = await dhcpOnce(vm3, script, dir);
    assert.equal(l3?.ip, '10.77.0.13');
    const leases = readFileSync(leaseFile(), 'utf8');
    assert.match(leases, /10\.77\.0\.11/, "vm1's lease survived the reload");
    assert.match(leases, /52:54:00:77:00:13 10\.77\.0\.13/);
    const again = await client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1, NIC3], dns: NO_DNS });
    assert.equal(again.changed, false, 'the same state again changes nothing');
  });

  it('flat/apply: an address reused by a new MAC is answered (the old lease is dropped)', async () => {
    // vm3's address goes to a new VM (vm3 with a new MAC): without dropping MAC3's lease dnsmasq
    // would refuse ("not using configured address … because it is leased to …")
    const r = await client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1, nic(MAC4, '10.77.0.13', 'vm-four')], dns: NO_DNS });
    assert.equal(r.releasedLeases, 1);
    await exec('ip', ['-n', vm3.ns, 'link', 'set', 'dev', vm3.ifname, 'address', MAC4]);
    const l = await dhcpOnce(vm3, script, dir);
    assert.equal(l?.ip, '10.77.0.13', 'the reused address is handed to the new MAC');
    const leases = readFileSync(leaseFile(), 'utf8');
    assert.doesNotMatch(leases, /52:54:00:77:00:13/);
    assert.match(leases, /52:54:00:77:00:11 10\.77\.0\.11/, "vm1's lease kept");
    await exec('ip', ['-n', vm3.ns, 'link', 'set', 'dev', vm3.ifname, 'address', MAC3]);
    await client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1], dns: NO_DNS });
    assert.equal(await dhcpOnce(vm3, script, dir, 2), undefined, 'removed entry no longer answered');
    assert.equal((await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!.dhcpEntries, 1);
  });

  it('flat/apply repairs drift: a deleted lease file, a deleted namespace', async () => {
    const want = { network: NET('a', bridge), nics: [NIC1], dns: NO_DNS };
    const pid0 = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!.namespace.dnsmasqPid!;
    rmSync(leaseFile());
    const r1 = await client.call(vrouter.FlatApply, A.ep, want);
    assert.ok(existsSync(leaseFile()), 'the lease file is back');
    assert.notEqual(r1.namespace.dnsmasqPid, pid0, 'dnsmasq restarted onto a new lease file');
    assert.equal((await dhcpOnce(vm1, script, dir))?.ip, '10.77.0.11');

    const n = flatNames(L3, A.scheme);
    await exec('ip', ['netns', 'del', n.namespace]);
    assert.equal(await netnsExists(n.namespace), false);
    const r2 = await client.call(vrouter.FlatApply, A.ep, want);
    // not r2.changed: this agent's watchdog (1 s) may have repaired it first on a busy machine
    assert.ok(await netnsExists(n.namespace), 'namespace recreated');
    assert.ok(r2.namespace.dnsmasqPid !== undefined && pidAlive(r2.namespace.dnsmasqPid));
    assert.equal((await dhcpOnce(vm1, script, dir))?.ip, '10.77.0.11');
    assert.equal((await curl(vm1, 'http://169.254.169.254/latest/user-data')).body, 'secret-of-vm1\n', 'metadata served again');

    // killed between two applies that change the state (no drift check: the apply takes the
    // dnsmasq it checked last by its pid and start time): the next apply finds it gone, starts another
    const pid2 = r2.namespace.dnsmasqPid!;
    process.kill(pid2, 'SIGKILL');
    // a signal is delivered asynchronously: on a busy machine the process may still run (not even
    // a zombie yet) for a moment after kill() returned; "between two applies" means it is gone
    await until('dnsmasq is gone after SIGKILL', () => !pidAlive(pid2), 5_000, 10);
    const r3 = await client.call(vrouter.FlatApply, A.ep, { ...want, nics: [{ ...NIC1, hostname: 'vm-one-renamed' }] });
    assert.ok(r3.namespace.dnsmasqPid !== undefined && r3.namespace.dnsmasqPid !== pid2 && pidAlive(r3.namespace.dnsmasqPid), 'a new dnsmasq runs');
    assert.equal((await dhcpOnce(vm1, script, dir))?.ip, '10.77.0.11');
    await client.call(vrouter.FlatApply, A.ep, want);
  });

  it('agent SIGKILLed and restarted: dnsmasq keeps serving, leases renew, the agent re-adopts it', async () => {
    const before = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!;
    const pid = before.namespace.dnsmasqPid!;
    // a long-running DHCP client in vm1 (like the guest's udhcpc -b)
    const udhcpc = await startProcess('busybox', ['udhcpc', '-f', '-i', vm1.ifname, '-s', script, '-t', '4', '-T', '1'], { netns: vm1.ns, env: { LEASE_DIR: dir } });
    cleanup.add(() => udhcpc.stop(), 'udhcpc vm1');
    const waitEvents = async (n: number): Promise<void> => {
      for (let i = 0; i < 80 && leaseEvents(dir, vm1).length < n; i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(leaseEvents(dir, vm1).length >= n, `vm1 saw ${n} lease events`);
    };
    const n0 = leaseEvents(dir, vm1).length;
    await waitEvents(n0 + 1);

    await A.agent.kill9();
    assert.ok(pidAlive(pid), 'dnsmasq survived the agent');
    udhcpc.kill('SIGUSR1'); // renew now, while the agent is down
    await waitEvents(n0 + 2);
    const renewed = leaseEvents(dir, vm1).at(-1)!;
    assert.equal(renewed.event, 'renew');
    assert.equal(renewed.ip, '10.77.0.11');

    await restartHost(A, cleanup);
    const after = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!;
    assert.equal(after.namespace.dnsmasqPid, pid, 're-adopted, not restarted');
    assert.equal(after.dhcpEntries, 1);
    assert.equal(after.metadataListening, true);
    assert.equal((await curl(vm1, 'http://169.254.169.254/latest/user-data')).body, 'secret-of-vm1\n', 'metadata back after restart');
    udhcpc.kill('SIGUSR1');
    await waitEvents(n0 + 3);
    assert.equal(leaseEvents(dir, vm1).at(-1)!.ip, '10.77.0.11');
    // the adopted dnsmasq still takes reloads
    await client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1, nic(MAC3, '10.77.0.13', 'vm-three', false)], dns: NO_DNS });
    assert.equal((await dhcpOnce(vm3, script, dir))?.ip, '10.77.0.13');
    await udhcpc.stop();
  });

  it('flat/apply: DNS records as a delta on the set held, served at once; a base not held is DNS_BASE_MISMATCH, nothing changed; the set survives a restart', async () => {
    // the NICs the case before left (the cases after count them)
    const nics = [NIC1, nic(MAC3, '10.77.0.13', 'vm-three', false)];
    const want = (dns: Record<string, unknown>): any => ({ network: NET('a', bridge), nics, dns: { forwarders: [], ...dns } });
    const base = [
      { name: 'db', ip: '10.77.0.40' },
      { name: 'cache', ip: '10.77.0.41' },
    ];
    const r0 = await client.call(vrouter.FlatApply, A.ep, want({ records: base }));
    assert.equal(r0.dnsDigest, digestOf(base));
    const next = [
      { name: 'db', ip: '10.77.0.42' },
      { name: 'web', ip: '10.77.0.43' },
    ];
    const delta = { base: digestOf(base), digest: digestOf(next), remove: base, add: next };
    const r1 = await client.call(vrouter.FlatApply, A.ep, want({ delta }));
    assert.equal(r1.dnsDigest, digestOf(next));
    assert.equal(await nslookup(vm1, 'db.flat.test', '10.77.0.2'), '10.77.0.42');
    assert.equal(await nslookup(vm1, 'web.flat.test', '10.77.0.2'), '10.77.0.43');
    assert.equal(await nslookup(vm1, 'cache.flat.test', '10.77.0.2'), undefined, 'removed');
    // the same delta again: its base is no longer what the agent holds
    assert.equal(((await client.call(vrouter.FlatApply, A.ep, want({ delta })).catch((e: TStackError) => e)) as TStackError).code, 'DNS_BASE_MISMATCH');
    // a hostile name in a delta is refused like one in whole records (dnsmasq file injection)
    const bad = await client.call(vrouter.FlatApply, A.ep, want({ delta: { base: digestOf(next), digest: digestOf(next), remove: [], add: [{ name: 'x\n10.0.0.1 evil', ip: '10.77.0.44' }] } })).catch((e: TStackError) => e);
    assert.equal((bad as TStackError).code, 'INVALID_ARGUMENT');
    assert.equal(await nslookup(vm1, 'web.flat.test', '10.77.0.2'), '10.77.0.43', 'nothing changed');
    // restarted, the agent holds the set again (desired.json, written 20 ms after the answer): a delta on it applies
    await new Promise((r) => setTimeout(r, 200));
    await A.agent.kill9();
    await restartHost(A, cleanup);
    const last = [{ name: 'web', ip: '10.77.0.43' }];
    const r2 = await client.call(vrouter.FlatApply, A.ep, want({ delta: { base: digestOf(next), digest: digestOf(last), remove: [next[0]], add: [] } }));
    assert.equal(r2.dnsDigest, digestOf(last));
    assert.equal(await nslookup(vm1, 'db.flat.test', '10.77.0.2'), undefined);
    assert.equal(await nslookup(vm1, 'web.flat.test', '10.77.0.2'), '10.77.0.43');
    await client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics, dns: NO_DNS });
  });

  it('watchdog: a dnsmasq that dies is restarted and serves the same entries', async () => {
    const pid = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!.namespace.dnsmasqPid!;
    process.kill(pid, 'SIGKILL');
    let now: number | undefined;
    for (let i = 0; i < 50; i++) {
      now = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!.namespace.dnsmasqPid;
      if (now !== undefined && now !== pid) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(now !== undefined && now !== pid, 'a new dnsmasq runs');
    assert.equal((await dhcpOnce(vm1, script, dir))?.ip, '10.77.0.11');
  });

  it('bad input → typed INVALID_ARGUMENT naming the field, nothing applied', async () => {
    const other = randomUUID();
    const n = flatNames(other, A.scheme);
    await expectInvalid(
      client.call(vrouter.NamespaceEnsure, A.ep, { network: { ...NET('a', bridge), l3NetworkUuid: other, ipRanges: [{ startIp: '10.77.0.10', endIp: '10.77.0.50' }, { startIp: '10.77.0.50', endIp: '10.77.0.60' }] } }),
      'network.ipRanges.1',
    );
    assert.equal(await netnsExists(n.namespace), false, 'no namespace created');
    assert.equal(existsSync(join(A.agent.dataDir, 'vrouter/flat', other.replace(/-/g, ''))), false, 'no state written');

    const hostsFile = join(A.agent.dataDir, 'vrouter/flat', L3.replace(/-/g, ''), 'dhcp-hosts');
    const before = readFileSync(hostsFile, 'utf8');
    const good = { mac: '52:54:00:77:00:31', ip: '10.77.0.31', hostname: 'ok' };
    await expectInvalid(client.call(vrouter.DhcpApply, A.ep, { l3NetworkUuid: L3, entries: [good, { mac: '52:54:00:77:00:31', ip: '10.77.0.32' }] }), 'entries.1.mac');
    await expectInvalid(client.call(vrouter.DhcpApply, A.ep, { l3NetworkUuid: L3, entries: [good, { mac: '52:54:00:77:00:32', ip: '10.78.0.32' }] }), 'entries.1.ip');
    await expectInvalid(client.call(vrouter.DhcpApply, A.ep, { l3NetworkUuid: L3, entries: [good, { mac: '52:54:00:77:00:33', ip: '10.77.0.31' }] }), 'entries.1.ip');
    // the schema check runs in the client first; send raw to see the agent's own answer too
    const res = await fetch(`${A.ep.url}${vrouter.DhcpApply.path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${A.ep.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ l3NetworkUuid: L3, entries: [good, { mac: '52:54:00:77:00:34', ip: '10.77.0.34', hostname: 'my vm' }] }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; details: { field: string } };
    assert.equal(body.code, 'INVALID_ARGUMENT');
    assert.equal(body.details.field, 'entries.1.hostname');
    await expectInvalid(client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1, nic('52:54:00:77:00:35', '10.77.0.11', 'vm-35')], dns: NO_DNS }), 'nics.1.ip');
    await expectInvalid(client.call(vrouter.FlatApply, A.ep, { network: NET('a', bridge), nics: [NIC1], dns: { records: [{ name: 'VM-one', ip: '10.77.0.40' }], forwarders: [] } }), 'nics.0.hostname');
    assert.equal(readFileSync(hostsFile, 'utf8'), before, 'dhcp-hosts untouched');
    assert.equal((await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!.dhcpEntries, 2);
    // a bridge that doesn't exist: typed error, nothing left behind
    await assert.rejects(client.call(vrouter.NamespaceEnsure, A.ep, { network: { ...NET('a', `${runId()}nobr`), l3NetworkUuid: other } }), (e: TStackError) => e.code === 'NETWORK_ERROR');
    assert.equal(await netnsExists(n.namespace), false);
  });

  it('namespace/delete removes namespace, veth, dnsmasq and state; is idempotent', async () => {
    const st = (await client.call(vrouter.FlatStatus, A.ep, { l3NetworkUuid: L3 })).networks[0]!;
    const pid = st.namespace.dnsmasqPid!;
    assert.deepEqual(await client.call(vrouter.NamespaceDelete, A.ep, { l3NetworkUuid: L3 }), { deleted: true });
    assert.equal(await netnsExists(st.namespace.namespace), false);
    assert.equal(existsSync(`/sys/class/net/${st.namespace.hostVeth}`), false);
    for (let i = 0; i < 20 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(pidAlive(pid), false, 'dnsmasq stopped');
    assert.equal(existsSync(join(A.agent.dataDir, 'vrouter/flat', L3.replace(/-/g, ''))), false);
    assert.deepEqual(await client.call(vrouter.NamespaceDelete, A.ep, { l3NetworkUuid: L3 }), { deleted: false });
    await client.call(vrouter.NamespaceDelete, B.ep, { l3NetworkUuid: L3 });
  });
});
