// The first real cloud, end to end through the REST API (and the CLI for a few steps), everything
// real: a controller (temp SQLite), this machine added as a host over its own sshd (agents
// deployed into a temp layout on free ports), the guest image added by URL from a test HTTP
// server, an L2 on a test bridge, a flat L3, two tiny VMs (qemu/TCG) that boot, get their
// addresses by DHCP, run user-data from the metadata service and answer SSH from the host side
// of the bridge; lifecycle; destroy/recover/expunge; fault injection in the create flow.
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import { randomInt } from 'node:crypto';
import { exec } from '../../shared/exec.js';
import { useCleanup } from '../harness/cleanup.js';
import { expungeCloud, removeControllerKey } from '../harness/cloud-teardown.js';
import { testController, type TestController } from '../harness/controller.js';
import { ApiClient } from '../harness/controller.js';
import { guestImage, makeSshKey, sshRun, waitForSerial, REPO_ROOT } from '../harness/guest.js';
import { ensureLibvirt, virsh } from '../harness/libvirt.js';
import { createBridge, deleteLink } from '../harness/net.js';
import { runId, tmpDir } from '../harness/tmp.js';
import { agentPid, authorizedKey, builtTree, freePorts, killAgents, tempLayout, pkgCache } from '../integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { ipNamespace } from '../../controller/allocator/ip.js';
import type { HostLayout } from '../../controller/host/render.js';
import { monitoringModule } from '../../controller/monitoring/module.js';
import { identityModule } from '../../controller/identity/module.js';
import { freePort } from '../harness/ports.js';

const MiB = 1024 * 1024;

