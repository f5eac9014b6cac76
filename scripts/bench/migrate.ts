// Benchmark: live migration through the tstack API (vm-instances action migrate: the vm-migrate
// flow — reserve, prepare the destination's bridges/DHCP/metadata, kvmagent vm/migrate, switch)
// against `virsh migrate --live --p2p` of the very same domain between the very same hosts.
//   scripts/bench/migrate [--runs N]        (default 3 rounds)
// Two hosts as in test/e2e/multihost.test.ts: this machine and a namespaced host (scripts/nshost)
// added over SSH, a shared-mount-point primary storage, one test guest. A round: tstack there and
// back, then virsh there and back (alternating; the VM's queue is held during the virsh moves so
// the controller does not react to the domain leaving). Each sample is the wall time of one move.
// Prints the samples, the medians, and as the last line `ratio: X` (tstack / virsh).
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { exec } from '../../shared/exec.js';
import { Cleanup } from '../../test/harness/cleanup.js';
import { testController, type ApiClient } from '../../test/harness/controller.js';
import { guestImage, waitForSerial } from '../../test/harness/guest.js';
import { ensureLibvirt } from '../../test/harness/libvirt.js';
import { createBridge, deleteLink } from '../../test/harness/net.js';
import { nsFabric, nsHostUp } from '../../test/harness/nshost.js';
import { runId, tmpDir } from '../../test/harness/tmp.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout } from '../../test/integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { median, runsFlag } from './stats.js';

const MiB = 1024 * 1024;
const RUNS = runsFlag(3);

