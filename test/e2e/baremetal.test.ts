// Bare metal through a whole cloud: a controller with the bare-metal module, this machine added
// as host aio-host over its own sshd (agents deployed from this tree), and a "bare-metal server"
// made the way a newcomer makes one — `scripts/aio add-baremetal` against this controller (every
// name, address and path of it moved to the run's own: a QEMU machine behind ipmi_sim on
// 127.0.0.1, its NIC on a provisioning bridge, the provisioning L2 and the zone's PXE server
// created, the chassis registered by its IPMI address). Then through the API: a PXE timeout, the
// inspection (hardware = the QEMU command line), power on/reset/off as the BMC reports them, wrong
// IPMI credentials and an unreachable BMC — every failure names its step and leaves the chassis
// powered off and usable. One bring-up for the file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { exec } from '../../shared/exec.js';
import { useCleanup } from '../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { REPO_ROOT } from '../harness/guest.js';
import { ensureLibvirt } from '../harness/libvirt.js';
import { deleteLink, deleteNetns, netnsExists } from '../harness/net.js';
import { runId, tmpDir } from '../harness/tmp.js';
import { freePort } from '../harness/ports.js';
import { SIM_MACHINE } from '../harness/baremetal.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout } from '../integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { baremetalModule } from '../../controller/baremetal/module.js';

/** A job's final state (long operations answer 202 + job; polled, not held on one connection). */
async function settle(api: ApiClient, r: { status: number; body: any }, timeoutMs = 900_000): Promise<any> {
  if (r.status !== 202) return { state: r.status < 300 ? 'Succeeded' : 'Failed', result: r.body, error: r.body, status: r.status };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const j = await api.get(`/v1/jobs/${r.body.jobUuid}`);
    if (j.body.state !== 'Running') return j.body;
    if (Date.now() > deadline) throw new Error(`job ${r.body.jobUuid} still running`);
    await new Promise((res) => setTimeout(res, 500));
  }
}
async function ok(api: ApiClient, path: string, body: unknown): Promise<any> {
  const j = await settle(api, await api.post(path, body));
  assert.equal(j.state, 'Succeeded', `${path}: ${JSON.stringify(j.error ?? j)}`);
  return j.result;
}

