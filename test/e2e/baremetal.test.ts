// Bare metal through a whole cloud: a controller with the bare-metal module, this machine added
// as host aio-host over its own sshd (agents deployed from this tree), and a "bare-metal server"
// made the way a newcomer makes one — `scripts/aio add-baremetal` against this controller (every
// name, address and path of it moved to the run's own: a QEMU machine behind ipmi_sim on
// 127.0.0.1, its NIC on a provisioning bridge, the provisioning L2 and the zone's PXE server
// created, the chassis registered by its IPMI address). Then through the API: a PXE timeout, the
// inspection (hardware = the QEMU command line), power on/reset/off as the BMC reports them, wrong
// IPMI credentials and an unreachable BMC — every failure names its step and leaves the chassis
// powered off and usable. Provisioning (baremetal-instances): two machines at once from the test
// guest image boot from their own disks (PXE off) and answer SSH with the injected key on their
// assigned addresses; stop/start/reboot as the BMC reports them; reinstall gives a fresh disk;
// delete frees the chassis. One bring-up for the file.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../shared/exec.js';
import { useCleanup } from '../harness/cleanup.js';
import type { ApiClient } from '../harness/controller.js';
import { netnsExists } from '../harness/net.js';
import { freePort } from '../harness/ports.js';
import { SIM_MACHINE } from '../harness/baremetal.js';
import { guestImage, makeSshKey, sshRun } from '../harness/guest.js';
import { tmpDir } from '../harness/tmp.js';
import { ok, settle, startBaremetalCloud, type BaremetalCloud } from '../harness/baremetal-cloud.js';