async function ok(api: ApiClient, path: string, body: unknown): Promise<any> {
  const r = await api.post(`${path}${path.includes('?') ? '&' : '?'}wait=true`, body);
  if (r.status !== 200 && r.status !== 201) throw new Error(`${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function viaJob(api: ApiClient, path: string, body: unknown): Promise<any> {
  const r = await api.post(path, body);
  if (r.status !== 202) throw new Error(`${path}: ${r.status} ${JSON.stringify(r.body)}`);
  for (const end = Date.now() + 900_000; Date.now() < end; await new Promise((res) => setTimeout(res, 500))) {
    const j = await api.get(`/v1/jobs/${r.body.jobUuid}`);
    if (j.body.state === 'Succeeded') return j.body.result;
    if (j.body.state !== 'Running') throw new Error(JSON.stringify(j.body));
  }
  throw new Error(`job ${r.body.jobUuid} still running`);
}

async function main(): Promise<void> {
  const cleanup = new Cleanup();
  const onSignal = (): void => void cleanup.run().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await ensureLibvirt();
    const img = await guestImage();
    const tree = await builtTree();
    const rid = runId();
    const [bridge, nic] = [`${rid}bbr`, `${rid}bd0`];
    const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
    const sshKey = authorizedKey(cleanup, 'bench-migrate');
    const layout = await tempLayout(cleanup);
    const ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop host 1 agents');
    await createBridge(bridge, cleanup);
    await exec('ip', ['link', 'add', nic, 'type', 'veth', 'peer', 'name', `${rid}bd1`]);
    cleanup.add(() => deleteLink(nic), `veth ${nic}`);
    const fab = await nsFabric(cleanup, { links: [{ bridge, ifname: nic }], private: [layout.etcDir, layout.dataDir, layout.runDir, layout.logDir] });
    const h2 = await nsHostUp(fab, 2, cleanup);
    const work = await tmpDir('bench-migrate', cleanup);
    const shared = join(work, 'shared');
    const bsDir = join(work, 'bs');
    mkdirSync(shared);
    mkdirSync(bsDir);
    const c = await testController(cleanup, { listenHost: fab.ip(1), modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, listenHost: '0.0.0.0' }, ha: false })] } as never);
    cleanup.add(() => {
      const pub = join(c.dataDir, 'ssh', 'id_ed25519.pub');
      if (!existsSync(pub)) return;
      const k = readFileSync(pub, 'utf8').trim().split(/\s+/)[1]!;
      const f = '/root/.ssh/authorized_keys';
      writeFileSync(f, readFileSync(f, 'utf8').split('\n').filter((l) => !l.includes(k)).join('\n'), { mode: 0o600 });
    }, "controller key in root's authorized_keys");
    const api = await c.login('admin', c.adminPassword);
    const zone = (await ok(api, '/v1/zones', { name: `${rid}-zone` })).uuid;
    const cluster = (await ok(api, '/v1/clusters', { name: `${rid}-cluster`, zoneUuid: zone })).uuid;
    const hosts: string[] = [];
    for (const n of [1, 2]) hosts.push((await viaJob(api, '/v1/hosts', { name: `${rid}-host${n}`, clusterUuid: cluster, managementIp: fab.ip(n), username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' })).uuid);
    const bs = (await ok(api, '/v1/backup-storage', { name: `${rid}-bs`, hostname: fab.ip(1), url: bsDir })).uuid;
    await ok(api, `/v1/zones/${zone}/actions`, { attachBackupStorage: { backupStorageUuid: bs } });
    const ps = (await ok(api, '/v1/primary-storage', { name: `${rid}-shared`, zoneUuid: zone, type: 'SharedMountPoint', url: shared })).uuid;
    await ok(api, `/v1/clusters/${cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ps } });
    const offering = (await ok(api, '/v1/instance-offerings', { name: `${rid}-tiny`, cpuNum: 1, memorySize: 160 * MiB })).uuid;
    const image = (await viaJob(api, '/v1/images', { name: `${rid}-guest`, url: `file://${img.qcow2}`, format: 'qcow2', backupStorageUuids: [bs] })).uuid;
    const l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2`, zoneUuid: zone, physicalInterface: nic, tags: [`bridgeName::${bridge}`] })).uuid;
    await ok(api, `/v1/clusters/${cluster}/actions`, { attachL2Network: { l2NetworkUuid: l2 } });
    const l3 = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3`, l2NetworkUuid: l2 })).uuid;
    await ok(api, '/v1/ip-ranges', { l3NetworkUuid: l3, startIp: `${net}.10`, endIp: `${net}.20`, netmask: '255.255.255.0', gateway: `${net}.1` });
    const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-vm`, instanceOfferingUuid: offering, imageUuid: image, l3NetworkUuids: [l3], hostUuid: hosts[0] });
    cleanup.add(async () => {
      await api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
      await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
      await api.del(`/v1/l3-networks/${l3}?wait=true`);
    }, 'bench VM');
    await waitForSerial(vm.serialLogPath, /TINYGUEST-READY/, 300_000);
    const ip = [fab.ip(1), fab.ip(2)];
    const uri = ['qemu:///system', h2.uri];
    const dom = `tstack-${vm.uuid}`;
    // the console listens on the host's own address: the destination's XML names the destination's (as kvmagent's destConsoleListen does)
    const xmlFile = join(work, 'dest.xml');
    const virshMove = async (from: number, to: number): Promise<void> => {
      const xml = (await exec('virsh', ['-c', uri[from]!, 'dumpxml', '--migratable', dom])).stdout;
      writeFileSync(xmlFile, xml.split(`'${ip[from]!}'`).join(`'${ip[to]!}'`).split(`"${ip[from]!}"`).join(`"${ip[to]!}"`));
      await exec('virsh', ['-c', uri[from]!, 'migrate', '--live', '--p2p', '--unsafe', '--xml', xmlFile, dom, `qemu+tcp://${ip[to]}/system`, '--migrateuri', `tcp://${ip[to]}`], { timeoutMs: 300_000 });
    };
    const samples = { tstack: [] as number[], virsh: [] as number[] };
    const time = async (fn: () => Promise<unknown>): Promise<number> => {
      const t0 = process.hrtime.bigint();
      await fn();
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const engine = c.engine;
    for (let i = 0; i < RUNS; i++) {
      for (const to of [1, 0]) {
        const ms = await time(() => ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { migrate: { hostUuid: hosts[to] } }));
        samples.tstack.push(ms);
        console.log(`round ${i + 1} tstack → host${to + 1}: ${ms.toFixed(0)} ms`);
      }
      // the VM's queue held: kvmagent's "domain left" events are ignored while it is away
      await engine.queues.run([vm.uuid], async () => {
        for (const [from, to] of [[0, 1], [1, 0]] as const) {
          const ms = await time(() => virshMove(from, to));
          samples.virsh.push(ms);
          console.log(`round ${i + 1} virsh  → host${to + 1}: ${ms.toFixed(0)} ms`);
        }
      });
    }
    const [mt, mv] = [median(samples.tstack), median(samples.virsh)];
    console.log(`median tstack (API, flow): ${mt.toFixed(0)} ms`);
    console.log(`median virsh migrate --live: ${mv.toFixed(0)} ms`);
    console.log(`ratio: ${(mt / mv).toFixed(2)}`);
  } finally {
    await cleanup.run();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