/** Wait for a job and return it (the job view). */
async function waitJob(api: ApiClient, jobUuid: string, timeoutMs = 600_000, seen?: number[]): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await api.get(`/v1/jobs/${jobUuid}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (typeof r.body.progress === 'number') seen?.push(r.body.progress);
    if (r.body.state !== 'Running') return r.body;
    if (Date.now() > deadline) throw new Error(`job ${jobUuid} still running: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** POST …?wait=true and insist on success. */
async function ok(api: ApiClient, path: string, body: unknown, method: 'post' | 'del' = 'post'): Promise<any> {
  const sep = path.includes('?') ? '&' : '?';
  const r = method === 'post' ? await api.post(`${path}${sep}wait=true`, body) : await api.del(`${path}${sep}wait=true`);
  assert.ok(r.status === 200 || r.status === 201, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Poll `fn` until it gives a value. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const domainExists = async (uuid: string): Promise<boolean> => (await virsh(['list', '--all', '--name'])).split('\n').some((l) => l.trim() === `tstack-${uuid}`);

/** All files below a directory (relative paths). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), join(rel, e.name));
      else out.push(join(rel, e.name));
    }
  };
  walk(dir, '');
  return out.sort();
}

/** Text of every file under the vrouteragent's flat state (DHCP hosts, metadata records). */
function flatState(layout: HostLayout): string {
  const base = layout.dataDir;
  return filesUnder(base)
    // dnsmasq's files by the names it reads (links to a generation, `<name>.0|1`, which alternates)
    .filter((f) => /flat/.test(f) && !/\.(pid|log|sock)$/.test(f) && !/lease/.test(f) && !/(^|\/)(dhcp-hosts|dhcp-opts|hosts|servers)\.[01]$/.test(f))
    .map((f) => `${f}\n${readFileSync(join(base, f), 'utf8')}`)
    .join('\n');
}

describe('e2e: the first real cloud', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  const rid = runId();
  const bridge = `${rid}cbr`;
  const dummy = `${rid}cd0`;
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  let c: TestController;
  let api: ApiClient;
  let layout: HostLayout;
  let psDir: string;
  let bsDir: string;
  let key: { priv: string; pubKey: string };
  let imageServer: Server;
  const ids: Record<string, string> = {};
  const vms: Record<string, any> = {};
  const vmUuids: string[] = [];
  let startCtl: (dataDir?: string, listenPort?: number) => Promise<void>;

  before(async function () {
    await ensureLibvirt();
    const img = await guestImage();
    const tree = await builtTree();
    const sshKey = authorizedKey(cleanup, 'cloud');
    layout = await tempLayout(cleanup);
    const ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    // VM domains of this run, even when a test failed half-way
    cleanup.add(async () => {
      for (const u of vmUuids) {
        await virsh(['destroy', `tstack-${u}`]).catch(() => undefined);
        await virsh(['undefine', `tstack-${u}`]).catch(() => undefined);
      }
    }, 'VM domains');
    // the test network: a bridge with the host's address, a dummy NIC as the L2's interface
    await createBridge(bridge, cleanup);
    await exec('ip', ['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    // no dummy driver everywhere: a veth pair whose other end stays unused
    await exec('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', `${rid}cd1`]);
    cleanup.add(() => deleteLink(dummy), `veth ${dummy}`);
    const work = await tmpDir('cloud', cleanup);
    psDir = join(work, 'ps');
    bsDir = join(work, 'bs');
    mkdirSync(psDir);
    mkdirSync(bsDir);
    key = await makeSshKey(join(work, 'keys'));
    // the image server: plain HTTP on loopback
    imageServer = createServer((req, res) => {
      const file = req.url === '/tinyguest.qcow2' ? img.qcow2 : req.url === '/tinyguest.iso' ? img.iso : undefined;
      if (!file) {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader('content-length', String(statSync(file).size));
      createReadStream(file).pipe(res);
    });
    await new Promise<void>((r) => imageServer.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => imageServer.close(() => r())), 'image server');
    const promPort = await freePort();
    // fresh module instances each time: the monitoring test restarts the controller (same data
    // dir and port). Short metric intervals through configuration: agent sampling 2 s,
    // Prometheus scrape 2 s, alarm evaluation 2 s; deliveries: 3 attempts, 4 s then 8 s apart.
    startCtl = async (dataDir?: string, listenPort?: number) => {
      c = await testController(cleanup, {
        modules: [
          cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, packageCacheDir: pkgCache(tree), listenHost: '127.0.0.1', pingIntervalMs: 5_000, agentExtra: { kvmagent: { metricsIntervalMs: 2_000 } } } }),
          monitoringModule({ prometheus: { port: promPort, scrapeInterval: '2s' }, alarmIntervalMs: 2_000, delivery: { pollMs: 250, backoffMs: 4_000, maxAttempts: 3 } }),
          identityModule({ repairPeriodMs: 0 }),
        ],
        // a short periodic pass: the repair test below waits for it
        reconcile: { periodMs: 3_000, baseBackoffMs: 500, maxBackoffMs: 3_000 },
        ...(dataDir ? { dataDir } : {}),
        ...(listenPort ? { listenPort } : {}),
      } as never);
      api = await c.login('admin', c.adminPassword);
      // everything the cloud made on the host, even after a failure: every VM and network the API
      // lists. Added after each start so that it runs (LIFO) before the running controller's stop:
      // registered once, it ran after a restarted controller had stopped ("fetch failed") and the
      // L3's tsflat-<uuid> namespace was left on the machine. Only the latest registration runs.
      cleanup.add(async () => {
        if (expunged) return;
        expunged = true;
        await expungeCloud(api);
      }, 'cloud resources');
    };
    let expunged = false;
    await startCtl();
    // adding the host authorizes the controller's own key (for reconnects): take it away again
    cleanup.add(() => removeControllerKey(c.dataDir), "controller key in root's authorized_keys");
    Object.assign(globalThis, { __cloudKey: sshKey });
  });

  it('builds the cloud as the wizard does: zone → cluster → host over SSH → image store → primary storage → offering → image → L2 → L3', async () => {
    ids.zone = (await ok(api, '/v1/zones', { name: `${rid}-zone` })).uuid;
    ids.cluster = (await ok(api, '/v1/clusters', { name: `${rid}-cluster`, zoneUuid: ids.zone })).uuid;
    const sshKey = (globalThis as any).__cloudKey as { privateKey: string };
    // a job, not ?wait=true: deploying the agents can outlast an HTTP response timeout on a busy machine
    const add = await api.post('/v1/hosts', { name: `${rid}-host`, clusterUuid: ids.cluster, managementIp: '127.0.0.1', username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' });
    assert.equal(add.status, 202, JSON.stringify(add.body));
    const addJob = await waitJob(api, add.body.jobUuid);
    assert.equal(addJob.state, 'Succeeded', JSON.stringify(addJob));
    const host = (await api.get(`/v1/hosts/${addJob.result.uuid}`)).body;
    assert.equal(host.status, 'Connected');
    assert.equal(host.virtType, 'qemu');
    ids.host = host.uuid;
    const bs = await ok(api, '/v1/backup-storage', { name: `${rid}-bs`, hostname: '127.0.0.1', url: bsDir });
    assert.equal(bs.status, 'Connected');
    assert.ok(bs.totalCapacity > 0);
    ids.bs = bs.uuid;
    await ok(api, `/v1/zones/${ids.zone}/actions`, { attachBackupStorage: { backupStorageUuid: ids.bs } });
    ids.ps = (await ok(api, '/v1/primary-storage', { name: `${rid}-ps`, zoneUuid: ids.zone, type: 'LocalStorage', url: psDir })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ids.ps } });
    const ps = (await api.get(`/v1/primary-storage/${ids.ps}`)).body;
    assert.equal(ps.status, 'Connected');
    assert.ok(ps.totalCapacity > 0 && ps.availableCapacity > 0, JSON.stringify(ps));
    ids.offering = (await ok(api, '/v1/instance-offerings', { name: `${rid}-tiny`, cpuNum: 1, memorySize: 192 * MiB })).uuid;
    ids.disk = (await ok(api, '/v1/disk-offerings', { name: `${rid}-disk`, diskSize: 64 * MiB })).uuid;
    // the image by URL: a job with progress
    const addr = imageServer.address() as AddressInfo;
    const r = await api.post('/v1/images', { name: `${rid}-tinyguest`, url: `http://127.0.0.1:${addr.port}/tinyguest.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const progress: number[] = [];
    const job = await waitJob(api, r.body.jobUuid, 600_000, progress);
    assert.equal(job.state, 'Succeeded', JSON.stringify(job));
    assert.equal(job.progress, 100);
    const image = (await api.get(`/v1/images/${job.result.uuid}`)).body;
    assert.equal(image.status, 'Ready');
    assert.ok(image.size > 0);
    assert.equal(image.backupStorageRefs[0].backupStorageUuid, ids.bs);
    assert.ok(existsSync(image.backupStorageRefs[0].installPath), 'the image is in the image store directory');
    ids.image = image.uuid;
    // a bad URL fails the job and leaves no image
    const bad = await api.post('/v1/images?wait=true', { name: `${rid}-bad`, url: `http://127.0.0.1:${addr.port}/missing.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] });
    assert.ok(bad.status >= 400, JSON.stringify(bad.body));
    assert.equal((await api.get(`/v1/images?q=name=${rid}-bad&count=true`)).body.total, 0);
    // networks: the L2 uses the test bridge (tag) with a dummy NIC; the flat L3 with a range
    ids.l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2`, zoneUuid: ids.zone, physicalInterface: dummy, tags: [`bridgeName::${bridge}`] })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    const master = JSON.parse((await exec('ip', ['-j', 'link', 'show', dummy])).stdout)[0].master;
    assert.equal(master, bridge, 'the L2 NIC is in the bridge on the host');
    ids.l3 = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3`, l2NetworkUuid: ids.l2, dnsDomain: 'cloud.test' })).uuid;
    await ok(api, '/v1/ip-ranges', { l3NetworkUuid: ids.l3, startIp: `${net}.10`, endIp: `${net}.60`, netmask: '255.255.255.0', gateway: `${net}.1` });
    // the CLI sees the same cloud
    const cli = await exec(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'controller/cli/main.ts'), 'l3-networks', 'list', '-o', 'json'], { env: { ...process.env, TSTACK_URL: c.url, TSTACK_TOKEN: api.token! }, timeoutMs: 120_000 });
    assert.ok(cli.stdout.includes(ids.l3), cli.stdout);
  });

  const userData = (tag: string): string => `#!/bin/sh\necho "USERDATA-${tag}-RAN"\necho ${tag} > /root/userdata-ran\n`;

  it('creates two VMs with user-data and an SSH key: they boot, get their IPs, run user-data and answer SSH from the host', async () => {
    const mk = (name: string, extra: Record<string, unknown>) =>
      ok(api, '/v1/vm-instances', { name, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], userData: userData(name), sshKey: key.pubKey, ...extra });
    // the first through the API, the second with a static IP and a data disk
    const p1 = mk(`${rid}-vm1`, {});
    const p2 = mk(`${rid}-vm2`, { staticIps: [{ l3NetworkUuid: ids.l3, ip: `${net}.50` }], dataDiskOfferingUuids: [ids.disk] });
    const [vm1, vm2] = await Promise.all([p1, p2]);
    vmUuids.push(vm1.uuid, vm2.uuid);
    vms.vm1 = vm1;
    vms.vm2 = vm2;
    for (const vm of [vm1, vm2]) {
      assert.equal(vm.state, 'Running');
      assert.equal(vm.hostUuid, ids.host);
      assert.equal(vm.vmNics.length, 1);
      assert.ok(await domainExists(vm.uuid));
    }
    assert.equal(vm2.vmNics[0].ip, `${net}.50`);
    assert.equal(vm2.allVolumes.length, 2);
    for (const [name, vm] of [[`${rid}-vm1`, vm1], [`${rid}-vm2`, vm2]] as const) {
      await waitForSerial(vm.serialLogPath, /TINYGUEST-READY/, 300_000);
      const line = await waitForSerial(vm.serialLogPath, /eth0 ip=/, 5_000);
      assert.ok(line.includes(`ip=${vm.vmNics[0].ip}`), `${name} got its assigned IP: ${line}`);
      await waitForSerial(vm.serialLogPath, new RegExp(`USERDATA-${name}-RAN`), 60_000);
      const out = await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'cat /root/userdata-ran; hostname', timeoutMs: 120_000 });
      assert.ok(out.includes(name), out);
    }
    const lsblk = await sshRun({ host: vm2.vmNics[0].ip, key: key.priv, cmd: 'cat /proc/partitions' });
    assert.ok(/vdb/.test(lsblk), `vm2 sees its data disk: ${lsblk}`);
  });

  // Issue 17 with a real guest. The receiver is an HTTP server on 127.0.0.1; while `refuse` is
  // set it answers alarm posts 503 (a receiver that is busy), so the alarm's delivery is still
  // queued when the controller is restarted below.
  const notes: Array<Record<string, any>> = [];
  const mon = { refuse: true, refused: 0, rx: '', down: '', alarm: '' };

  it('monitoring: a guest burning CPU shows in CPUAverageUsedUtilization; a GreaterThan 30 alarm posts through its topic once across a controller restart; host, memory, disk and network metrics; a down endpoint is retried, then Failed', async () => {
    const vm = vms.vm1;
    const rx = createServer((req, res) => {
      let d = '';
      req.on('data', (b: Buffer) => (d += b.toString()));
      req.on('end', () => {
        const body = JSON.parse(d) as Record<string, any>;
        if (body.type === 'alarm' && mon.refuse) {
          mon.refused++;
          res.writeHead(503).end();
          return;
        }
        notes.push(body);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => rx.close(() => r())), 'notification receiver');
    mon.rx = (await ok(api, '/v1/sns-endpoints', { name: `${rid}-rx`, type: 'HTTP', url: `http://127.0.0.1:${(rx.address() as AddressInfo).port}/` })).uuid;
    // nothing listens there: every attempt is refused
    mon.down = (await ok(api, '/v1/sns-endpoints', { name: `${rid}-down`, type: 'HTTP', url: `http://127.0.0.1:${await freePort()}/` })).uuid;
    const topic = (await ok(api, '/v1/sns-topics', { name: `${rid}-ops` })).uuid;
    for (const e of [mon.rx, mon.down]) await ok(api, `/v1/sns-topics/${topic}/actions`, { subscribe: { endpointUuid: e } });
    const actions = [{ actionType: 'sns', actionUuid: topic }];
    await ok(api, '/v1/event-subscriptions', { name: `${rid}-vm-state`, namespace: 'ZStack/VM', eventName: 'VmStateChanged', actions });

    const metric = async (ns: string, name: string, labels: string): Promise<Array<{ time: number; value: number; labels: Record<string, string> }>> => {
      const r = await api.get(`/v1/metrics?namespace=${ns}&metricName=${name}&labels=${labels}&period=2&startTime=${Math.floor(Date.now() / 1000) - 20}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.data;
    };
    // the idle guest first (so the alarm below is the burn's doing): a guest that has just booted
    // can still be busy for a while (TCG, user-data), so wait for its latest sample to settle
    let lastIdle = NaN;
    const idle = await waitFor(
      'the idle guest below 30 % CPUAverageUsedUtilization',
      async () => {
        const p = (await metric('ZStack/VM', 'CPUAverageUsedUtilization', `VMUuid=${vm.uuid}`)).at(-1);
        if (p) lastIdle = p.value;
        return p && p.value < 30 ? p : undefined;
      },
      150_000,
    ).catch((e: unknown) => assert.fail(`${(e as Error).message} (last sample ${lastIdle} %)`));
    // the alarm only now: a guest still busy from its boot would otherwise fire it before the burn
    mon.alarm = (await ok(api, '/v1/alarms', { name: `${rid}-cpu`, namespace: 'ZStack/VM', metricName: 'CPUAverageUsedUtilization', comparisonOperator: 'GreaterThan', threshold: 30, period: 6, labels: [{ key: 'VMUuid', op: 'Equal', value: vm.uuid }], actions })).uuid;
    assert.equal(idle.labels.HostUuid, ids.host);
    const pid = (await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: "sh -c 'while :; do :; done' >/dev/null 2>&1 </dev/null & echo $!" })).trim();
    assert.match(pid, /^\d+$/);
    const t0 = Date.now();
    const busy = await waitFor('CPUAverageUsedUtilization > 30', async () => (await metric('ZStack/VM', 'CPUAverageUsedUtilization', `VMUuid=${vm.uuid}`)).find((p) => p.time * 1000 >= t0 && p.value > 30), 120_000);
    console.log(`      the burn shows after ${Math.round((Date.now() - t0) / 1000)} s (${busy.value.toFixed(0)} %)`);

    // host, memory, disk and network metrics of this VM and host
    for (const [ns, name, labels, letter] of [
      ['ZStack/Host', 'CPUAverageUsedUtilization', `HostUuid=${ids.host}`, ''],
      ['ZStack/Host', 'MemoryUsedInPercent', `HostUuid=${ids.host}`, ''],
      ['ZStack/VM', 'MemoryUsedBytes', `VMUuid=${vm.uuid}`, ''],
      ['ZStack/VM', 'DiskReadBytes', `VMUuid=${vm.uuid}`, 'DiskDeviceLetter'],
      ['ZStack/VM', 'DiskWriteOps', `VMUuid=${vm.uuid}`, 'DiskDeviceLetter'],
      ['ZStack/VM', 'NetworkInBytes', `VMUuid=${vm.uuid}`, 'NetworkDeviceLetter'],
      ['ZStack/VM', 'NetworkOutPackets', `VMUuid=${vm.uuid}`, 'NetworkDeviceLetter'],
    ] as const) {
      const pts = await metric(ns, name, labels);
      assert.ok(pts.length > 0, `${ns} ${name} ${labels}`);
      // disks by letter (vda → a), NICs by their host-side device name
      if (letter) assert.ok(pts.some((p) => (letter === 'DiskDeviceLetter' ? /^[a-z]+$/ : /^[A-Za-z0-9._-]+$/).test(p.labels[letter] ?? '')), `${name} has ${letter}: ${JSON.stringify(pts[0])}`);
    }
    assert.ok((await metric('ZStack/VM', 'MemoryUsedBytes', `VMUuid=${vm.uuid}`)).some((p) => p.value > 0));
    assert.ok((await metric('ZStack/VM', 'NetworkInBytes', `VMUuid=${vm.uuid}`)).length > 0);

    // the alarm fires; its first post is refused (503) and the delivery waits for a retry
    const alarmDelivery = async (): Promise<Record<string, any> | undefined> => (await api.get(`/v1/sns-deliveries?q=endpointUuid=${mon.rx}&q=sourceUuid=${mon.alarm}`)).body.inventories?.[0];
    await waitFor('the refused first post', async () => (mon.refused > 0 ? true : undefined), 60_000);
    const firing = (await api.get(`/v1/alarms/${mon.alarm}`)).body;
    assert.equal(firing.status, 'Alarm');
    const pending = await alarmDelivery();
    assert.equal(pending?.state, 'Pending', JSON.stringify(pending));

    // the controller restarts while the alarm fires (same data dir and port; Prometheus restarts with it)
    const dataDir = c.dataDir;
    const port = Number(new URL(c.url).port);
    await c.stop();
    mon.refuse = false;
    await startCtl(dataDir, port);
    const sent = await waitFor('the alarm notification', async () => notes.find((n) => n.type === 'alarm'), 60_000);
    assert.equal(sent.status, 'Alarm');
    assert.equal(sent.alarmUuid, mon.alarm);
    assert.equal(sent.labels.VMUuid, vm.uuid);
    assert.ok(sent.value > 30, JSON.stringify(sent));
    // several evaluations by the restarted controller (the first wait for a full period of samples)
    const evaluated = Date.now() + 16_000;
    await waitFor('evaluations after the restart', async () => (Date.now() > evaluated ? true : undefined), 30_000);
    const after = (await api.get(`/v1/alarms/${mon.alarm}`)).body;
    assert.equal(after.status, 'Alarm');
    assert.equal(after.transitionCount, firing.transitionCount, 'no new transition after the restart');
    assert.equal(notes.filter((n) => n.type === 'alarm').length, 1, 'sent once');
    const done = await alarmDelivery();
    assert.equal(done?.state, 'Succeeded', JSON.stringify(done));
    assert.ok(done.attempts >= 2, JSON.stringify(done));

    // the endpoint that is down: retried (4 s, 8 s apart), then Failed with the reason
    const failed = await waitFor('the Failed delivery', async () => (await api.get(`/v1/sns-deliveries?q=endpointUuid=${mon.down}&q=state=Failed`)).body.inventories?.[0] as Record<string, any> | undefined, 60_000);
    assert.equal(failed.attempts, 3);
    assert.match(String(failed.lastError), /fetch failed|ECONNREFUSED/);
    await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: `kill ${pid}` });
  });

  it('stop, start and reboot', async () => {
    const vm = vms.vm1;
    // through the CLI: it waits for the job and prints the VM
    const cliOut = await exec(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'controller/cli/main.ts'), 'vm-instances', 'stop', vm.uuid, '-o', 'json'], { env: { ...process.env, TSTACK_URL: c.url, TSTACK_TOKEN: api.token! }, timeoutMs: 180_000 });
    const stopped = JSON.parse(cliOut.stdout);
    assert.equal(stopped.state, 'Stopped', cliOut.stdout);
    assert.equal(await domainExists(vm.uuid), false);
    const started = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { start: {} });
    assert.equal(started.state, 'Running');
    const bootId = async (): Promise<string> => (await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'cat /proc/sys/kernel/random/boot_id', timeoutMs: 300_000 })).trim();
    const before = await bootId();
    assert.match(before, /^[0-9a-f-]{36}$/);
    const rebooted = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { reboot: {} });
    assert.equal(rebooted.state, 'Running');
    // a fresh boot has a new boot id (the old guest may still answer for a moment)
    const deadline = Date.now() + 300_000;
    let after = before;
    while (after === before && Date.now() < deadline) {
      after = await bootId().catch(() => before);
      if (after === before) await new Promise((r) => setTimeout(r, 2_000));
    }
    assert.notEqual(after, before, 'the guest rebooted: its boot id changed');
    const con = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    assert.equal(con.protocol, 'vnc');
    assert.match(con.url, /^\/v1\/console\/[A-Za-z0-9_-]{43}$/);
    assert.ok(Date.parse(con.expiresAt) > Date.now());
  });

  it('monitoring: the VmStateChanged subscription received the stop; the audit log holds the VM\'s create and stop with the account', async () => {
    const vm = vms.vm1;
    const ev = await waitFor('the VmStateChanged notification', async () => notes.find((n) => n.eventName === 'VmStateChanged' && n.resourceUuid === vm.uuid && n.labels?.NewState === 'Stopped'), 30_000);
    assert.equal(ev.labels.VMUuid, vm.uuid);
    const audits = (await api.get(`/v1/audits?resourceUuid=${vm.uuid}`)).body.inventories as Array<Record<string, any>>;
    const mine = audits.filter((x) => x.apiName === 'vm-instances.create' || x.apiName === 'vm-instances.stop');
    assert.deepEqual([...new Set(mine.map((x) => x.apiName))].sort(), ['vm-instances.create', 'vm-instances.stop'], JSON.stringify(audits.map((x) => x.apiName)));
    for (const x of mine) {
      assert.equal(x.accountName, 'admin');
      assert.equal(x.resourceUuid, vm.uuid);
    }
  });

  it('pause/resume, data volume attach/detach (hot-plug), and a guest powering itself off becomes Stopped (kvmagent event)', async () => {
    const vm = vms.vm1;
    assert.equal((await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { pause: {} })).state, 'Paused');
    assert.match(await virsh(['domstate', `tstack-${vm.uuid}`]), /paused/);
    assert.equal((await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { resume: {} })).state, 'Running');
    // a volume made through the API is instantiated on the VM's primary storage when attached
    const vol = await ok(api, '/v1/volumes', { name: `${rid}-extra`, diskOfferingUuid: ids.disk });
    assert.equal(vol.status, 'NotInstantiated');
    await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { attachVolume: { volumeUuid: vol.uuid } });
    const attached = (await api.get(`/v1/volumes/${vol.uuid}`)).body;
    assert.equal(attached.status, 'Ready');
    assert.equal(attached.vmInstanceUuid, vm.uuid);
    const deadline = Date.now() + 60_000;
    let parts = '';
    while (Date.now() < deadline && !/vdb/.test(parts)) parts = await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'cat /proc/partitions' });
    assert.match(parts, /vdb/, 'the guest sees the hot-plugged disk');
    await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { detachVolume: { volumeUuid: vol.uuid } });
    assert.equal((await api.get(`/v1/volumes/${vol.uuid}`)).body.vmInstanceUuid, undefined);
    await ok(api, `/v1/volumes/${vol.uuid}`, undefined, 'del');
    assert.ok(!existsSync(attached.installPath), 'deleting the volume removed its file');
    // the guest powers off by itself: the kvmagent reports it, the VM becomes Stopped
    await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'poweroff' }).catch(() => undefined);
    const until = Date.now() + 120_000;
    let state = '';
    while (Date.now() < until && state !== 'Stopped') {
      state = (await api.get(`/v1/vm-instances/${vm.uuid}`)).body.state;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(state, 'Stopped');
    assert.equal((await c.store.claims(`host-capacity:${ids.host}`)).some((x) => x.key === vm.uuid), false, 'its host reservation is released');
    assert.equal((await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { start: {} })).state, 'Running');
    await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'true', timeoutMs: 300_000 });
  });

  it('destroy → recover → start', async () => {
    const vm = vms.vm2;
    const d = await ok(api, `/v1/vm-instances/${vm.uuid}`, undefined, 'del');
    assert.equal(d.state, 'Destroyed');
    assert.equal(await domainExists(vm.uuid), false);
    assert.equal((await api.get(`/v1/vm-instances/${vm.uuid}`)).body.state, 'Destroyed');
    const rec = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { recover: {} });
    assert.equal(rec.state, 'Stopped');
    const st = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { start: {} });
    assert.equal(st.state, 'Running');
    const out = await sshRun({ host: `${net}.50`, key: key.priv, cmd: 'cat /root/userdata-ran', timeoutMs: 300_000 });
    assert.ok(out.includes('vm2'));
  });

  it('an ISO image: the VM boots from the CD-ROM with an empty root disk, gets its IP and answers SSH; destroy + expunge', async () => {
    const addr = imageServer.address() as AddressInfo;
    const iso = await ok(api, '/v1/images', { name: `${rid}-iso`, url: `http://127.0.0.1:${addr.port}/tinyguest.iso`, format: 'iso', backupStorageUuids: [ids.bs] });
    assert.equal(iso.mediaType, 'ISO');
    assert.equal(iso.status, 'Ready');
    const noDisk = await api.post('/v1/vm-instances?wait=true', { name: `${rid}-isovm`, instanceOfferingUuid: ids.offering, imageUuid: iso.uuid, l3NetworkUuids: [ids.l3] });
    assert.equal(noDisk.status, 400, 'an ISO needs a root disk size');
    const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-isovm`, instanceOfferingUuid: ids.offering, imageUuid: iso.uuid, l3NetworkUuids: [ids.l3], rootDiskSize: 32 * MiB, sshKey: key.pubKey });
    vmUuids.push(vm.uuid);
    assert.equal(vm.state, 'Running');
    assert.match(await virsh(['dumpxml', `tstack-${vm.uuid}`]), /device='cdrom'/);
    await waitForSerial(vm.serialLogPath, /TINYGUEST-READY/, 300_000);
    const out = await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'cat /proc/partitions', timeoutMs: 120_000 });
    assert.match(out, /vda/, 'the empty root disk is there');
    await ok(api, `/v1/vm-instances/${vm.uuid}`, undefined, 'del');
    await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { expunge: {} });
    assert.equal(await domainExists(vm.uuid), false);
    await ok(api, `/v1/images/${iso.uuid}`, undefined, 'del');
    assert.equal((await api.get(`/v1/images/${iso.uuid}`)).status, 404);
  });

  /** The flat L3's state directory on the host and its dnsmasq (pid, namespace). */
  const flatDir = (): string => join(layout.dataDir, 'vrouteragent/vrouter/flat', ids.l3!.replace(/-/g, ''));
  const dnsmasqPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(flatDir(), 'dnsmasq.pid'), 'utf8').trim());
      return existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'dnsmasq' ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const until = async (what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<number> => {
    const t0 = Date.now();
    while (!(await cond())) {
      if (Date.now() - t0 > ms) assert.fail(`not within ${ms / 1000} s: ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return Date.now() - t0;
  };
  const REUSED = () => `${net}.40`;
  let reuseVm: any;
  const bootAndSsh = async (vm: any, ms = 300_000): Promise<void> => {
    const line = await waitForSerial(vm.serialLogPath, /eth0 ip=/, ms);
    assert.ok(line.includes(`ip=${vm.vmNics[0].ip}`), `${vm.name} got its assigned IP: ${line}`);
    const out = await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'hostname', timeoutMs: 120_000 });
    assert.ok(out.includes(vm.name), out);
  };

  it('create → expunge → create reuses the address: the new VM gets it by DHCP and answers SSH (5 times)', async () => {
    const create = async (i: number): Promise<any> => {
      const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-re${i}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], staticIps: [{ l3NetworkUuid: ids.l3, ip: REUSED() }], sshKey: key.pubKey });
      vmUuids.push(vm.uuid);
      assert.equal(vm.vmNics[0].ip, REUSED());
      return vm;
    };
    let prev = await create(0);
    await bootAndSsh(prev);
    for (let i = 1; i <= 5; i++) {
      const oldMac = String(prev.vmNics[0].mac).toLowerCase();
      await ok(api, `/v1/vm-instances/${prev.uuid}`, undefined, 'del');
      await ok(api, `/v1/vm-instances/${prev.uuid}/actions`, { expunge: {} });
      const vm = await create(i);
      assert.notEqual(String(vm.vmNics[0].mac).toLowerCase(), oldMac, 'a new MAC for the reused address');
      // the old MAC holds no lease on the host any more (dnsmasq would refuse the address otherwise)
      assert.doesNotMatch(readFileSync(join(flatDir(), 'leases'), 'utf8').toLowerCase(), new RegExp(oldMac));
      await bootAndSsh(vm);
      prev = vm;
    }
    reuseVm = prev;
  });

  it('the periodic pass repairs a killed dnsmasq, a deleted namespace and a deleted lease file; a new VM then gets its address within 90 s', async () => {
    // the agent's own watchdog also converges (every 10 s); either way the host must come back
    const pid0 = dnsmasqPid();
    assert.ok(pid0, 'dnsmasq runs');
    process.kill(pid0, 'SIGKILL');
    await until('a new dnsmasq runs', () => dnsmasqPid() !== undefined && dnsmasqPid() !== pid0, 60_000);

    const ns = (await exec('ip', ['netns', 'identify', String(dnsmasqPid())])).stdout.trim();
    assert.ok(ns, 'dnsmasq runs in a named namespace');
    await exec('ip', ['netns', 'del', ns]);
    await until('the namespace is back with dnsmasq in it', async () => {
      const p = dnsmasqPid();
      if (p === undefined || !existsSync(`/run/netns/${ns}`)) return false;
      // the namespace may vanish and come back while we look
      return (await exec('ip', ['netns', 'identify', String(p)]).catch(() => ({ stdout: '' }))).stdout.trim() === ns;
    }, 60_000);

    rmSync(join(flatDir(), 'leases'));
    await until('the lease file is back', () => existsSync(join(flatDir(), 'leases')), 60_000);

    // the VM that ran through all this renews and still answers
    await sshRun({ host: reuseVm.vmNics[0].ip, key: key.priv, cmd: 'true', timeoutMs: 120_000 });
    const t0 = Date.now();
    const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-afterfix`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], sshKey: key.pubKey });
    vmUuids.push(vm.uuid);
    const line = await waitForSerial(vm.serialLogPath, /eth0 ip=/, 90_000 - (Date.now() - t0));
    assert.ok(line.includes(`ip=${vm.vmNics[0].ip}`), line);
    await sshRun({ host: vm.vmNics[0].ip, key: key.priv, cmd: 'true', timeoutMs: 120_000 });
    for (const v of [vm, reuseVm]) {
      await ok(api, `/v1/vm-instances/${v.uuid}`, undefined, 'del');
      await ok(api, `/v1/vm-instances/${v.uuid}/actions`, { expunge: {} });
    }
    const st = c.reconcile.status().filter((x) => x.area === 'flat');
    assert.ok(st.length > 0 && st.every((x) => x.lastAppliedAt !== undefined), JSON.stringify(st));
  });

  // Issue 18 with a real guest: vm2 is given to a tenant, whose user may only start/stop VMs;
  // a quota refuses a second VM; deleting the tenant takes vm2 off the host and frees its IP.
  it('tenancy: a user allowed vm-instances:start/stop stops the tenant\'s VM but may not delete it; vm.totalNum=1 refuses a second VM; deleting the account removes the VM from the host and releases its IP', async () => {
    const vm = vms.vm2;
    const t = await ok(api, '/v1/accounts', { name: `${rid}-tenant`, password: 'tenant-pw-123' });
    const moved = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { changeOwner: { accountUuid: t.uuid } });
    assert.deepEqual(moved.moved.map((m: { kind: string }) => m.kind).sort(), ['vm-instance', 'vm-nic', 'volume', 'volume']);
    const tenant = await c.login(`${rid}-tenant`, 'tenant-pw-123');
    const user = await ok(tenant, '/v1/users', { name: 'operator', password: 'operator-pw-123' });
    const pol = await ok(tenant, '/v1/policies', { name: 'start-stop', statements: [{ effect: 'Allow', actions: ['vm-instances:start', 'vm-instances:stop'] }] });
    await ok(tenant, `/v1/users/${user.uuid}/actions`, { attachPolicy: { policyUuid: pol.uuid } });
    const s = await c.anon.post('/v1/sessions', { accountName: `${rid}-tenant`, userName: 'operator', password: 'operator-pw-123' });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    const op = new ApiClient(c.url, s.body.token);
    const del = await op.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    assert.equal(del.status, 403, JSON.stringify(del.body));
    assert.equal((await ok(op, `/v1/vm-instances/${vm.uuid}/actions`, { stop: {} })).state, 'Stopped');
    assert.equal(await domainExists(vm.uuid), false);

    await ok(api, `/v1/accounts/${t.uuid}/actions`, { updateQuota: { name: 'vm.totalNum', value: 1 } });
    const second = await tenant.post('/v1/vm-instances?wait=true', { name: `${rid}-vm3`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
    assert.equal(second.status, 409, JSON.stringify(second.body));
    assert.match(second.body.message, /vm\.totalNum/);
    assert.equal((await tenant.get('/v1/vm-instances?count=true')).body.total, 1, 'the refused create left nothing');

    const nic = (await api.get(`/v1/vm-instances/${vm.uuid}`)).body.vmNics[0];
    const vols = (await api.get(`/v1/volumes?q=vmInstanceUuid=${vm.uuid}`)).body.inventories as any[];
    const gone = await ok(api, `/v1/accounts/${t.uuid}`, undefined, 'del');
    assert.equal(gone.uuid, t.uuid);
    assert.equal((await api.get(`/v1/vm-instances/${vm.uuid}`)).status, 404);
    assert.equal(await domainExists(vm.uuid), false);
    for (const v of vols) assert.ok(!existsSync(v.installPath), `volume file ${v.installPath} is gone`);
    assert.ok(!(await c.store.claims(ipNamespace(ids.l3))).some((x) => x.key === nic.ip), `IP ${nic.ip} released`);
    await until('the DHCP entry is gone from the host', () => !flatState(layout).toLowerCase().includes(nic.mac.toLowerCase()), 30_000);
    assert.equal((await c.anon.post('/v1/sessions', { accountName: `${rid}-tenant`, password: 'tenant-pw-123' })).status, 401);
  });

  it('expunge removes the domain, the volumes, the IPs and the DHCP entries (checked on the host)', async () => {
    // (vm2 went with its account in the tenancy test above, through the same expunge)
    for (const vm of [vms.vm1]) {
      const nic = (await api.get(`/v1/vm-instances/${vm.uuid}`)).body.vmNics[0];
      const vols = (await api.get(`/v1/volumes?q=vmInstanceUuid=${vm.uuid}`)).body.inventories as any[];
      assert.ok(vols.length >= 1);
      assert.ok(flatState(layout).toLowerCase().includes(nic.mac.toLowerCase()), 'the DHCP entry is on the host before');
      assert.ok((await c.store.claims('mac')).some((x) => x.key === nic.mac.toLowerCase()), 'the NIC holds its MAC before');
      await ok(api, `/v1/vm-instances/${vm.uuid}`, undefined, 'del');
      await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { expunge: {} });
      assert.equal((await api.get(`/v1/vm-instances/${vm.uuid}`)).status, 404);
      assert.equal(await domainExists(vm.uuid), false);
      for (const v of vols) {
        assert.equal((await api.get(`/v1/volumes/${v.uuid}`)).status, 404);
        assert.ok(!existsSync(v.installPath), `volume file ${v.installPath} is gone`);
      }
      const claims = await c.store.claims(ipNamespace(ids.l3));
      assert.ok(!claims.some((x) => x.key === nic.ip), `IP ${nic.ip} released`);
      assert.ok(!(await c.store.claims('mac')).some((x) => x.key === nic.mac.toLowerCase()), `MAC ${nic.mac} released`);
      await until('the DHCP entry is gone from the host', () => !flatState(layout).toLowerCase().includes(nic.mac.toLowerCase()), 30_000);
      assert.equal((await api.get(`/v1/vm-nics?q=vmInstanceUuid=${vm.uuid}&count=true`)).body.total, 0);
    }
  });

  it('a host that (re)connects gets the bridges of its cluster back', async () => {
    await exec('ip', ['link', 'set', 'dev', dummy, 'nomaster']);
    const host = await ok(api, `/v1/hosts/${ids.host}/actions`, { reconnect: {} });
    assert.equal(host.status, 'Connected');
    const deadline = Date.now() + 60_000;
    let master: string | undefined;
    while (Date.now() < deadline && master !== bridge) {
      master = JSON.parse((await exec('ip', ['-j', 'link', 'show', dummy])).stdout)[0].master;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(master, bridge, 'the L2 interface is back in its bridge');
  });

  for (const step of ['root-volume', 'dhcp', 'start']) {
    it(`fault injected at the ${step} step: the create fails and leaves no domain, volume, IP or DHCP entry`, async () => {
      const domainsBefore = (await virsh(['list', '--all', '--name'])).split('\n').filter((l) => l.startsWith('tstack-')).sort();
      const volsBefore = (await api.get('/v1/volumes')).body.total;
      const psFilesBefore = filesUnder(psDir).filter((f) => !f.includes('image'));
      const claimsBefore = (await c.store.claims(ipNamespace(ids.l3))).map((x) => x.key).sort();
      const macsBefore = (await c.store.claims('mac')).map((x) => x.key).sort();
      const flatBefore = flatState(layout);
      process.env.TSTACK_FAULT_INJECT = `vm-create:${step}`;
      let r;
      try {
        r = await api.post('/v1/vm-instances?wait=true', { name: `${rid}-fault-${step}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], dataDiskOfferingUuids: [ids.disk], userData: userData('fault'), sshKey: key.pubKey });
      } finally {
        delete process.env.TSTACK_FAULT_INJECT;
      }
      assert.equal(r.body.code, 'INJECTED_FAULT', JSON.stringify(r.body));
      assert.match(r.body.message, /rolled back/);
      assert.equal((await api.get(`/v1/vm-instances?q=name=${rid}-fault-${step}&count=true`)).body.total, 0, 'no VM record');
      assert.deepEqual((await virsh(['list', '--all', '--name'])).split('\n').filter((l) => l.startsWith('tstack-')).sort(), domainsBefore, 'no domain');
      assert.equal((await api.get('/v1/volumes')).body.total, volsBefore, 'no volume record');
      assert.deepEqual(filesUnder(psDir).filter((f) => !f.includes('image') && !f.startsWith('serial-')), psFilesBefore.filter((f) => !f.startsWith('serial-')), 'no volume file');
      assert.deepEqual((await c.store.claims(ipNamespace(ids.l3))).map((x) => x.key).sort(), claimsBefore, 'no IP');
      assert.deepEqual((await c.store.claims('mac')).map((x) => x.key).sort(), macsBefore, 'no MAC');
      await until('no DHCP entry or metadata record', () => flatState(layout) === flatBefore, 30_000);
      assert.equal((await c.store.claims(`host-capacity:${ids.host}`)).length, 0, 'no host capacity reservation');
    });
  }

  it('the image cache taken away behind the controller (which knows the host has it): the next create pulls it again and the VM boots', async () => {
    const isCache = (f: string): boolean => basename(f) === `${ids.image}.qcow2`;
    // a create first, so that the controller has just seen the host cache the image
    const warm = await ok(api, '/v1/vm-instances', { name: `${rid}-cachewarm`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
    vmUuids.push(warm.uuid);
    await ok(api, `/v1/vm-instances/${warm.uuid}`, undefined, 'del');
    await ok(api, `/v1/vm-instances/${warm.uuid}/actions`, { expunge: {} });
    const cached = filesUnder(psDir).filter(isCache);
    assert.equal(cached.length, 1, `the image is cached once: ${filesUnder(psDir).join(' ')}`);
    // moved, not deleted: the running VMs' backing file keeps its inode
    renameSync(join(psDir, cached[0]!), join(psDir, `moved-${ids.image}`));
    const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-recache`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], sshKey: key.pubKey });
    vmUuids.push(vm.uuid);
    assert.equal(vm.state, 'Running');
    assert.deepEqual(filesUnder(psDir).filter(isCache), cached, 'pulled into the cache again');
    await bootAndSsh(vm);
    await ok(api, `/v1/vm-instances/${vm.uuid}`, undefined, 'del');
    await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { expunge: {} });
  });

  it('kvmagent killed (SIGKILL) during a VM create: the job fails or completes cleanly and nothing is leaked', async () => {
    const domains = async (): Promise<string[]> => (await virsh(['list', '--all', '--name'])).split('\n').filter((l) => l.startsWith('tstack-')).sort();
    const domainsBefore = await domains();
    const volsBefore = (await api.get('/v1/volumes')).body.total;
    const claimsBefore = (await c.store.claims(ipNamespace(ids.l3))).map((x) => x.key).sort();
    const name = `${rid}-killed`;
    const r = await api.post('/v1/vm-instances', { name, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], userData: userData('killed'), sshKey: key.pubKey });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    // as soon as the domain shows up (vm/start is running), kill the kvmagent
    let uuid: string | undefined;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      uuid ??= (await api.get(`/v1/vm-instances?q=name=${name}`)).body.inventories[0]?.uuid;
      if (uuid && (await domainExists(uuid))) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(uuid, 'the create started');
    vmUuids.push(uuid);
    const pid = agentPid(layout, 'kvmagent');
    assert.ok(pid, 'kvmagent pid file');
    process.kill(pid, 'SIGKILL');
    // the operator (systemd, where it runs) brings it back: reconnect re-deploys the dead agent
    await ok(api, `/v1/hosts/${ids.host}/actions`, { reconnect: {} });
    const job = await waitJob(api, r.body.jobUuid, 600_000);
    if (job.state === 'Succeeded') {
      assert.equal(job.result.state, 'Running');
      await ok(api, `/v1/vm-instances/${uuid}`, undefined, 'del');
      await ok(api, `/v1/vm-instances/${uuid}/actions`, { expunge: {} });
    } else {
      assert.equal(job.error.details?.rollbackComplete, true, `rolled back completely: ${JSON.stringify(job.error)}`);
    }
    assert.equal((await api.get(`/v1/vm-instances/${uuid}`)).status, 404, 'no VM record');
    assert.deepEqual(await domains(), domainsBefore, 'no domain');
    assert.equal((await api.get('/v1/volumes')).body.total, volsBefore, 'no volume');
    assert.deepEqual((await c.store.claims(ipNamespace(ids.l3))).map((x) => x.key).sort(), claimsBefore, 'no IP');
    assert.equal((await c.store.claims(`host-capacity:${ids.host}`)).length, 0, 'no host reservation');
  });
});
