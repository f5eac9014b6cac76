// Metrics and alarms with a real Prometheus (Debian's package) started by the controller, a
// real kvmagent server (fake hypervisor: synthetic counters, ~5 % CPU per VM) and a real HTTP
// receiver: the host appearing in the inventory becomes a scrape job (file SD, its token);
// GET /v1/metrics answers in ZStack's GetMetricData shape; a GreaterThan alarm goes to Alarm
// and posts once through its topic; a controller restarted while it fires sends nothing again.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { monitoringModule, type MonitoringModule } from '../../../controller/monitoring/module.js';
import { AgentServer } from '../../../shared/agent/server.js';
import { registerKvmAgent } from '../../../kvmagent/main.js';
import { FakeDriver } from '../../../kvmagent/hypervisor/fake-driver.js';
import { IpNetwork } from '../../../kvmagent/network/bridges.js';
import { until as waitUntil } from '../../harness/assert.js';
import { useCleanup } from '../../harness/cleanup.js';
import { freePort } from '../../harness/ports.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';

const TOKEN = 'metrics-test-token-0123456789abcdef';
/** The harness's until, with this file's patience (Prometheus scrapes and evaluates on its own clock). */
const until = <T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> => waitUntil(what, fn, ms, 500);

describe('metrics + alarms (real Prometheus, kvmagent with the fake hypervisor)', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let mod: MonitoringModule;
  let promPort: number;
  const got: Array<Record<string, any>> = [];
  const vmUuid = crypto.randomUUID();
  const hostUuid = crypto.randomUUID();

  const start = async (dataDir?: string): Promise<void> => {
    mod = monitoringModule({ prometheus: { port: promPort, scrapeInterval: '1s' }, alarmIntervalMs: 1000, delivery: { pollMs: 200, backoffMs: 200 } });
    c = await testController(cleanup, { registry: new ApiRegistry(), modules: [mod], ...(dataDir ? { dataDir } : {}) });
    admin = await c.login('admin', c.adminPassword);
  };

  before(async function () {
    // scripts/setup installs it: a missing Prometheus is a broken setup, not a reason to skip
    if (!existsSync('/usr/bin/prometheus')) throw new Error('/usr/bin/prometheus is missing: run scripts/setup');
    promPort = await freePort();
    const server = new AgentServer({ agent: 'tstack-kvmagent', version: 'test', token: TOKEN });
    const driver = new FakeDriver();
    const agent = await registerKvmAgent(server, { driver, network: new IpNetwork() }, { noWatcher: true, metricsIntervalMs: 1000 });
    const addr = await server.listen('127.0.0.1', 0);
    cleanup.add(async () => {
      await agent.stop();
      await server.close();
    }, 'kvmagent');
    await driver.defineAndStart(`<domain type='qemu'><name>tstack-${vmUuid}</name><uuid>${vmUuid}</uuid><memory unit='KiB'>131072</memory><vcpu>1</vcpu></domain>`, `tstack-${vmUuid}`);
    const rx: Server = createServer((req, res) => {
      let d = '';
      req.on('data', (b: Buffer) => (d += b.toString()));
      req.on('end', () => {
        got.push(JSON.parse(d) as Record<string, any>);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => rx.close(() => r())), 'receiver');
    await start();
    // the host as the host module records it (agents' ports and tokens in _agents)
    await c.store.create({ uuid: hostUuid, kind: 'host', name: 'h1', createDate: '', lastOpDate: '', ownerAccountUuid: c.auth.adminAccountUuid, tags: [], state: 'Enabled', status: 'Connected', managementIp: '127.0.0.1', _agents: { kvmagent: { port: addr.port, token: TOKEN } } });
    const ep = await admin.post('/v1/sns-endpoints', { name: 'rx', type: 'HTTP', url: `http://127.0.0.1:${(rx.address() as AddressInfo).port}/alarm` });
    const t = await admin.post('/v1/sns-topics', { name: 'alarms' });
    await admin.post(`/v1/sns-topics/${t.body.uuid}/actions`, { subscribe: { endpointUuid: ep.body.uuid } });
    const a = await admin.post('/v1/alarms', { name: 'cpu-high', namespace: 'ZStack/VM', metricName: 'CPUAverageUsedUtilization', comparisonOperator: 'GreaterThan', threshold: 3, period: 3, repeatInterval: 3600, labels: [{ key: 'VMUuid', op: 'Equal', value: vmUuid }], actions: [{ actionType: 'sns', actionUuid: t.body.uuid }] });
    assert.equal(a.status, 201, JSON.stringify(a.body));
  });

  it('the host becomes a scrape job (file SD with HostUuid, its token 0600)', async () => {
    const dir = join(c.dataDir, 'prometheus');
    await until('the SD file', async () => (existsSync(join(dir, 'targets', `${hostUuid}.json`)) ? true : undefined), 10_000);
    const sd = JSON.parse(readFileSync(join(dir, 'targets', `${hostUuid}.json`), 'utf8')) as Array<{ labels: Record<string, string> }>;
    assert.equal(sd[0]!.labels.HostUuid, hostUuid);
    assert.equal(readFileSync(join(dir, 'tokens', hostUuid), 'utf8'), TOKEN);
    await until('the scrape job', async () => (readFileSync(join(dir, 'prometheus.yml'), 'utf8').includes(`job_name: kvmagent-${hostUuid}`) ? true : undefined), 10_000);
  });

  it('GET /v1/metrics answers VM and host series with ZStack labels', async () => {
    const data = await until('VM CPU samples', async () => {
      const r = await admin.get(`/v1/metrics?namespace=ZStack/VM&metricName=CPUAverageUsedUtilization&labels=VMUuid=${vmUuid}&period=1`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.data.length > 0 ? (r.body.data as Array<Record<string, any>>) : undefined;
    });
    assert.equal(data[0]!.labels.VMUuid, vmUuid);
    assert.equal(data[0]!.labels.HostUuid, hostUuid);
    assert.ok(data.some((p) => p.value > 3 && p.value <= 100), JSON.stringify(data.slice(-3)));
    for (const [ns, name] of [['ZStack/Host', 'MemoryUsedInPercent'], ['ZStack/VM', 'DiskReadBytes'], ['ZStack/VM', 'NetworkInBytes'], ['ZStack/VM', 'MemoryUsedBytes']]) {
      await until(`${ns} ${name}`, async () => ((await admin.get(`/v1/metrics?namespace=${ns}&metricName=${name}&period=1`)).body.data.length > 0 ? true : undefined));
    }
    const names = await admin.get('/v1/metrics/names?namespace=ZStack/VM');
    assert.ok(names.body.names.some((n: { name: string }) => n.name === 'CPUUsedUtilization'));
    assert.equal((await admin.get('/v1/metrics?namespace=ZStack/VM&metricName=X&labels=bad-key=1')).status, 400);
    assert.equal((await admin.get('/v1/metrics?namespace=Nope&metricName=X')).status, 400);
  });

  it('a GreaterThan alarm fires once to the HTTP endpoint, and not again after a restart', async () => {
    const msg = await until('the alarm notification', async () => got.find((g) => g.type === 'alarm' && g.status === 'Alarm'));
    assert.equal(msg.alarmName, 'cpu-high');
    assert.ok(msg.value > 3);
    assert.match(msg.message, /Alarm cpu-high is Alarm/);
    const alarm = (await admin.get('/v1/alarms?q=name=cpu-high')).body.inventories[0];
    assert.equal(alarm.status, 'Alarm');
    assert.equal(alarm.history.at(-1).to, 'Alarm');
    const dataDir = c.dataDir;
    await c.stop();
    await start(dataDir);
    // several evaluations after the restart (the first ones wait for a full period of samples)
    await new Promise((r) => setTimeout(r, 12_000));
    assert.equal((await admin.get('/v1/alarms?q=name=cpu-high')).body.inventories[0].status, 'Alarm');
    assert.equal(got.filter((g) => g.type === 'alarm').length, 1);
  });
});
