// vrouteragent with the real test guest (libvirt, domain type 'qemu', 1 vCPU, tiny RAM, qcow2
// overlay of the guest image, NIC on a test bridge): one VM configured through the metadata
// service, one through a NoCloud config drive built by the agent. Each gets exactly its
// assigned IP, hostname, gateway and DNS, runs its user-data script (marker on the serial log),
// has its SSH key authorised, and cannot read the other VM's user-data. Two "hosts" (two agents,
// two service namespaces on the bridge) each serve only their own VM; host A is SIGKILLed and
// restarted while its guest keeps renewing its lease.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exec } from '../../../shared/exec.js';
import { vrouter } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { guestImage, makeSshKey, sshRun, waitForSerial } from '../../harness/guest.js';
import { createTransientDomain, ensureLibvirt, tinyVmXml } from '../../harness/libvirt.js';
import { createBridge, createNetns, createVeth, moveToNetns } from '../../harness/net.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { client, restartHost, startHost, type Host } from './helpers.js';

const L3 = randomUUID();
const NET = (bridge: string, dhcpServerIp: string) => ({
  l3NetworkUuid: L3,
  bridge,
  cidr: '10.78.0.0/24',
  dhcpServerIp,
  gateway: '10.78.0.1',
  ipRanges: [{ startIp: '10.78.0.10', endIp: '10.78.0.200' }],
  dnsDomain: 'guest.test',
  leaseTimeSec: 3600,
});
const VM1 = { mac: '52:54:00:78:00:11', ip: '10.78.0.11', hostname: 'md-guest', instanceId: randomUUID() };
const VM2 = { mac: '52:54:00:78:00:12', ip: '10.78.0.12', hostname: 'cd-guest', instanceId: randomUUID() };

