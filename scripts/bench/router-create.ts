// Benchmark: VPC router create → Running through the REST API (controller on the fake cloud
// harness, with a REAL in-process vrouteragent building the namespace: validation, inventory,
// public IP allocation, system VIP, reconcile sync, HTTP to the agent, netns + veth + addresses
// + sysctl + route + iptables-restore) vs. the same raw commands run directly (`ip netns add` …
// `iptables-restore` of the same rendered rules). Bridges, namespaces and the agent's data dir
// are this run's own and removed at the end. Prints medians and, last, `ratio: X`.
//   npx tsx scripts/bench/router-create.ts [runs=10]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { exec, execOk } from '../../shared/exec.js';
import { setLogLevel } from '../../shared/log.js';
import { AgentServer } from '../../shared/agent/server.js';
import { registerVrouterAgent } from '../../vrouteragent/main.js';
import { routerNames } from '../../vrouteragent/names.js';
import { renderRouterNetfilter, stableMac } from '../../vrouteragent/render/router.js';
import { vpcModule } from '../../controller/vpc/module.js';
import { Cleanup } from '../../test/harness/cleanup.js';
import { startFakeCloud } from '../../test/harness/fake-cloud.js';
import { median } from './stats.js';

const RUNS = Number(process.argv[2] ?? 10);
const id = 'b' + randomBytes(3).toString('hex').slice(0, 5);
const BR = `${id}pub`;

/** What the agent runs for a router with only its public interface, as plain commands. */
async function rawRouter(n: number): Promise<void> {
  const uuid = `0badcafe-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const names = routerNames(uuid, { nsPrefix: `${id}raw`, ifPrefix: `${id}x` });
  const ns = names.namespace;
  const veth = names.hostVeth('public');
  const ip = `198.51.100.${100 + (n % 100)}`;
  await exec('ip', ['netns', 'add', ns]);
  await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { netns: ns });
  await exec('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'pub0', 'netns', ns]);
  await exec('ip', ['-n', ns, 'link', 'set', 'pub0', 'address', stableMac(uuid, 'public')]);
  await exec('ip', ['link', 'set', veth, 'master', BR, 'up']);
  await exec('ip', ['-n', ns, 'link', 'set', 'pub0', 'up']);
  await exec('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'pub0']);
  await exec('ip', ['-n', ns, 'route', 'replace', 'default', 'via', '198.51.100.1', 'dev', 'pub0']);
  const nf = renderRouterNetfilter({ routerUuid: uuid, public: { bridge: BR, ip, prefix: 24, gateway: '198.51.100.1' }, networks: [], vips: [], eips: [], portForwards: [] });
  await exec('iptables-restore', ['-w', '10'], { netns: ns, stdin: nf.text });
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const cleanup = new Cleanup();
  const dataDir = mkdtempSync(join(tmpdir(), `${id}-vr-`));
  const scheme = { nsPrefix: `${id}api`, ifPrefix: `${id}y` };
  try {
    await exec('ip', ['link', 'add', BR, 'type', 'bridge']);
    await exec('ip', ['link', 'set', BR, 'up']);
    const fc = await startFakeCloud(cleanup, { modules: [vpcModule() as never] });
    // the host's vrouteragent is a real one (in this process) instead of the protocol fake
    const token = randomBytes(16).toString('hex');
    const server = new AgentServer({ agent: 'tstack-vrouteragent', version: 'bench', token });
    const agent = await registerVrouterAgent(server, { dataDir, scheme, watchdogMs: 0 });
    const port = (await server.listen('127.0.0.1', 0)).port;
    cleanup.add(async () => {
      await agent.close();
      await server.close();
    }, 'bench vrouteragent');
    const host = (await fc.controller.store.get(fc.ids.host))!;
    await fc.controller.store.update(host.uuid, { _agents: { ...(host._agents as object), vrouteragent: { port, token } } });
    const post = async (path: string, body: unknown): Promise<any> => {
      const r = await fc.api.post(path, body);
      if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    };
    const l2 = (await post('/v1/l2-networks', { name: 'bench-pub', zoneUuid: fc.ids.zone, physicalInterface: 'eth0', vlan: 100, tags: [`bridgeName::${BR}`] })).uuid;
    await post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: l2 } });
    const pub = (await post('/v1/l3-networks', { name: 'bench-public', l2NetworkUuid: l2, category: 'Public' })).uuid;
    await post('/v1/ip-ranges', { l3NetworkUuid: pub, startIp: '198.51.100.10', endIp: '198.51.100.90', netmask: '255.255.255.0', gateway: '198.51.100.1' });
    const offering = (await post('/v1/virtual-router-offerings', { name: 'bench-vr', zoneUuid: fc.ids.zone, publicNetworkUuid: pub })).uuid;

    const api: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const r = await post('/v1/vpc-routers', { name: `bench-${i}`, virtualRouterOfferingUuid: offering });
      api.push(performance.now() - t0);
      if (r.state !== 'Running' || r.status !== 'Connected') throw new Error(`router ${r.uuid} is ${r.state}/${r.status}`);
      await fc.api.del(`/v1/vpc-routers/${r.uuid}`);
      const t1 = performance.now();
      await rawRouter(i);
      raw.push(performance.now() - t1);
      await exec('ip', ['netns', 'del', routerNames(`0badcafe-0000-4000-8000-${String(i).padStart(12, '0')}`, { nsPrefix: `${id}raw`, ifPrefix: `${id}x` }).namespace]);
    }
    const a = median(api);
    const m = median(raw);
    process.stdout.write(`VPC router create → Running (public interface, SNAT/filter tables), ${RUNS} runs each\n`);
    process.stdout.write(`tstack API (POST /v1/vpc-routers: inventory + IP + system VIP + vrouter/apply): median ${a.toFixed(1)} ms\n`);
    process.stdout.write(`raw ip netns add + the same ip/sysctl/iptables-restore commands: median ${m.toFixed(1)} ms\n`);
    process.stdout.write(`ratio: ${(a / m).toFixed(2)}\n`);
  } finally {
    await cleanup.run();
    for (const ns of (await exec('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!)) if (ns.startsWith(id)) await execOk('ip', ['netns', 'del', ns]);
    await execOk('ip', ['link', 'del', BR]);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
