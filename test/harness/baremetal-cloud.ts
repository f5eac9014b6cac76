// A whole cloud for bare metal, shared by test/e2e/baremetal.test.ts and
// scripts/bench/baremetal-provision: a controller with the bare-metal module, this machine added
// as host aio-host over its own sshd (agents deployed from this tree), and `scripts/aio`
// pointed at that controller with every name, address and path of its bare-metal part moved to
// the run's own (bridge, veth, taps, BMC ports, data dir, the agent's ramdisk directory), so
// `add-baremetal N` makes machines exactly as on an all-in-one. Everything is undone by cleanup.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { exec } from '../../shared/exec.js';
import type { Cleanup } from './cleanup.js';
import { testController, type ApiClient, type TestController } from './controller.js';
import { REPO_ROOT } from './guest.js';
import { ensureLibvirt } from './libvirt.js';
import { deleteLink, deleteNetns } from './net.js';
import { freePort } from './ports.js';
import { runId, tmpDir } from './tmp.js';
import { SIM_MACHINE } from './baremetal.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout, pkgCache } from '../integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { baremetalModule } from '../../controller/baremetal/module.js';

export interface BaremetalCloud {
  c: TestController;
  api: ApiClient;
  ids: { zone: string; cluster: string; host: string };
  /** The provisioning network's /24 prefix (this machine is .254, the PXE server .1). */
  net: string;
  /** scripts/aio with the run's environment. */
  aio(...args: string[]): Promise<{ stdout: string; stderr: string }>;
  env: Record<string, string>;
  /** Directory of machine N made by `aio add-baremetal N`. */
  machineDir(n: number): string;
  tap(n: number): string;
  bridge: string;
}

/** A job's final state (long operations answer 202 + job; polled, not held on one connection). */
export async function settle(api: ApiClient, r: { status: number; body: any }, timeoutMs = 900_000): Promise<any> {
  if (r.status !== 202) return { state: r.status < 300 ? 'Succeeded' : 'Failed', result: r.body, error: r.body, status: r.status };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const j = await api.get(`/v1/jobs/${r.body.jobUuid}`);
    if (j.body.state !== 'Running') return j.body;
    if (Date.now() > deadline) throw new Error(`job ${r.body.jobUuid} still running`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

export async function ok(api: ApiClient, path: string, body: unknown): Promise<any> {
  const j = await settle(api, await api.post(path, body));
  assert.equal(j.state, 'Succeeded', `${path}: ${JSON.stringify(j.error ?? j)}`);
  return j.result;
}

export async function startBaremetalCloud(cleanup: Cleanup, o: { machineMemMiB?: number; machineCpus?: number; machineDisk?: string } = {}): Promise<BaremetalCloud> {
  const rid = runId();
  await ensureLibvirt();
  const tree = await builtTree();
  const sshKey = authorizedKey(cleanup, 'baremetal');
  const layout = await tempLayout(cleanup);
  const ports = await freePorts();
  cleanup.add(() => killAgents(layout), 'stop deployed agents');
  const c = await testController(cleanup, {
    modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, packageCacheDir: pkgCache(tree), listenHost: '127.0.0.1', pingIntervalMs: 5_000, autoReconnectMs: 5_000 } }), baremetalModule()],
    reconcile: { periodMs: 3_000, baseBackoffMs: 500, maxBackoffMs: 3_000 },
  } as never);
  const api = await c.login('admin', c.adminPassword);
  // the names scripts/aio add-baremetal looks for
  const zone = await ok(api, '/v1/zones', { name: 'aio-zone' });
  const cluster = await ok(api, '/v1/clusters', { name: 'aio-cluster', zoneUuid: zone.uuid });
  const host = await ok(api, '/v1/hosts', { name: 'aio-host', clusterUuid: cluster.uuid, managementIp: '127.0.0.1', username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' });

  const dir = await tmpDir('aio-bm', cleanup);
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  const bridge = `${rid}pxb`;
  const env: Record<string, string> = {
    AIO_DATA_DIR: join(dir, 'data'),
    AIO_ETC_DIR: join(dir, 'etc'),
    AIO_LOG_DIR: join(dir, 'log'),
    AIO_RUN_DIR: join(dir, 'run'),
    AIO_CONTROLLER_LISTEN: `127.0.0.1:${new URL(c.url).port}`,
    TSTACK_ADMIN_PASSWORD: c.adminPassword,
    AIO_PXE_NET: net,
    AIO_PXE_BRIDGE: bridge,
    AIO_PXE_NIC: `${rid}pxn`,
    AIO_BM_TAP_PREFIX: `${rid}bm`,
    AIO_BM_PORT_BASE: String((await freePort()) - 1),
    AIO_BAREMETAL_IMAGES: join(layout.dataDir, 'vrouteragent', 'baremetal', 'images'),
    AIO_BM_MEM: String(o.machineMemMiB ?? 256),
    AIO_BM_CPUS: String(o.machineCpus ?? 2),
    AIO_BM_DISK: o.machineDisk ?? '1G',
  };
  const machineDir = (n: number): string => join(dir, 'data', 'baremetal', `bm${n}`);
  cleanup.add(async () => {
    await deleteLink(bridge);
    await deleteLink(`${rid}pxn`);
  }, 'provisioning bridge and veth');
  cleanup.add(async () => {
    const srv = (await api.get('/v1/baremetal-pxe-servers')).body.inventories?.[0];
    if (srv) {
      await settle(api, await api.del(`/v1/baremetal-pxe-servers/${srv.uuid}`));
      if (srv.namespace) await deleteNetns(srv.namespace);
    }
  }, 'PXE server');
  cleanup.add(async () => {
    for (let n = 1; n <= 9; n++) {
      await exec(SIM_MACHINE, ['stop', machineDir(n)], { timeoutMs: 20_000 }).catch(() => undefined);
      await deleteLink(`${rid}bm${n}`);
    }
  }, 'bare-metal machines');
  return {
    c,
    api,
    ids: { zone: zone.uuid, cluster: cluster.uuid, host: host.uuid },
    net,
    env,
    bridge,
    machineDir,
    tap: (n) => `${rid}bm${n}`,
    aio: (...args) => exec(join(REPO_ROOT, 'scripts/aio'), args, { env, timeoutMs: 300_000 }),
  };
}
