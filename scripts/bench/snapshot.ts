// Benchmark: an online volume snapshot through tstack's API vs `virsh snapshot-create-as
// --disk-only` of the same disk of the same running VM.
//   npx tsx scripts/bench/snapshot.ts [runs=7]
// A throwaway cloud on this machine (controller in-process, this host added over its own sshd,
// local primary storage, the test guest image; like test/e2e/storage.test.ts). Runs alternate
// (api, virsh, virsh, api, ...). An API run is POST /v1/volume-snapshots?wait=true on the running
// VM's root volume (storage agent prepares the new top, kvmagent switches QEMU to it, storage agent
// commits), timed at the client. A virsh run is `virsh snapshot-create-as --disk-only --atomic
// --no-metadata` with an external overlay, timed around the command; after it (untimed) the overlay
// is committed back (`virsh blockcommit --active --pivot`) so tstack's chain stays its own.
// Prints the medians; the last line is `ratio: X` (API time / virsh time).
import { randomInt } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../shared/exec.js';
import { Cleanup } from '../../test/harness/cleanup.js';
import { testController, type ApiClient } from '../../test/harness/controller.js';
import { guestImage } from '../../test/harness/guest.js';
import { ensureLibvirt, virsh } from '../../test/harness/libvirt.js';
import { createBridge, deleteLink } from '../../test/harness/net.js';
import { runId, tmpDir } from '../../test/harness/tmp.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout } from '../../test/integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';

const runs = Number(process.argv[2] ?? 7);
const MiB = 1024 * 1024;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function ok(api: ApiClient, path: string, body: unknown): Promise<any> {
  const r = await api.post(`${path}${path.includes('?') ? '&' : '?'}wait=true`, body);
  if (![200, 201].includes(r.status)) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function main(): Promise<void> {
  const cleanup = new Cleanup();
  try {
    await ensureLibvirt();
    const img = await guestImage();
    const rid = runId();
    const bridge = `${rid}bbr`;
    const dummy = `${rid}bd0`;
    const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
    const layout = await tempLayout(cleanup);
    cleanup.add(() => killAgents(layout), 'agents');
    const sshKey = authorizedKey(cleanup, 'bench');
    await createBridge(bridge, cleanup);
    await exec('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', `${rid}bd1`]);
    cleanup.add(() => deleteLink(dummy), `veth ${dummy}`);
    const work = await tmpDir('bench-snap', cleanup);
    for (const d of ['ps', 'bs', 'overlays']) mkdirSync(join(work, d));
    const c = await testController(cleanup, { modules: [cloudModule({ hosts: true, hostOptions: { layout, ports: await freePorts(), packageRoot: await builtTree(), listenHost: '127.0.0.1', pingIntervalMs: 5_000 } })] } as never);
    const api = await c.login('admin', c.adminPassword);
    const vmUuids: string[] = [];
    cleanup.add(async () => {
      for (const u of vmUuids) {
        await api.del(`/v1/vm-instances/${u}?wait=true`);
        await api.post(`/v1/vm-instances/${u}/actions?wait=true`, { expunge: {} });
        await virsh(['destroy', `tstack-${u}`]).catch(() => undefined);
        await virsh(['undefine', `tstack-${u}`]).catch(() => undefined);
      }
    }, 'VM');

    const zone = (await ok(api, '/v1/zones', { name: `${rid}-zone` })).uuid;
    const cluster = (await ok(api, '/v1/clusters', { name: `${rid}-cluster`, zoneUuid: zone })).uuid;
    await ok(api, '/v1/hosts', { name: `${rid}-host`, clusterUuid: cluster, managementIp: '127.0.0.1', username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' });
    const bs = (await ok(api, '/v1/backup-storage', { name: `${rid}-bs`, hostname: '127.0.0.1', url: join(work, 'bs') })).uuid;
    await ok(api, `/v1/zones/${zone}/actions`, { attachBackupStorage: { backupStorageUuid: bs } });
    const ps = (await ok(api, '/v1/primary-storage', { name: `${rid}-ps`, zoneUuid: zone, type: 'LocalStorage', url: join(work, 'ps') })).uuid;
    await ok(api, `/v1/clusters/${cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ps } });
    const offering = (await ok(api, '/v1/instance-offerings', { name: `${rid}-tiny`, cpuNum: 1, memorySize: 192 * MiB })).uuid;
    const image = (await ok(api, '/v1/images', { name: `${rid}-img`, url: `file://${img.qcow2}`, format: 'qcow2', backupStorageUuids: [bs] })).uuid;
    const l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2`, zoneUuid: zone, physicalInterface: dummy, tags: [`bridgeName::${bridge}`] })).uuid;
    await ok(api, `/v1/clusters/${cluster}/actions`, { attachL2Network: { l2NetworkUuid: l2 } });
    const l3 = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3`, l2NetworkUuid: l2 })).uuid;
    cleanup.add(() => api.del(`/v1/l3-networks/${l3}?wait=true`), 'L3');
    await ok(api, '/v1/ip-ranges', { l3NetworkUuid: l3, startIp: `${net}.10`, endIp: `${net}.20`, netmask: '255.255.255.0', gateway: `${net}.1` });
    const vm = await ok(api, '/v1/vm-instances', { name: `${rid}-vm`, instanceOfferingUuid: offering, imageUuid: image, l3NetworkUuids: [l3] });
    vmUuids.push(vm.uuid);
    const dom = `tstack-${vm.uuid}`;

    const apiRun = async (i: number): Promise<number> => {
      const t0 = process.hrtime.bigint();
      await ok(api, '/v1/volume-snapshots', { name: `bench-${i}`, volumeUuid: vm.rootVolumeUuid });
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const virshRun = async (i: number): Promise<number> => {
      const overlay = join(work, 'overlays', `o${i}.qcow2`);
      const t0 = process.hrtime.bigint();
      await virsh(['snapshot-create-as', dom, `bench-${i}`, '--disk-only', '--atomic', '--no-metadata', '--diskspec', `vda,snapshot=external,file=${overlay}`]);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      await virsh(['blockcommit', dom, 'vda', '--active', '--pivot', '--wait']);
      rmSync(overlay, { force: true });
      return ms;
    };
    await apiRun(0); // warm up both paths once
    await virshRun(0);
    const a: number[] = [];
    const v: number[] = [];
    for (let i = 1; i <= runs; i++) {
      if (i % 2 === 1) {
        a.push(await apiRun(i));
        v.push(await virshRun(i));
      } else {
        v.push(await virshRun(i));
        a.push(await apiRun(i));
      }
      process.stdout.write(`run ${i}: api ${a.at(-1)!.toFixed(0)} ms, virsh ${v.at(-1)!.toFixed(0)} ms\n`);
    }
    const ma = median(a);
    const mv = median(v);
    process.stdout.write(`online snapshot of a running VM's root volume, ${runs} runs each\n`);
    process.stdout.write(`median api ${ma.toFixed(0)} ms, virsh --disk-only ${mv.toFixed(0)} ms\n`);
    process.stdout.write(`ratio: ${(ma / mv).toFixed(2)}\n`);
  } finally {
    await cleanup.run();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`snapshot bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
