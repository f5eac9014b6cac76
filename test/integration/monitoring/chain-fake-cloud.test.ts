// The chain on the fake cloud (controller + in-process kvmagent on its fake hypervisor,
// a real Prometheus, a real HTTP receiver on 127.0.0.1): a VM created through the API shows in
// CPUAverageUsedUtilization; a GreaterThan alarm (the fake guest uses ~5 % CPU) posts through
// its topic; a VmStateChanged subscription receives the stop; the audit log holds the VM's
// create and stop with the account; HostStatusChanged, PrimaryStorageLowCapacity and JobFailed
// arrive; /v1/audits and /v1/metrics are in the OpenAPI document with their answers' schemas.
// (The real-guest version of this chain is in test/e2e/cloud.test.ts.)
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { monitoringModule } from '../../../controller/monitoring/module.js';
import { MetricsCollector } from '../../../kvmagent/metrics/collector.js';
import { until as waitUntil } from '../../harness/assert.js';
import { useCleanup } from '../../harness/cleanup.js';
import { freePort } from '../../harness/ports.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import { HostTracker } from '../../../controller/host/tracker.js';
import { newHostRuntime } from '../../../controller/host/runtime.js';
import * as S from '../../../shared/protocol/storage.js';
import { ipNamespace } from '../../../controller/allocator/ip.js';

/** The harness's until, with this file's patience (Prometheus scrapes and evaluates on its own clock). */
const until = <T>(what: string, fn: () => Promise<T | undefined>, ms = 90_000): Promise<T> => waitUntil(what, fn, ms, 300);

