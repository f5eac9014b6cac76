// Build a cloud on tstack-simulator hosts through the REST API only (the scale bench and the
// simulator suite test): zone, cluster, local primary storage, flat L2/L3 with a range big
// enough for `vms`, an offering, the hosts (POST /v1/hosts with ssh: false, `hostConcurrency`
// at a time), an image store on host 0 and an image.
import type { ApiClient } from './controller.js';
import { nthIp, type SimHostInfo } from '../../simulator/simulator.js';

/** A random 256-address block of 127.64.0.0–127.123.255.255 for a simulator's hosts: parallel runs never collide. */
export const randomSimFirstIp = (): string => nthIp('127.64.0.1', Math.floor(Math.random() * 60) * 65_536 + Math.floor(Math.random() * 250) * 256);

const MiB = 1024 * 1024;

export interface SimCloudIds {
  zone: string;
  cluster: string;
  ps: string;
  bs: string;
  image: string;
  offering: string;
  l2: string;
  l3: string;
  hosts: string[];
}

/** POST; a long operation's job is followed by polling (one HTTP wait can outlast the client's header timeout on a loaded machine, e.g. attaching storage to 1,000 hosts). */
async function ok(api: ApiClient, path: string, body: unknown): Promise<any> {
  const r = await api.post(path.replace(/[?&]wait=true$/, ''), body);
  if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  if (r.status !== 202 || !r.body?.jobUuid) return r.body?.result ?? r.body;
  for (let delay = 50, failures = 0; ; delay = Math.min(1_000, delay * 2)) {
    await new Promise((res) => setTimeout(res, delay));
    // a read: asked again when the connection failed (a reused keep-alive socket under load)
    const j = await api.get(`/v1/jobs/${r.body.jobUuid as string}`).catch((e: Error) => {
      if (++failures > 5) throw e;
      return undefined;
    });
    if (!j) continue;
    if (j.status !== 200) throw new Error(`job of POST ${path}: ${j.status} ${JSON.stringify(j.body)}`);
    if (j.body.state === 'Succeeded') return j.body.result;
    if (j.body.state !== 'Running') throw new Error(`POST ${path}: job ${j.body.state as string} ${JSON.stringify(j.body.error ?? j.body)}`);
  }
}

/**
 * One host add; a request that got no answer (a connection reset on a loaded machine) or a
 * retryable failure (the controller busy, a simulated host slow to answer its first ping) is
 * asked again with a growing pause, up to ~2 minutes, and a name already taken by then is the
 * first request's host.
 */
async function addOne(api: ApiClient, body: { name: string }): Promise<string> {
  const pause = (attempt: number): Promise<void> => new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)));
  const ATTEMPTS = 15;
  for (let attempt = 0; ; attempt++) {
    const r = await api.post('/v1/hosts?wait=true', body).catch((e: Error) => (attempt < ATTEMPTS ? undefined : Promise.reject(e)));
    if (!r) {
      await pause(attempt);
      continue;
    }
    if (r.status === 409 && attempt > 0) {
      const found = await api.get(`/v1/hosts?q=name=${encodeURIComponent(body.name)}`);
      const h = (found.body?.inventories as Array<{ uuid: string }> | undefined)?.[0];
      if (h) return h.uuid;
    }
    // a failed add removes its half-made host: a retryable failure is simply sent again
    if (r.status >= 300 && attempt < ATTEMPTS && (r.body?.kind === 'retryable' || r.status === 503 || r.status === 429)) {
      await pause(attempt);
      continue;
    }
    if (r.status >= 300) throw new Error(`POST /v1/hosts: ${r.status} ${JSON.stringify(r.body)}`);
    return (r.body?.result ?? r.body).uuid as string;
  }
}

/** Add simulated hosts to a cluster, `concurrency` at a time; returns their uuids in order. */
export async function addSimulatedHosts(api: ApiClient, clusterUuid: string, hosts: SimHostInfo[], prefix: string, concurrency = 16): Promise<string[]> {
  const out: string[] = new Array<string>(hosts.length);
  const queue = hosts.map((h, i) => ({ h, i }));
  await Promise.all(
    Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
      for (let x = queue.shift(); x; x = queue.shift()) {
        const body = { name: `${prefix}-h${x.h.index}`, clusterUuid, managementIp: x.h.managementIp, agentPort: x.h.port, ssh: false, agentToken: x.h.token };
        out[x.i] = await addOne(api, body);
      }
    }),
  );
  return out;
}

export async function setupSimulatedCloud(api: ApiClient, hosts: SimHostInfo[], o: { prefix: string; vms: number; hostConcurrency?: number; onHostsAdded?: () => void }): Promise<SimCloudIds> {
  const p = o.prefix;
  const zone = (await ok(api, '/v1/zones', { name: `${p}-zone` })).uuid;
  const cluster = (await ok(api, '/v1/clusters', { name: `${p}-cluster`, zoneUuid: zone })).uuid;
  // storage and network are attached before the hosts come: each host's connect sets them up
  // (ps/init, bridge) as it joins; attached afterwards, one request walked every host in turn,
  // past the client's 300 s at 1,000 hosts on a loaded machine
  const ps = (await ok(api, '/v1/primary-storage?wait=true', { name: `${p}-ps`, zoneUuid: zone, type: 'LocalStorage', url: '/sim/ps' })).uuid;
  await ok(api, `/v1/clusters/${cluster}/actions?wait=true`, { attachPrimaryStorage: { primaryStorageUuid: ps } });
  const l2 = (await ok(api, '/v1/l2-networks', { name: `${p}-l2`, zoneUuid: zone, physicalInterface: 'eth0' })).uuid;
  await ok(api, `/v1/clusters/${cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: l2 } });
  const hostUuids = await addSimulatedHosts(api, cluster, hosts, p, o.hostConcurrency);
  o.onHostsAdded?.();
  const bs = (await ok(api, '/v1/backup-storage?wait=true', { name: `${p}-bs`, hostname: hosts[0]!.managementIp, url: '/sim/bs' })).uuid;
  const image = (await ok(api, '/v1/images?wait=true', { name: `${p}-image`, url: 'http://images.invalid/sim.qcow2', format: 'qcow2', backupStorageUuids: [bs] })).uuid;
  const offering = (await ok(api, '/v1/instance-offerings', { name: `${p}-small`, cpuNum: 1, memorySize: 128 * MiB })).uuid;
  const l3 = (await ok(api, '/v1/l3-networks', { name: `${p}-l3`, l2NetworkUuid: l2 })).uuid;
  // 10.64.0.0/10 holds ~4 million addresses: any --vms fits; every host's DHCP server takes one too
  const size = Math.max(64, o.vms + hosts.length + 16);
  const end = 10 * 2 ** 24 + 64 * 2 ** 16 + 10 + size;
  const endIp = [end >>> 24, (end >>> 16) & 255, (end >>> 8) & 255, end & 255].join('.');
  await ok(api, '/v1/ip-ranges', { name: `${p}-range`, l3NetworkUuid: l3, startIp: '10.64.0.10', endIp, netmask: '255.192.0.0', gateway: '10.64.0.1' });
  return { zone, cluster, ps, bs, image, offering, l2, l3, hosts: hostUuids };
}