describe('e2e: bare metal (chassis, PXE server, inspection, IPMI) with a machine from scripts/aio add-baremetal', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  let cloud: BaremetalCloud;
  let api: ApiClient;
  let ch: any;
  let bmcPort: number;
  let bmcPw: string;
  let bmDir: string;
  const t: Record<string, number> = {};
  const aio = (...args: string[]) => cloud.aio(...args);
  const chassis = async (): Promise<any> => (await api.get(`/v1/baremetal-chassis/${ch.uuid}`)).body;
  const act = (body: unknown) => api.post(`/v1/baremetal-chassis/${ch.uuid}/actions`, body);
  /** What the BMC itself says, asked with ipmitool directly (not through tstack). */
  const bmcPower = async (): Promise<string> =>
    (await exec('ipmitool', ['-I', 'lanplus', '-C', '3', '-E', '-H', '127.0.0.1', '-p', String(bmcPort), '-U', 'admin', 'chassis', 'power', 'status'], { env: { IPMI_PASSWORD: bmcPw }, timeoutMs: 30_000 })).stdout.trim();
  const qemuPid = (dir = bmDir): number | undefined => {
    try {
      const pid = Number(readFileSync(join(dir, 'qemu.pid'), 'utf8'));
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  };

  /** The BMC starts QEMU in the background: wait for a running one (other than `not`). */
  const runningPid = async (not?: number, dir = bmDir): Promise<number> => {
    for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
      const pid = qemuPid(dir);
      if (pid !== undefined && pid !== not && !existsSync(join(dir, 'starting'))) return pid;
    }
    throw new Error('the machine did not start');
  };

  before(async () => {
    const t0 = Date.now();
    cloud = await startBaremetalCloud(cleanup);
    api = cloud.api;
    bmDir = cloud.machineDir(1);
    t.cloudSec = (Date.now() - t0) / 1000;
  });

  after(() => process.stdout.write(`      bare-metal timings (s): ${JSON.stringify(t)}\n`));

  it('scripts/aio add-baremetal makes a powered-off machine behind a BMC, the PXE server and the chassis; its processes outlive the command', async () => {
    const t0 = Date.now();
    const out = await aio('add-baremetal', '1');
    t.addBaremetalSec = (Date.now() - t0) / 1000;
    assert.match(out.stdout, /chassis aio-bm-1 [0-9a-f-]{36}: BMC 127\.0\.0\.1:\d+, NIC 52:54:00:bf:00:01, power Off/, out.stdout + out.stderr);
    ch = (await api.get('/v1/baremetal-chassis?q=name=aio-bm-1')).body.inventories[0];
    bmcPort = ch.ipmiPort;
    bmcPw = readFileSync(join(bmDir, 'bmc-password'), 'utf8');
    assert.equal(ch.ipmiAddress, '127.0.0.1');
    assert.equal(bmcPort, Number(cloud.env.AIO_BM_PORT_BASE) + 1);
    assert.equal(ch.powerState, 'Off');
    assert.ok(!JSON.stringify(ch).includes(bmcPw), 'the BMC password is never returned');
    const srv = (await api.get('/v1/baremetal-pxe-servers')).body.inventories[0];
    assert.equal(srv.name, 'aio-pxe');
    assert.equal(srv.status, 'Running', JSON.stringify(srv));
    // the BMC (ipmi_sim) runs after the command returned, from its pid file
    assert.match((await exec(SIM_MACHINE, ['status', bmDir])).stdout, /^bmc up power off/);
    assert.equal(await bmcPower(), 'Chassis Power is off');
    // a second add of the same machine re-registers it (idempotent), status lists it
    await aio('add-baremetal', '1');
    assert.equal((await api.get('/v1/baremetal-chassis?q=name=aio-bm-1')).body.inventories.length, 1);
    assert.match((await aio('status')).stdout, /aio-bm-1\s+BMC 127\.0\.0\.1:\d+\s+bmc up power off/);
  });

  it('a PXE timeout (the machine is cut off the provisioning network) fails naming the step; the chassis ends powered off and Available', async () => {
    const tap = cloud.tap(1);
    await exec('ip', ['link', 'set', tap, 'nomaster']);
    try {
      const t0 = Date.now();
      const j = await settle(api, await act({ inspect: { timeoutSec: 10 } }));
      t.pxeTimeoutSec = (Date.now() - t0) / 1000;
      assert.equal(j.state, 'Failed', JSON.stringify(j));
      assert.equal(j.error.code, 'PXE_TIMEOUT', JSON.stringify(j.error));
      assert.match(j.error.message, /^inspect: no report from the inspection ramdisk within 10 s/);
    } finally {
      await exec('ip', ['link', 'set', tap, 'master', cloud.bridge]);
    }
    const after = await chassis();
    assert.equal(after.status, 'Available');
    assert.equal(after.powerState, 'Off');
    assert.equal(await bmcPower(), 'Chassis Power is off');
    assert.equal(qemuPid(), undefined);
  });

  it('inspect reports the CPU count, memory, disk size and MAC of the QEMU command line, and powers the machine off', async () => {
    const args = readFileSync(join(bmDir, 'qemu.args'), 'utf8').trim().split('\n');
    const after = (flag: string): string => args[args.indexOf(flag) + 1]!;
    const mac = /mac=([0-9a-f:]+)/.exec(after('-device'))![1];
    const t0 = Date.now();
    const done = await ok(api, `/v1/baremetal-chassis/${ch.uuid}/actions`, { inspect: { timeoutSec: 300 } });
    t.inspectSec = (Date.now() - t0) / 1000;
    const hw = (done.hardware ?? (await chassis()).hardware) as any;
    assert.equal(hw.cpuNum, Number(after('-smp')), JSON.stringify(hw));
    assert.equal(hw.memorySize, Number(after('-m')) * 2 ** 20);
    assert.deepEqual(hw.disks, [{ name: 'vda', size: 2 ** 30 }], 'the 1 GiB virtio disk');
    assert.deepEqual(hw.nics.map((n: any) => n.mac), [mac]);
    const now = await chassis();
    assert.equal(now.status, 'Available');
    assert.equal(now.powerState, 'Off');
    assert.equal(await bmcPower(), 'Chassis Power is off');
  });

  it('powerOn / powerReset / powerOff change the power state the BMC reports', async () => {
    // disk boot: the empty disk, the machine just sits there
    let r = await act({ setBootDevice: { bootDevice: 'disk' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    r = await act({ powerOn: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'On');
    assert.equal(await bmcPower(), 'Chassis Power is on');
    const pid = await runningPid();
    r = await act({ powerReset: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'On');
    assert.equal(await bmcPower(), 'Chassis Power is on');
    await runningPid(pid); // reset restarted the machine
    r = await act({ powerOff: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
    assert.equal(await bmcPower(), 'Chassis Power is off');
    r = await act({ powerStatus: {} });
    assert.equal(r.body.powerState, 'Off');
  });

  it('wrong IPMI credentials: IPMI_AUTH_FAILED naming the step, the machine stays off; fixed credentials make the chassis usable again', async () => {
    await act({ powerOff: {} }); // whatever the case before left
    let r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPassword: 'wrong-pass' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    try {
      r = await act({ powerOn: {} });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.code, 'IPMI_AUTH_FAILED');
      assert.match(r.body.message, /^powerOn: /);
      assert.equal(await bmcPower(), 'Chassis Power is off');
    } finally {
      r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPassword: bmcPw });
      assert.equal(r.status, 200);
    }
    r = await act({ powerStatus: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
    assert.equal((await chassis()).status, 'Available');
  });

  it('an unreachable BMC: BMC_UNREACHABLE naming the step; the chassis is usable again at the right address', async () => {
    let r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: await freePort() });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    try {
      const t0 = Date.now();
      r = await act({ powerOn: {} });
      t.unreachableSec = (Date.now() - t0) / 1000;
      assert.equal(r.status, 502, JSON.stringify(r.body));
      assert.equal(r.body.code, 'BMC_UNREACHABLE');
      assert.match(r.body.message, /^powerOn: /);
    } finally {
      r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: bmcPort });
      assert.equal(r.status, 200);
    }
    r = await act({ powerStatus: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
    assert.equal(await bmcPower(), 'Chassis Power is off');
  });

  // provisioning (baremetal-instances): two machines at once; the second made and inspected here
  let key: { priv: string; pubKey: string };
  const insts: any[] = [];
  const inGuest = (ip: string, cmd: string): Promise<string> => sshRun({ host: ip, key: key.priv, cmd, timeoutMs: 300_000 });
  const inst = async (i: number): Promise<any> => (await api.get(`/v1/baremetal-instances/${insts[i].uuid}`)).body;
  const instAct = async (i: number, body: unknown) => settle(api, await api.post(`/v1/baremetal-instances/${insts[i].uuid}/actions`, body));

  it('two machines provisioned at once from the test guest image boot from their own disks (PXE off) and answer SSH with the injected key on their assigned addresses', async () => {
    const work = await tmpDir('bm-prov', cleanup);
    key = await makeSshKey(join(work, 'keys'));
    const img = await guestImage();
    const bs = await ok(api, '/v1/backup-storage', { name: 'bm-bs', hostname: '127.0.0.1', url: join(work, 'bs') });
    await ok(api, `/v1/zones/${cloud.ids.zone}/actions`, { attachBackupStorage: { backupStorageUuid: bs.uuid } });
    const image = await ok(api, '/v1/images', { name: 'bm-guest', url: `file://${img.qcow2}`, format: 'qcow2', backupStorageUuids: [bs.uuid] });
    await aio('add-baremetal', '2');
    const ch2 = (await api.get('/v1/baremetal-chassis?q=name=aio-bm-2')).body.inventories[0];
    await ok(api, `/v1/baremetal-chassis/${ch2.uuid}/actions`, { inspect: { timeoutSec: 300 } });
    const t0 = Date.now();
    const rs = await Promise.all([ch, ch2].map((c, i) => api.post('/v1/baremetal-instances', { name: `bm${i + 1}`, chassisUuid: c.uuid, imageUuid: image.uuid, sshKey: key.pubKey })));
    const jobs = await Promise.all(rs.map((r) => settle(api, r)));
    t.provisionTwoSec = (Date.now() - t0) / 1000;
    for (const j of jobs) assert.equal(j.state, 'Succeeded', JSON.stringify(j.error ?? j));
    for (const j of jobs) insts.push(j.result);
    for (const [i, n] of [1, 2].entries()) {
      const x = await inst(i);
      assert.equal(x.state, 'Running', JSON.stringify(x));
      const c = (await api.get(`/v1/baremetal-chassis/${x.chassisUuid}`)).body;
      assert.equal(c.status, 'Provisioned');
      // PXE off: the BMC boots the machine from its disk
      assert.notEqual(readFileSync(join(cloud.machineDir(n), 'boot.dev'), 'utf8').trim(), 'pxe');
      // the BMC starts QEMU in the background after the flow's reset: wait for it
      assert.match(readFileSync(`/proc/${await runningPid(undefined, cloud.machineDir(n))}/cmdline`, 'utf8'), /-boot\0order=c/);
      assert.equal((await inGuest(x.ip, 'hostname')).trim(), x.hostname);
      assert.match(await inGuest(x.ip, 'ip -4 addr show eth0'), new RegExp(`inet ${x.ip.replace(/\./g, '\\.')}/`));
    }
    if (insts[0].phases) t.phases = insts[0].phases;
  });

  it('stop / start / reboot through IPMI change the power state the BMC reports', async () => {
    const bm1 = cloud.machineDir(1);
    let j = await instAct(0, { stop: {} });
    assert.equal(j.state, 'Succeeded', JSON.stringify(j));
    assert.equal(await bmcPower(), 'Chassis Power is off');
    assert.equal((await inst(0)).state, 'Stopped');
    j = await instAct(0, { start: {} });
    assert.equal(j.state, 'Succeeded', JSON.stringify(j));
    assert.equal(await bmcPower(), 'Chassis Power is on');
    assert.equal((await inst(0)).state, 'Running');
    const pid = await runningPid();
    j = await instAct(0, { reboot: {} });
    assert.equal(j.state, 'Succeeded', JSON.stringify(j));
    assert.equal(await bmcPower(), 'Chassis Power is on');
    await runningPid(pid);
    // it comes back from its disk
    assert.equal((await inGuest((await inst(0)).ip, 'hostname')).trim(), (await inst(0)).hostname);
    void bm1;
  });

  it('reinstall gives a fresh system: a marker written onto the disk before is gone', async () => {
    const ip = (await inst(0)).ip;
    // the test guest runs from its initramfs (the disk is its boot medium only): the marker goes
    // onto the disk itself, into the gap after the MBR that the image's own bytes cover
    await inGuest(ip, 'printf TSTACK-OLD-SYSTEM | dd of=/dev/vda bs=512 seek=1 conv=notrunc 2>/dev/null; sync; dd if=/dev/vda bs=512 skip=1 count=1 2>/dev/null | grep -c TSTACK-OLD-SYSTEM');
    const t0 = Date.now();
    const j = await instAct(0, { reinstall: {} });
    t.reinstallSec = (Date.now() - t0) / 1000;
    assert.equal(j.state, 'Succeeded', JSON.stringify(j));
    assert.equal((await inst(0)).state, 'Running');
    assert.equal((await inGuest(ip, 'dd if=/dev/vda bs=512 skip=1 count=1 2>/dev/null | grep -c TSTACK-OLD-SYSTEM || true')).trim(), '0');
  });

  it('deleting the instances wipes and frees the chassis (powered off)', async () => {
    // both at once, as they were provisioned: each wipe is a ramdisk boot of its own machine
    const jobs = await Promise.all(insts.map(async (x) => settle(api, await api.del(`/v1/baremetal-instances/${x.uuid}`))));
    for (const j of jobs) assert.equal(j.state, 'Succeeded', JSON.stringify(j));
    assert.equal((await chassis()).status, 'Available');
    assert.equal(await bmcPower(), 'Chassis Power is off');
  });

  it('scripts/aio remove-baremetal deletes the chassis and stops the BMC; deleting the PXE server removes its namespace', async () => {
    await aio('remove-baremetal', '1');
    assert.equal((await api.get('/v1/baremetal-chassis?q=name=aio-bm-1')).body.inventories.length, 0);
    // the PXE server's delete removes its namespace from the host (also when a reconcile pass was in flight)
    const srv = (await api.get('/v1/baremetal-pxe-servers')).body.inventories[0];
    assert.ok(srv.namespace, JSON.stringify(srv));
    const d = await settle(api, await api.del(`/v1/baremetal-pxe-servers/${srv.uuid}`));
    assert.equal(d.state, 'Succeeded', JSON.stringify(d));
    await new Promise((r) => setTimeout(r, 4_000)); // one reconcile period
    assert.equal(await netnsExists(srv.namespace), false, `${srv.namespace} is gone`);
    await assert.rejects(exec('ipmitool', ['-I', 'lanplus', '-C', '3', '-E', '-N', '1', '-R', '1', '-H', '127.0.0.1', '-p', String(bmcPort), '-U', 'admin', 'chassis', 'power', 'status'], { env: { IPMI_PASSWORD: bmcPw }, timeoutMs: 30_000 }));
  });
});
