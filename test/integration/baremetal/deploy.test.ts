// Image-based provisioning at the agent level with real parts only: a storage agent's image
// store holds the test guest image; a real vrouteragent runs the PXE server (namespace on a test
// bridge, dnsmasq, its HTTP endpoint) and prepares the deploy (pull from the image store, raw
// conversion, config drive); two simulated machines (ipmi_sim + QEMU TCG, empty 1 GiB disks)
// PXE-boot the deploy ramdisk AT ONCE, which streams the image onto their disks, checks its
// sha256, writes the config drive and reports; set to boot from disk and power-cycled through
// their BMCs they boot the test guest from their own disks (PXE off) on their static addresses
// and answer SSH with the injected key. Then: a corrupted cached image is caught by the
// ramdisk's checksum (step 'checksum', disk wiped) and a wipe zeroes the disk's start.
// The test plays the controller's part (test/functional/baremetal-instances.test.ts has the flow).
import { strict as assert } from 'node:assert';
import { randomBytes, randomUUID } from 'node:crypto';
import { openSync, readSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { baremetal as BM } from '../../../shared/protocol/index.js';
import * as S from '../../../shared/protocol/storage.js';
import { useCleanup } from '../../harness/cleanup.js';
import { startAgentProcess, type AgentProcess } from '../../harness/agents.js';
import { buildRamdisks, machineQemuArgs, startSimulatedMachine, type SimulatedMachine } from '../../harness/baremetal.js';
import { createBridge, createTap, deleteNetns } from '../../harness/net.js';
import { until } from '../../harness/assert.js';
import { builtGuestImage, makeSshKey, sshRun, waitForSerial } from '../../harness/guest.js';
import { runId, tmpDir } from '../../harness/tmp.js';

const MACS = ['52:54:00:21:0a:01', '52:54:00:21:0a:02'];
const IPS = ['10.89.0.10', '10.89.0.11'];

describe('integration: provisioning two machines from the image store through the PXE server (deploy ramdisk, config drive, boot from disk, SSH)', function () {
  this.timeout(600_000);
  const cleanup = useCleanup();
  const client = new AgentClient();
  let vr: AgentProcess;
  let st: AgentProcess;
  const machines: SimulatedMachine[] = [];
  const disks: string[] = [];
  let spec: BM.PxeServerSpecT;
  let key: { priv: string; pubKey: string };
  const imageUuid = randomUUID();
  const instances = [randomUUID(), randomUUID()];
  const ep = () => ({ url: vr.url, token: vr.token });
  const prefix = `${runId()}d`;
  const ns = () => `${prefix}-p-${spec.pxeServerUuid.replace(/-/g, '')}`;
  const bmc = (m: SimulatedMachine) => ({ address: m.address, port: m.port, username: m.username, password: m.password });
  const token = () => `dep-${randomBytes(16).toString('hex')}`;
  const reportOf = async (tok: string) => (await client.call(BM.PxeStatus, ep(), { pxeServerUuid: spec.pxeServerUuid })).state?.deployReports?.find((r) => r.token === tok);
  const power = async (m: SimulatedMachine, op: BM.PowerOp) => client.call(BM.IpmiPower, ep(), { bmc: bmc(m), op });
  const bootdev = async (m: SimulatedMachine, device: BM.BootDevice) => client.call(BM.IpmiBootDevice, ep(), { bmc: bmc(m), device });
  const diskStart = (i: number): Buffer => {
    const fd = openSync(disks[i]!, 'r');
    const b = Buffer.alloc(512);
    readSync(fd, b, 0, 512, 0);
    closeSync(fd);
    return b;
  };

  before(async () => {
    const dir = await tmpDir('bmdeploy', cleanup);
    const bridge = await createBridge(`${runId()}dpb`, cleanup);
    const taps = [await createTap(`${runId()}dp0`, bridge, cleanup), await createTap(`${runId()}dp1`, bridge, cleanup)];
    spec = { pxeServerUuid: randomUUID(), bridge, serverIp: '10.89.0.1', dhcpRangeBegin: '10.89.0.100', dhcpRangeEnd: '10.89.0.150', dhcpRangeNetmask: '255.255.255.0', httpPort: 8091, running: true, machines: [] };
    cleanup.add(() => deleteNetns(ns()), 'PXE namespace');
    const [images, img] = await Promise.all([buildRamdisks(cleanup), builtGuestImage()]);
    key = await makeSshKey(join(dir, 'ssh'));
    for (const i of [0, 1]) disks.push(join(dir, `disk${i}.raw`));
    let ms: SimulatedMachine[];
    [vr, st, ...ms] = (await Promise.all([
      startAgentProcess('vrouteragent', { cleanup, args: ['--watchdog-ms', '0', '--metrics-interval-ms', '0', '--name-prefix', prefix, '--if-prefix', prefix, '--baremetal-images', images] }),
      startAgentProcess('storageagent', { cleanup }),
      ...[0, 1].map((i) => startSimulatedMachine(cleanup, { qemuArgs: machineQemuArgs({ tap: taps[i]!, mac: MACS[i]!, disk: disks[i]! }) })),
    ])) as [AgentProcess, AgentProcess, SimulatedMachine, SimulatedMachine];
    machines.push(...ms);
    // the image store holds the test guest image (qcow2)
    const store = { type: 'dir' as const, uuid: randomUUID(), path: join(st.dataDir, 'bs') };
    await client.call(S.ImageStoreInit, { url: st.url, token: st.token }, { store });
    await client.call(S.ImageStoreDownload, { url: st.url, token: st.token }, { store, imageUuid, url: `file://${img.qcow2}`, format: 'qcow2' });
  });

  const prepare = (i: number) =>
    client.call(BM.DeployPrepare, ep(), {
      instanceUuid: instances[i]!,
      image: { imageUuid, imageStore: { url: st.url, token: st.token } },
      configDrive: { hostname: `bm-${i}`, sshKeys: [key.pubKey], rootPassword: 'Root-pw-21', userData: `#!/bin/sh\necho "BM-USERDATA-${i} ran"\n`, network: { mac: MACS[i]!, ip: IPS[i]!, netmask: '255.255.255.0', gateway: '10.89.0.1' } },
    });

  it('two machines at once: the deploy ramdisk writes the image and the config drive; each boots from its own disk and answers SSH with the injected key on its address', async () => {
    const t0 = Date.now();
    const prep = await Promise.all([prepare(0), prepare(1)]);
    assert.ok(prep.every((p) => /^[0-9a-f]{64}$/.test(p.image.sha256) && p.image.sizeBytes > 1 << 20), JSON.stringify(prep));
    assert.equal(prep[0]!.image.sha256, prep[1]!.image.sha256, 'one raw image for both');
    const tPrep = Date.now();
    const toks = [token(), token()];
    spec.machines = [0, 1].map((i) => ({ mac: MACS[i]!, boot: 'deploy' as const, token: toks[i]!, deploy: { action: 'deploy' as const, instanceUuid: instances[i]!, imageUuid } }));
    await client.call(BM.PxeApply, ep(), { server: spec });
    await Promise.all(machines.map(async (m) => { await bootdev(m, 'pxe'); await power(m, 'on'); }));
    const reps = await Promise.all(toks.map((t, i) => until(`deploy report of machine ${i}`, () => reportOf(t), 240_000, 1000)));
    const tDeployed = Date.now();
    for (const [i, r] of reps.entries()) assert.deepEqual({ ok: r.report.ok, disk: r.report.disk }, { ok: true, disk: 'vda' }, `machine ${i}: ${JSON.stringify(r.report)}; serial: ${machines[i]!.serialLog}`);
    // what the controller does next: PXE off, boot from disk, power-cycle
    spec.machines = [0, 1].map((i) => ({ mac: MACS[i]!, boot: 'local' as const }));
    await client.call(BM.PxeApply, ep(), { server: spec });
    await Promise.all(machines.map(async (m) => { await bootdev(m, 'disk'); await power(m, 'off'); await power(m, 'on'); }));
    for (const m of machines) assert.match(await m.whenRunning(), /-boot order=c/);
    const ready = await Promise.all(machines.map((m) => waitForSerial(m.serialLog, /TINYGUEST-READY/, 240_000)));
    const tBooted = Date.now();
    for (const [i, line] of ready.entries()) assert.match(line, new RegExp(`hostname=bm-${i} ip=${IPS[i]!.replace(/\./g, '\\.')} datasource=nocloud:/dev/vda2`));
    for (const i of [0, 1]) {
      const out = await sshRun({ host: IPS[i]!, key: key.priv, netns: ns(), cmd: 'hostname; ip -4 -o addr show dev eth0; cat /proc/cmdline; grep "^root:" /etc/shadow; cat /var/log/user-data.log', timeoutMs: 60_000 });
      assert.match(out, new RegExp(`^bm-${i}$`, 'm'));
      assert.match(out, new RegExp(`inet ${IPS[i]!.replace(/\./g, '\\.')}/24`));
      assert.doesNotMatch(out, /tstack\.mode=deploy/, 'booted from its disk, not the ramdisk');
      assert.match(out, /^root:\$6\$[^:]+:/m, 'the root password hash from the config drive');
      assert.match(out, new RegExp(`BM-USERDATA-${i} ran`));
    }
    console.log(`      prepare (pull + raw + config drives) ${((tPrep - t0) / 1000).toFixed(1)} s, PXE + deploy ramdisk ${((tDeployed - tPrep) / 1000).toFixed(1)} s, boot from disk → ready ${((tBooted - tDeployed) / 1000).toFixed(1)} s`);
  });

  it('a corrupted image fails the ramdisk checksum (step checksum, the disk wiped); a wipe zeroes the start of the disk', async () => {
    // machine 1 redeploys from a cached image damaged after its checksum was taken; machine 0 is wiped
    const cached = join(vr.dataDir, 'baremetal', 'cache', `${imageUuid}.raw`);
    const fd = openSync(cached, 'r+');
    writeSync(fd, Buffer.from('corrupt'), 0, 7, 4096);
    closeSync(fd);
    await prepare(1);
    const toks = [token(), token()];
    spec.machines = [
      { mac: MACS[0]!, boot: 'deploy', token: toks[0]!, deploy: { action: 'wipe', instanceUuid: instances[0]! } },
      { mac: MACS[1]!, boot: 'deploy', token: toks[1]!, deploy: { action: 'deploy', instanceUuid: instances[1]!, imageUuid } },
    ];
    await client.call(BM.PxeApply, ep(), { server: spec });
    assert.equal(diskStart(0).readUInt16LE(510), 0xaa55, 'machine 0 has an MBR before the wipe');
    await Promise.all(machines.map(async (m) => { await bootdev(m, 'pxe'); await power(m, 'off'); await power(m, 'on'); }));
    const [wiped, failed] = await Promise.all(toks.map((t, i) => until(`report of machine ${i}`, () => reportOf(t), 240_000, 1000)));
    assert.equal(wiped!.report.ok, true, JSON.stringify(wiped));
    assert.deepEqual({ ok: failed!.report.ok, step: failed!.report.step }, { ok: false, step: 'checksum' }, JSON.stringify(failed));
    assert.match(failed!.report.message ?? '', /checksum mismatch: the image written has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/);
    await Promise.all(machines.map((m) => power(m, 'off')));
    for (const i of [0, 1]) assert.ok(diskStart(i).equals(Buffer.alloc(512)), `disk ${i}: its first sector is zero`);
    spec.machines = [];
    await client.call(BM.PxeApply, ep(), { server: spec });
    assert.deepEqual(await client.call(BM.DeployCleanup, ep(), { instanceUuid: instances[0]! }), { removed: true });
  });
});