describe('monitoring chain on the fake cloud (real Prometheus)', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let fc: FakeCloud;
  const got: Array<Record<string, any>> = [];
  let topic = '';

  before(async function () {
    // scripts/setup installs it: a missing Prometheus is a broken setup, not a reason to skip
    if (!existsSync('/usr/bin/prometheus')) throw new Error('/usr/bin/prometheus is missing: run scripts/setup');
    const mod = monitoringModule({ prometheus: { port: await freePort(), scrapeInterval: '1s' }, alarmIntervalMs: 1000, delivery: { pollMs: 200, backoffMs: 200 } });
    fc = await startFakeCloud(cleanup, { modules: [mod] });
    // the harness's kvmagent runs without its own sampler (noWatcher): sample here, every second
    const collector = new MetricsCollector(fc.kvm.driver, fc.kvm.server.metrics.registry, { intervalMs: 1000, host: false });
    collector.start();
    cleanup.add(async () => collector.stop(), 'collector');
    const rx = createServer((req, res) => {
      let d = '';
      req.on('data', (b: Buffer) => (d += b.toString()));
      req.on('end', () => {
        got.push(JSON.parse(d) as Record<string, any>);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => rx.close(() => r())), 'receiver');
    const ep = await fc.api.post('/v1/sns-endpoints', { name: 'rx', type: 'HTTP', url: `http://127.0.0.1:${(rx.address() as AddressInfo).port}/` });
    const t = await fc.api.post('/v1/sns-topics', { name: 'ops' });
    topic = t.body.uuid as string;
    await fc.api.post(`/v1/sns-topics/${t.body.uuid}/actions`, { subscribe: { endpointUuid: ep.body.uuid } });
    const es = await fc.api.post('/v1/event-subscriptions', { name: 'vm-state', namespace: 'ZStack/VM', eventName: 'VmStateChanged', actions: [{ actionType: 'sns', actionUuid: t.body.uuid }] });
    assert.equal(es.status, 201, JSON.stringify(es.body));
    const a = await fc.api.post('/v1/alarms', { name: 'cpu', namespace: 'ZStack/VM', metricName: 'CPUAverageUsedUtilization', comparisonOperator: 'GreaterThan', threshold: 3, period: 2, actions: [{ actionType: 'sns', actionUuid: t.body.uuid }] });
    assert.equal(a.status, 201, JSON.stringify(a.body));
  });

  it('metric → alarm → HTTP endpoint; stop → VmStateChanged; audit holds create and stop', async () => {
    const r = await fc.createVm('mon-vm');
    assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
    const vm = r.body;
    const points = await until('CPUAverageUsedUtilization', async () => {
      const m = await fc.api.get(`/v1/metrics?namespace=ZStack/VM&metricName=CPUAverageUsedUtilization&labels=VMUuid=${vm.uuid}&period=1`);
      return m.body.data?.length > 0 ? (m.body.data as Array<{ time: number; value: number; labels: Record<string, string> }>) : undefined;
    });
    assert.equal(points[0]!.labels.HostUuid, fc.ids.host);
    // the controller's own metrics (its Prometheus scrapes /v1/metrics/export): the addresses
    // held on the L3 (the VM's and the DHCP server's) of the 41 in its range
    const ip = await until('UsedIpInNumber', async () => {
      const m = await fc.api.get(`/v1/metrics?namespace=ZStack/L3Network&metricName=UsedIpInNumber&labels=L3NetworkUuid=${fc.ids.l3}&period=1`);
      return (m.body.data as Array<{ value: number }> | undefined)?.find((p) => p.value >= 1);
    });
    const held = (await fc.controller.store.claims(ipNamespace(fc.ids.l3))).length;
    assert.equal(ip.value, held);
    const pct = (await fc.api.get(`/v1/metrics?namespace=ZStack/L3Network&metricName=UsedIpInPercent&labels=L3NetworkUuid=${fc.ids.l3}&period=1`)).body.data.at(-1).value as number;
    assert.equal(pct, Math.round((held / 41) * 10_000) / 100);
    const ps = await until('AvailableCapacityInPercent', async () => (await fc.api.get(`/v1/metrics?namespace=ZStack/PrimaryStorage&metricName=AvailableCapacityInPercent&labels=PrimaryStorageUuid=${fc.ids.ps}&period=1`)).body.data?.at(-1) as { value: number } | undefined);
    assert.ok(ps.value > 90 && ps.value < 100, JSON.stringify(ps));
    assert.equal((await fc.api.get('/v1/metrics/export')).status, 200, 'an admin may read the export');
    assert.equal((await fc.api.get('/v1/metrics/names?namespace=ZStack/L3Network')).body.names.length, 5);
    const alarm = await until('the alarm notification', async () => got.find((g) => g.type === 'alarm' && g.labels?.VMUuid === vm.uuid));
    assert.equal(alarm.status, 'Alarm');
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
    const ev = await until('the VmStateChanged notification', async () => got.find((g) => g.eventName === 'VmStateChanged' && g.resourceUuid === vm.uuid && g.labels.NewState === 'Stopped'));
    assert.equal(ev.labels.VMUuid, vm.uuid);
    const audits = (await fc.api.get(`/v1/audits?resourceUuid=${vm.uuid}`)).body.inventories as Array<Record<string, any>>;
    const names = audits.map((x) => x.apiName);
    assert.ok(names.includes('vm-instances.create') && names.includes('vm-instances.stop'), JSON.stringify(names));
    for (const x of audits) assert.equal(x.accountName, 'admin');
    // both routes are in the OpenAPI document with the schemas of what they answer
    const doc = (await fc.controller.anon.get('/v1/openapi.json')).body;
    const listed = doc.paths['/v1/audits'].get.responses['200'].content['application/json'].schema.properties.inventories.items.$ref;
    assert.equal(listed, '#/components/schemas/AuditRecord');
    const auditSchema = doc.components.schemas.AuditRecord;
    for (const x of audits) {
      for (const k of auditSchema.required as string[]) assert.ok(k in x, `audit record has ${k}`);
      for (const k of Object.keys(x)) assert.ok(k in auditSchema.properties, `AuditRecord documents ${k}`);
    }
    assert.equal(doc.paths['/v1/metrics'].get.responses['200'].content['application/json'].schema.$ref, '#/components/schemas/MetricData');
    const point = doc.components.schemas.MetricData.properties.data.items;
    for (const k of point.required as string[]) assert.ok(k in points[0]!, `a metric point has ${k}`);
    assert.deepEqual(Object.keys(points[0]!).sort(), Object.keys(point.properties).sort());
    assert.ok(doc.paths['/v1/metrics/names'].get && doc.paths['/v1/metrics/export'].get && doc.paths['/v1/audits/{uuid}'].get);
  });

  it('HostStatusChanged, PrimaryStorageLowCapacity and JobFailed reach a subscribed endpoint', async () => {
    const actions = [{ actionType: 'sns', actionUuid: topic }];
    for (const [ns, eventName] of [['ZStack/Host', 'HostStatusChanged'], ['ZStack/PrimaryStorage', 'PrimaryStorageLowCapacity'], ['ZStack/System', 'JobFailed']]) {
      const r = await fc.api.post('/v1/event-subscriptions', { name: eventName, namespace: ns, eventName, actions });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    // JobFailed: a VM create whose root volume fails on the storage agent
    fc.storage.failNext(S.CreateRootVolume.name, 'STORAGE_ERROR');
    const failed = await fc.createVm('doomed');
    assert.ok(failed.status >= 400, JSON.stringify(failed.body));
    const jf = await until('JobFailed', async () => got.find((g) => g.eventName === 'JobFailed'));
    assert.equal(jf.labels.ErrorCode, 'STORAGE_ERROR');
    assert.match(jf.labels.JobType, /vm-instances/);
    // PrimaryStorageLowCapacity: the storage agent reports 5 % free on a reconnect
    fc.storage.capacity.availableCapacity = Math.floor(fc.storage.capacity.totalCapacity * 0.05);
    const rc = await fc.api.post(`/v1/primary-storage/${fc.ids.ps}/actions?wait=true`, { reconnect: {} });
    assert.equal(rc.status, 200, JSON.stringify(rc.body));
    const low = await until('PrimaryStorageLowCapacity', async () => got.find((g) => g.eventName === 'PrimaryStorageLowCapacity'));
    assert.equal(low.labels.PrimaryStorageUuid, fc.ids.ps);
    assert.equal(Number(low.labels.AvailableCapacityInPercent), 5);
    // HostStatusChanged: the host tracker misses the kvmagent's pings → Disconnected
    const tracker = new HostTracker({ hostRuntime: newHostRuntime(), store: fc.controller.store, agentClient: fc.controller.agentClient, agents: fc.controller.agents, bus: fc.controller.bus, controllerUrl: fc.controller.url, dataDir: fc.controller.dataDir, options: { pingIntervalMs: 300, maxMisses: 2, autoReconnectMs: 3_600_000 } });
    await fc.kvm.agent.stop();
    await fc.kvm.server.close();
    tracker.start();
    cleanup.add(() => tracker.stop(), 'host tracker');
    const hs = await until('HostStatusChanged', async () => got.find((g) => g.eventName === 'HostStatusChanged'));
    await tracker.stop();
    assert.deepEqual([hs.labels.HostUuid, hs.labels.OldStatus, hs.labels.NewStatus], [fc.ids.host, 'Connected', 'Disconnected']);
  });
});
