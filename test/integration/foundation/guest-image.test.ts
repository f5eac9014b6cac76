// The test guest image boots under libvirt (domain type 'qemu'), shows its readiness marker on
// the serial log, takes DHCP on a test bridge, reads NoCloud cidata or the EC2-style metadata
// service, and lets us in over SSH with the injected key; the ISO boots too; ACPI powers it off.
//
// Network: a test bridge (no address in the root namespace, no route to the uplink) with a veth
// into a test netns that runs dnsmasq (DHCP, --no-ping) and, for the metadata case, an HTTP
// server on 169.254.169.254. SSH runs from inside that netns.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { exec, startProcess } from '../../../shared/exec.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { freePort } from '../../harness/ports.js';
import { ensureLibvirt, createTransientDomain, destroyDomainsWithPrefix, domainExists, tinyVmXml, virsh } from '../../harness/libvirt.js';
import { createBridge, createNetns, createVeth, moveToNetns, attachToBridge, addAddress } from '../../harness/net.js';
import { guestImage, makeSshKey, makeCidataIso, waitForSerial, sshRun, type GuestImage } from '../../harness/guest.js';

const BOOT_TIMEOUT = 150_000; // TCG on a busy 2-core machine: ~6 s idle, much more under load

describe('foundation: guest image boots under libvirt', function () {
  this.timeout(300_000);
  const cleanup = useCleanup();
  const id = runId();
  const br = `${id}gb`;
  const ns = `${id}-gns`;
  const gw = '10.213.0.1';
  let dir: string;
  let img: GuestImage;
  let key: { priv: string; pub: string; pubKey: string };
  let vmCount = 0;

  const mac = (n: number): string => `52:54:00:7e:${id.slice(1, 3)}:${(0x10 + n).toString(16)}`;
  const ipOf = (n: number): string => `10.213.0.${20 + n}`;

  before(async function () {
    await ensureLibvirt();
    img = await guestImage();
    dir = await tmpDir('guest', cleanup);
    key = await makeSshKey(dir);
    cleanup.add(() => destroyDomainsWithPrefix(`${id}-gi`), 'leftover test domains');
    // test network: bridge <-> veth <-> netns running dnsmasq; nothing in the root namespace has an address
    await createBridge(br, cleanup);
    await createNetns(ns, cleanup);
    await createVeth(`${id}gv0`, `${id}gv1`, cleanup);
    await attachToBridge(`${id}gv0`, br);
    await moveToNetns(`${id}gv1`, ns);
    await addAddress(`${id}gv1`, `${gw}/24`, ns);
    await addAddress(`${id}gv1`, '169.254.169.254/32', ns);
    const hosts = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => `--dhcp-host=${mac(n)},${ipOf(n)}`);
    const dnsmasq = await startProcess(
      'dnsmasq',
      [
        '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--port=0', '--user=root', '--group=root',
        `--interface=${id}gv1`, '--bind-interfaces', '--except-interface=lo', '--no-ping',
        '--dhcp-range=10.213.0.100,10.213.0.150,255.255.255.0,1h', `--dhcp-option=option:router,${gw}`,
        `--dhcp-leasefile=${join(dir, 'leases')}`, `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--log-dhcp', `--log-facility=${join(dir, 'dnsmasq.log')}`,
        ...hosts,
      ],
      { netns: ns },
    );
    cleanup.add(() => dnsmasq.stop(), 'dnsmasq');
  });

  async function boot(o: { cidata?: string; iso?: boolean }): Promise<{ name: string; serial: string; ip: string }> {
    const n = ++vmCount;
    const name = `${id}-gi${n}`;
    const vmDir = join(dir, name);
    mkdirSync(vmDir, { recursive: true });
    chmodSync(vmDir, 0o755);
    const serial = join(vmDir, 'serial.log');
    const spec: Parameters<typeof tinyVmXml>[0] = { name, serialLog: serial, nic: { bridge: br, mac: mac(n), tap: `${id}t${n}` } };
    if (o.iso) {
      spec.bootIso = join(vmDir, 'tinyguest.iso');
      copyFileSync(img.iso, spec.bootIso);
    } else {
      spec.disk = join(vmDir, 'root.qcow2');
      await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', img.qcow2, spec.disk]);
    }
    if (o.cidata) spec.cidataIso = o.cidata;
    await createTransientDomain(tinyVmXml(spec), vmDir, cleanup);
    return { name, serial, ip: ipOf(n) };
  }

  async function powerOff(vm: { name: string; serial: string }): Promise<void> {
    await virsh(['shutdown', vm.name, '--mode', 'acpi']);
    const deadline = Date.now() + 60_000;
    while (await domainExists(vm.name)) {
      assert.ok(Date.now() < deadline, `${vm.name} did not power off on ACPI within 60 s`);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.match(readFileSync(vm.serial, 'utf8'), /TINYGUEST-POWEROFF/);
  }

  it('qcow2 + NoCloud cidata: marker on serial, DHCP, hostname, runcmd, SSH with the injected key, ACPI power-off', async () => {
    const cidata = await makeCidataIso(dir, {
      name: 'cidata-cc.iso',
      metaData: { 'instance-id': `iid-${id}-1`, 'local-hostname': 'md-host' },
      userData: `#cloud-config\nhostname: ${id}-cc\nssh_authorized_keys:\n  - ${key.pubKey}\nruncmd:\n  - echo runcmd-ran > /root/runcmd.out\n`,
    });
    const vm = await boot({ cidata });
    const line = await waitForSerial(vm.serial, /TINYGUEST-READY/, BOOT_TIMEOUT);
    assert.match(line, new RegExp(`hostname=${id}-cc ip=${vm.ip.replace(/\./g, '\\.')} datasource=nocloud:`));
    const out = await sshRun({ host: vm.ip, key: key.priv, netns: ns, cmd: 'hostname; cat /root/runcmd.out; cat /run/ready', timeoutMs: 60_000 });
    const [hn, rc] = out.split('\n');
    assert.equal(hn, `${id}-cc`);
    assert.equal(rc, 'runcmd-ran');
    // a key that was not injected is refused
    const other = await makeSshKey(join(dir, 'other'));
    await assert.rejects(sshRun({ host: vm.ip, key: other.priv, netns: ns, cmd: 'true', timeoutMs: 3_000 }));
    await powerOff(vm);
  });

  it('qcow2 without cidata: reads the EC2-style metadata service at 169.254.169.254 and runs a #! user-data script', async () => {
    const md = join(dir, 'md');
    mkdirSync(join(md, 'latest/meta-data/public-keys/0'), { recursive: true });
    writeFileSync(join(md, 'latest/user-data'), '#!/bin/sh\necho script-ran > /root/script.out\n');
    writeFileSync(join(md, 'latest/meta-data/local-hostname'), `${id}-ec2.example\n`);
    writeFileSync(join(md, 'latest/meta-data/public-keys/0/openssh-key'), key.pubKey + '\n');
    const http = await startProcess('python3', ['-m', 'http.server', '--bind', '169.254.169.254', '--directory', md, '80'], { netns: ns, logFile: join(dir, 'md-http.log') });
    cleanup.add(() => http.stop(), 'metadata http server');
    await exec('ip', ['netns', 'exec', ns, 'true']);
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await exec('curl', ['-sf', '--max-time', '2', 'http://169.254.169.254/latest/user-data'], { netns: ns });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const vm = await boot({});
    const line = await waitForSerial(vm.serial, /TINYGUEST-READY/, BOOT_TIMEOUT);
    assert.match(line, new RegExp(`hostname=${id}-ec2 .*datasource=ec2:169\\.254\\.169\\.254`));
    const out = await sshRun({ host: vm.ip, key: key.priv, netns: ns, cmd: 'cat /root/script.out', timeoutMs: 60_000 });
    assert.equal(out.trim(), 'script-ran');
    await powerOff(vm);
  });

  it('build.sh is a quick no-op when the image is up to date', async () => {
    const t0 = Date.now();
    const again = await guestImage();
    assert.deepEqual(again, img);
    assert.ok(Date.now() - t0 < 3_000, `took ${Date.now() - t0} ms`);
    const st = statSync(img.qcow2);
    assert.ok(st.size > 1 << 20 && (st.mode & 0o004) !== 0, 'qcow2 exists and is world-readable');
  });

  it('restricted slirp NIC (qemu:commandline, hostfwd to 127.0.0.1): SSH from the host', async () => {
    const n = ++vmCount;
    const name = `${id}-gi${n}`;
    const vmDir = join(dir, name);
    mkdirSync(vmDir, { recursive: true });
    chmodSync(vmDir, 0o755);
    const disk = join(vmDir, 'root.qcow2');
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', img.qcow2, disk]);
    const cidata = await makeCidataIso(dir, {
      name: 'cidata-slirp.iso',
      metaData: { 'instance-id': `iid-${id}-s`, 'local-hostname': `${id}-slirp` },
      userData: `#cloud-config
ssh_authorized_keys:
  - ${key.pubKey}
`,
    });
    const port = await freePort();
    const serial = join(vmDir, 'serial.log');
    await createTransientDomain(tinyVmXml({ name, disk, cidataIso: cidata, serialLog: serial, nic: { slirpSshPort: port } }), vmDir, cleanup);
    const line = await waitForSerial(serial, /TINYGUEST-READY/, BOOT_TIMEOUT);
    assert.match(line, new RegExp(`hostname=${id}-slirp ip=10\\.0\\.2\\.15 datasource=nocloud:`));
    const out = await sshRun({ host: '127.0.0.1', port, key: key.priv, cmd: 'hostname', timeoutMs: 60_000 });
    assert.equal(out.trim(), `${id}-slirp`);
    await powerOff({ name, serial });
  });

  it('the ISO boots (IDE CD-ROM) with a cidata drive, and SSH works', async () => {
    const cidata = await makeCidataIso(dir, {
      name: 'cidata-iso.iso',
      metaData: `instance-id: iid-${id}-3\nlocal-hostname: ${id}-iso\npublic-keys:\n  - ${key.pubKey}\n`,
      userData: '#cloud-config\n',
    });
    const vm = await boot({ cidata, iso: true });
    const line = await waitForSerial(vm.serial, /TINYGUEST-READY/, BOOT_TIMEOUT);
    assert.match(line, new RegExp(`hostname=${id}-iso ip=${vm.ip.replace(/\./g, '\\.')} datasource=nocloud:`));
    const out = await sshRun({ host: vm.ip, key: key.priv, netns: ns, cmd: 'hostname', timeoutMs: 60_000 });
    assert.equal(out.trim(), `${id}-iso`);
    await powerOff(vm);
  });
});

