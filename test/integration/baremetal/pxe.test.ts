// A PXE server run by a real vrouteragent (namespace on a test bridge, dnsmasq DHCP + TFTP +
// RA, the agent's HTTP endpoint) and a simulated machine (ipmi_sim + QEMU TCG, NIC on the
// bridge): set to PXE through the BMC and powered on, the machine's iPXE gets an address from
// the server and asks for its own boot script by MAC; stop removes the namespace and dnsmasq,
// start brings them back; bad specs are refused naming the field.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { baremetal as BM } from '../../../shared/protocol/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { startAgentProcess, type AgentProcess } from '../../harness/agents.js';
import { startSimulatedMachine, type SimulatedMachine } from '../../harness/baremetal.js';
import { createBridge, createTap, deleteNetns, netnsExists } from '../../harness/net.js';
import { rejectsWith, until } from '../../harness/assert.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAC = '52:54:00:21:00:01';

describe('integration: PXE server (vrouteragent) boots a simulated machine into iPXE', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  const client = new AgentClient();
  let agent: AgentProcess;
  let m: SimulatedMachine;
  let spec: BM.PxeServerSpecT;
  const ep = () => ({ url: agent.url, token: agent.token });
  const prefix = `${runId()}b`;
  const ns = (uuid: string) => `${prefix}-p-${uuid.replace(/-/g, '')}`;

  before(async () => {
    const bridge = await createBridge(`${runId()}pxb`, cleanup);
    const tap = await createTap(`${runId()}pxt`, bridge, cleanup);
    spec = { pxeServerUuid: randomUUID(), bridge, serverIp: '10.88.0.1', dhcpRangeBegin: '10.88.0.100', dhcpRangeEnd: '10.88.0.150', dhcpRangeNetmask: '255.255.255.0', httpPort: 8090, running: true, machines: [] };
    cleanup.add(() => deleteNetns(ns(spec.pxeServerUuid)), 'PXE namespace');
    // the inspection ramdisk (scripts/baremetal/build-ramdisk.sh: the test guest's kernel and initrd + an rcS overlay)
    const images = execFileSync(join(fileURLToPath(new URL('../../../scripts/baremetal/build-ramdisk.sh', import.meta.url))), [await tmpDir('ramdisk', cleanup)], { encoding: 'utf8' }).trim();
    const disk = join(await tmpDir('disk', cleanup), 'disk.raw');
    execFileSync('truncate', ['-s', '1G', disk]);
    [agent, m] = await Promise.all([
      startAgentProcess('vrouteragent', { cleanup, args: ['--watchdog-ms', '0', '--metrics-interval-ms', '0', '--name-prefix', prefix, '--if-prefix', prefix, '--baremetal-images', images] }),
      startSimulatedMachine(cleanup, {
        qemuArgs: ['-accel', 'tcg', '-machine', 'pc', '-m', '256', '-smp', '2', '-nodefaults', '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC}`, '-drive', `file=${disk},format=raw,if=virtio`],
      }),
    ]);
  });

  it('bad specs are refused naming the field; nothing is made', async () => {
    const e = await rejectsWith(client.call(BM.PxeApply, ep(), { server: { ...spec, serverIp: '10.88.0.120' } }), 'INVALID_ARGUMENT');
    assert.equal(e.details?.field, 'server.serverIp');
    await rejectsWith(client.call(BM.PxeApply, ep(), { server: { ...spec, bridge: 'br;rm -rf' } }), 'INVALID_ARGUMENT');
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), false);
  });

  it('a machine set to PXE through its BMC boots iPXE from the server and asks for its script', async () => {
    const r = await client.call(BM.PxeApply, ep(), { server: spec });
    assert.ok(r.state.running, JSON.stringify(r));
    assert.ok(r.state.dnsmasqPid);
    const bmc = { address: m.address, port: m.port, username: m.username, password: m.password };
    await client.call(BM.IpmiBootDevice, ep(), { bmc, device: 'pxe' });
    const t0 = Date.now();
    await client.call(BM.IpmiPower, ep(), { bmc, op: 'on' });
    const seen = await until(
      'the machine fetched its boot script',
      async () => (await client.call(BM.PxeStatus, ep(), { pxeServerUuid: spec.pxeServerUuid })).state?.recentBoots.find((b) => b.mac === MAC),
      60_000,
      500,
    );
    assert.equal(seen.boot, 'local', 'an unknown machine is sent to its next boot device');
    console.log(`      power on → iPXE asked for its script: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await client.call(BM.IpmiPower, ep(), { bmc, op: 'off' });
  });

  it('inspection: an unknown machine boots the inspection ramdisk, which reports the hardware of the QEMU command line once', async () => {
    const token = `insp-${randomUUID().replace(/-/g, '')}`;
    await client.call(BM.PxeApply, ep(), { server: { ...spec, discoveryToken: token } });
    const bmc = { address: m.address, port: m.port, username: m.username, password: m.password };
    const t0 = Date.now();
    await client.call(BM.IpmiPower, ep(), { bmc, op: 'on' });
    const got = await until(
      'the inspection report',
      async () => (await client.call(BM.PxeStatus, ep(), { pxeServerUuid: spec.pxeServerUuid })).state?.reports.find((r) => r.token === token),
      90_000,
      500,
    );
    console.log(`      power on → inspection report: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(got.report.cpuNum, 2, '-smp 2');
    assert.equal(Math.ceil(got.report.memoryBytes / 2 ** 20), 256, `-m 256: ${got.report.memoryBytes}`);
    assert.deepEqual(got.report.disks, [{ name: 'vda', size: 2 ** 30 }], 'the 1 GiB virtio disk');
    assert.deepEqual(got.report.nics.map((n) => n.mac), [MAC]);
    await until('the ramdisk powers the machine off', () => !m.poweredOn(), 30_000, 250);
    await client.call(BM.PxeApply, ep(), { server: spec });
  });

  it('stop removes namespace and dnsmasq, start brings them back, delete removes everything', async () => {
    let r = await client.call(BM.PxeApply, ep(), { server: { ...spec, running: false } });
    assert.equal(r.state.running, false);
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), false);
    r = await client.call(BM.PxeApply, ep(), { server: spec });
    assert.equal(r.state.running, true);
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), true);
    assert.deepEqual(await client.call(BM.PxeDelete, ep(), { pxeServerUuid: spec.pxeServerUuid }), { deleted: true });
    assert.equal(await netnsExists(ns(spec.pxeServerUuid)), false);
    assert.deepEqual(await client.call(BM.PxeStatus, ep(), { pxeServerUuid: spec.pxeServerUuid }), {});
  });
});