describe('e2e: bare metal (chassis, PXE server, inspection, IPMI) with a machine from scripts/aio add-baremetal', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  const rid = runId();
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  let c: TestController;
  let api: ApiClient;
  let aioEnv: Record<string, string>;
  let ch: any;
  let bmcPort: number;
  let bmcPw: string;
  let bmDir: string;
  const t: Record<string, number> = {};
  const aio = (...args: string[]) => exec(join(REPO_ROOT, 'scripts/aio'), args, { env: aioEnv, timeoutMs: 300_000 });
  const chassis = async (): Promise<any> => (await api.get(`/v1/baremetal-chassis/${ch.uuid}`)).body;
  const act = (body: unknown) => api.post(`/v1/baremetal-chassis/${ch.uuid}/actions`, body);
  /** What the BMC itself says, asked with ipmitool directly (not through tstack). */
  const bmcPower = async (): Promise<string> =>
    (await exec('ipmitool', ['-I', 'lanplus', '-C', '3', '-E', '-H', '127.0.0.1', '-p', String(bmcPort), '-U', 'admin', 'chassis', 'power', 'status'], { env: { IPMI_PASSWORD: bmcPw }, timeoutMs: 30_000 })).stdout.trim();
  const qemuPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(bmDir, 'qemu.pid'), 'utf8'));
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  };

  before(async () => {
    const t0 = Date.now();
    await ensureLibvirt();
    const tree = await builtTree();
    const sshKey = authorizedKey(cleanup, 'baremetal');
    const layout = await tempLayout(cleanup);
    const ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    c = await testController(cleanup, {
      modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, listenHost: '127.0.0.1', pingIntervalMs: 5_000, autoReconnectMs: 5_000 } }), baremetalModule()],
      reconcile: { periodMs: 3_000, baseBackoffMs: 500, maxBackoffMs: 3_000 },
    } as never);
    api = await c.login('admin', c.adminPassword);
    // the names scripts/aio add-baremetal looks for
    const zone = await ok(api, '/v1/zones', { name: 'aio-zone' });
    const cluster = await ok(api, '/v1/clusters', { name: 'aio-cluster', zoneUuid: zone.uuid });
    await ok(api, '/v1/hosts', { name: 'aio-host', clusterUuid: cluster.uuid, managementIp: '127.0.0.1', username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' });
    t.cloudSec = (Date.now() - t0) / 1000;

    const dir = await tmpDir('aio-bm', cleanup);
    aioEnv = {
      AIO_DATA_DIR: join(dir, 'data'),
      AIO_ETC_DIR: join(dir, 'etc'),
      AIO_LOG_DIR: join(dir, 'log'),
      AIO_RUN_DIR: join(dir, 'run'),
      AIO_CONTROLLER_LISTEN: `127.0.0.1:${new URL(c.url).port}`,
      TSTACK_ADMIN_PASSWORD: c.adminPassword,
      AIO_PXE_NET: net,
      AIO_PXE_BRIDGE: `${rid}pxb`,
      AIO_PXE_NIC: `${rid}pxn`,
      AIO_BM_TAP_PREFIX: `${rid}bm`,
      AIO_BM_PORT_BASE: String((await freePort()) - 1),
      AIO_BAREMETAL_IMAGES: join(layout.dataDir, 'vrouteragent', 'baremetal', 'images'),
      AIO_BM_MEM: '256',
      AIO_BM_CPUS: '2',
      AIO_BM_DISK: '1G',
    };
    bmDir = join(dir, 'data', 'baremetal', 'bm1');
    cleanup.add(async () => {
      await deleteLink(`${rid}pxb`);
      await deleteLink(`${rid}pxn`);
    }, 'provisioning bridge and veth');
    cleanup.add(async () => {
      const srv = (await api.get('/v1/baremetal-pxe-servers')).body.inventories?.[0];
      if (srv) {
        await settle(api, await api.del(`/v1/baremetal-pxe-servers/${srv.uuid}`));
        await deleteNetns(srv.namespace ?? `tsflat-p-${String(srv.uuid).replace(/-/g, '')}`);
      }
    }, 'PXE server');
    cleanup.add(async () => void (await exec(SIM_MACHINE, ['stop', bmDir], { timeoutMs: 20_000 }).catch(() => undefined)), 'bare-metal machine');
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
    assert.equal(bmcPort, Number(aioEnv.AIO_BM_PORT_BASE) + 1);
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
    const tap = `${rid}bm1`;
    await exec('ip', ['link', 'set', tap, 'nomaster']);
    try {
      const t0 = Date.now();
      const j = await settle(api, await act({ inspect: { timeoutSec: 10 } }));
      t.pxeTimeoutSec = (Date.now() - t0) / 1000;
      assert.equal(j.state, 'Failed', JSON.stringify(j));
      assert.equal(j.error.code, 'PXE_TIMEOUT', JSON.stringify(j.error));
      assert.match(j.error.message, /^inspect: no report from the inspection ramdisk within 10 s/);
    } finally {
      await exec('ip', ['link', 'set', tap, 'master', `${rid}pxb`]);
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
    const pid = qemuPid();
    assert.ok(pid);
    r = await act({ powerReset: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'On');
    assert.equal(await bmcPower(), 'Chassis Power is on');
    assert.notEqual(qemuPid(), pid, 'reset restarted the machine');
    r = await act({ powerOff: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
    assert.equal(await bmcPower(), 'Chassis Power is off');
    r = await act({ powerStatus: {} });
    assert.equal(r.body.powerState, 'Off');
  });

  it('wrong IPMI credentials: IPMI_AUTH_FAILED naming the step, the machine stays off; fixed credentials make the chassis usable again', async () => {
    let r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPassword: 'wrong-pass' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    r = await act({ powerOn: {} });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.code, 'IPMI_AUTH_FAILED');
    assert.match(r.body.message, /^powerOn: /);
    assert.equal(await bmcPower(), 'Chassis Power is off');
    r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPassword: bmcPw });
    assert.equal(r.status, 200);
    r = await act({ powerStatus: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
    assert.equal((await chassis()).status, 'Available');
  });

  it('an unreachable BMC: BMC_UNREACHABLE naming the step; the chassis is usable again at the right address', async () => {
    let r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: await freePort() });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const t0 = Date.now();
    r = await act({ powerOn: {} });
    t.unreachableSec = (Date.now() - t0) / 1000;
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.code, 'BMC_UNREACHABLE');
    assert.match(r.body.message, /^powerOn: /);
    r = await api.put(`/v1/baremetal-chassis/${ch.uuid}`, { ipmiPort: bmcPort });
    assert.equal(r.status, 200);
    r = await act({ powerStatus: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.powerState, 'Off');
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