describe('vrouteragent flat network with real guests (metadata service and config drive)', function () {
  this.timeout(600_000);
  const cleanup = useCleanup();
  let dir: string;
  let host: Host; // host A: serves VM1
  let hostB: Host; // host B: serves VM2
  let ops: string;
  let key: { priv: string; pubKey: string };
  let serial1: string;
  let serial2: string;

  const ssh = (ip: string, cmd: string): Promise<string> => sshRun({ host: ip, key: key.priv, cmd, netns: ops, timeoutMs: 120_000 });

  before(async function () {
    await ensureLibvirt();
    const img = await guestImage();
    dir = await tmpDir('vrguest', cleanup);
    key = await makeSshKey(dir);
    const bridge = await createBridge(`${runId()}gbr`, cleanup);
    // the operator's seat on the L2: a namespace with an address, for SSH into the guests
    ops = await createNetns(`${runId()}ops`, cleanup);
    const [oh, op] = await createVeth(`${runId()}oph`, `${runId()}opp`, cleanup);
    await exec('ip', ['link', 'set', oh, 'master', bridge, 'up']);
    await moveToNetns(op, ops);
    await exec('ip', ['-n', ops, 'addr', 'add', '10.78.0.250/24', 'dev', op]);

    host = await startHost('g', cleanup, [L3]);
    hostB = await startHost('h', cleanup, [L3]);
    await client.call(vrouter.NamespaceEnsure, host.ep, { network: NET(bridge, '10.78.0.2') });
    await client.call(vrouter.NamespaceEnsure, hostB.ep, { network: NET(bridge, '10.78.0.3') });
    // each host gets the DHCP entries of its own VMs only; DNS knows the whole L3 on both
    await client.call(vrouter.DhcpApply, host.ep, { l3NetworkUuid: L3, entries: [{ mac: VM1.mac, ip: VM1.ip, hostname: VM1.hostname, vmUuid: VM1.instanceId }] });
    await client.call(vrouter.DhcpApply, hostB.ep, { l3NetworkUuid: L3, entries: [{ mac: VM2.mac, ip: VM2.ip, hostname: VM2.hostname, vmUuid: VM2.instanceId }] });
    const records = [{ name: VM1.hostname, ip: VM1.ip }, { name: VM2.hostname, ip: VM2.ip }];
    await client.call(vrouter.DnsApply, host.ep, { l3NetworkUuid: L3, records, forwarders: [] });
    await client.call(vrouter.DnsApply, hostB.ep, { l3NetworkUuid: L3, records, forwarders: [] });
    await client.call(vrouter.MetadataApply, hostB.ep, { l3NetworkUuid: L3, records: [{ ip: VM2.ip, instanceId: VM2.instanceId, hostname: VM2.hostname, userData: 'vm2-own-metadata\n' }] });
    // VM1 reads the metadata service of host A; host A also holds a record of VM2 (to prove that
    // one namespace never mixes them up); VM2 boots from a config drive
    await client.call(vrouter.MetadataApply, host.ep, {
      l3NetworkUuid: L3,
      records: [
        { ip: VM1.ip, instanceId: VM1.instanceId, hostname: VM1.hostname, sshKeys: [key.pubKey], userData: '#!/bin/sh\necho "VR-USERDATA-MD host=$(hostname) secret=vm1-secret-7f3a"\n' },
        { ip: VM2.ip, instanceId: VM2.instanceId, hostname: VM2.hostname, userData: 'vm2-own-metadata\n' },
      ],
    });
    const iso = join(dir, 'vm2-cidata.iso');
    const cd = await client.call(vrouter.ConfigDriveBuild, host.ep, {
      path: iso,
      instanceId: VM2.instanceId,
      hostname: VM2.hostname,
      sshKeys: [key.pubKey],
      userData: '#!/bin/sh\necho "VR-USERDATA-CD host=$(hostname)"\n',
      networks: [{ mac: VM2.mac, ip: VM2.ip, netmask: '255.255.255.0', gateway: '10.78.0.1', dnsServers: ['10.78.0.3'], dnsDomain: 'guest.test' }],
    });
    assert.equal(cd.path, iso);
    assert.ok(cd.sizeBytes > 0);
    const label = (await exec('blkid', ['-o', 'value', '-s', 'LABEL', iso])).stdout.trim();
    assert.equal(label, 'cidata');

    const boot = async (name: string, mac: string, cidataIso?: string): Promise<string> => {
      const overlay = join(dir, `${name}.qcow2`);
      await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', img.qcow2, overlay]);
      const serialLog = join(dir, `${name}.serial.log`);
      const spec = { name: `${runId()}-${name}`, disk: overlay, serialLog, memoryMiB: 160, nic: { bridge, mac }, ...(cidataIso ? { cidataIso } : {}) };
      await createTransientDomain(tinyVmXml(spec), dir, cleanup);
      return serialLog;
    };
    serial1 = await boot('vrmd', VM1.mac);
    serial2 = await boot('vrcd', VM2.mac, iso);
  });

  it('metadata VM: exact IP, hostname, gateway, DNS; user-data ran; SSH key authorised', async () => {
    const ready = await waitForSerial(serial1, /TINYGUEST-READY/, 300_000);
    assert.match(ready, new RegExp(`hostname=${VM1.hostname} ip=${VM1.ip.replace(/\./g, '\\.')} datasource=ec2:169\\.254\\.169\\.254`));
    await waitForSerial(serial1, /VR-USERDATA-MD host=md-guest secret=vm1-secret-7f3a/, 10_000);
    const out = await ssh(VM1.ip, 'hostname; cat /run/ipv4; ip -4 -o addr show dev eth0; ip route; cat /etc/resolv.conf');
    assert.match(out, /^md-guest$/m);
    assert.match(out, /inet 10\.78\.0\.11\/24/);
    assert.match(out, /^default via 10\.78\.0\.1 dev eth0/m);
    assert.match(out, /^169\.254\.169\.254 via 10\.78\.0\.2 dev eth0/m);
    assert.match(out, /^nameserver 10\.78\.0\.2$/m);
    assert.match(out, /^search guest\.test$/m);
    assert.doesNotMatch(out, /nameserver (?!10\.78\.0\.2)/);
    // DNS from inside the guest: the other VM's name
    const ns = await ssh(VM1.ip, 'nslookup cd-guest.guest.test 2>&1 || true');
    assert.match(ns, /Address:? 10\.78\.0\.12/);
  });

  it('config-drive VM: exact IP, hostname, gateway, DNS; user-data ran; SSH key authorised', async () => {
    const ready = await waitForSerial(serial2, /TINYGUEST-READY/, 300_000);
    assert.match(ready, new RegExp(`hostname=${VM2.hostname} ip=${VM2.ip.replace(/\./g, '\\.')} datasource=nocloud:`));
    await waitForSerial(serial2, /VR-USERDATA-CD host=cd-guest/, 10_000);
    const out = await ssh(VM2.ip, 'hostname; ip -4 -o addr show dev eth0; ip route; cat /etc/resolv.conf; cat /run/cloud/meta-data');
    assert.match(out, /^cd-guest$/m);
    assert.match(out, /inet 10\.78\.0\.12\/24/);
    assert.match(out, /^default via 10\.78\.0\.1 dev eth0/m);
    assert.match(out, /^169\.254\.169\.254 via 10\.78\.0\.3 dev eth0/m, "VM2's metadata route points at its own host B");
    assert.match(out, /^nameserver 10\.78\.0\.3$/m);
    assert.match(out, new RegExp(`^instance-id: "?${VM2.instanceId}"?$`, 'm'));
  });

  it('two hosts: each dnsmasq answered only its own VM', async () => {
    const logA = readFileSync(dnsmasqLog(host), 'utf8');
    const logB = readFileSync(dnsmasqLog(hostB), 'utf8');
    assert.match(logA, /DHCPACK\S* 10\.78\.0\.11 52:54:00:78:00:11/);
    assert.match(logB, /DHCPACK\S* 10\.78\.0\.12 52:54:00:78:00:12/);
    assert.doesNotMatch(logA, /DHCP(OFFER|ACK)\S* \S+ 52:54:00:78:00:12/);
    assert.doesNotMatch(logB, /DHCP(OFFER|ACK)\S* \S+ 52:54:00:78:00:11/);
  });

  it("the second VM cannot read the first VM's user-data (only its own)", async () => {
    // through its own host B, then through host A, which holds both VMs' records
    for (const via of ['10.78.0.3', '10.78.0.2']) {
      const mine = await ssh(VM2.ip, `ip route replace 169.254.169.254/32 via ${via} dev eth0 && wget -q -O - http://169.254.169.254/latest/user-data; echo "rc=$?"`);
      assert.match(mine, /vm2-own-metadata/, `own data via ${via}`);
      assert.doesNotMatch(mine, /vm1-secret/);
      const os = await ssh(VM2.ip, 'wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json; echo "rc=$?"');
      assert.match(os, new RegExp(`"uuid": "${VM2.instanceId}"`));
      assert.doesNotMatch(os, new RegExp(VM1.instanceId));
      // there is no per-VM path to ask for someone else's data: only the source address counts
      const keys = await ssh(VM2.ip, 'wget -q -O - http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key; echo "rc=$?"');
      assert.match(keys, /rc=1/, 'VM2 has no key in its metadata record → 404');
    }
    await ssh(VM2.ip, 'ip route replace 169.254.169.254/32 via 10.78.0.3 dev eth0');
  });

  it('host A SIGKILLed and restarted: the guest keeps renewing its lease, metadata comes back', async () => {
    const acks = (): number => (readFileSync(dnsmasqLog(host), 'utf8').match(/DHCPACK\S* 10\.78\.0\.11 52:54:00:78:00:11/g) ?? []).length;
    const renew = async (): Promise<void> => {
      const n = acks();
      await ssh(VM1.ip, 'kill -USR1 "$(cat /run/udhcpc.eth0.pid)"');
      for (let i = 0; i < 60 && acks() <= n; i++) await new Promise((r) => setTimeout(r, 250));
      assert.ok(acks() > n, 'a new DHCPACK for VM1');
    };
    await host.agent.kill9();
    await renew(); // while the agent is down
    await restartHost(host, cleanup);
    const st = (await client.call(vrouter.FlatStatus, host.ep, { l3NetworkUuid: L3 })).networks[0]!;
    assert.equal(st.dnsmasqRunning, true);
    assert.equal(st.metadataListening, true);
    await renew();
    const ud = await ssh(VM1.ip, 'wget -q -O - http://169.254.169.254/latest/user-data; cat /run/ipv4');
    assert.match(ud, /vm1-secret-7f3a/);
    assert.match(ud, /^10\.78\.0\.11$/m);
  });
});

function dnsmasqLog(h: Host): string {
  return join(h.agent.dataDir, 'vrouter/flat', L3.replace(/-/g, ''), 'dnsmasq.log');
}
