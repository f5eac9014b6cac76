// SNS and event subscriptions through a real controller (SQLite, HTTP) and a real HTTP
// receiver on 127.0.0.1: a VmStateChanged subscription posts the change to a subscribed
// endpoint (basic auth, template); an endpoint that is down is retried with backoff and then
// recorded Failed; the same occurrence is never queued twice, also after a restart; a normal
// account's subscription hears only its own resources; bad bodies are 400s naming the field.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { monitoringModule, type MonitoringModule } from '../../../controller/monitoring/module.js';
import type { Resource } from '../../../controller/store/types.js';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { until as pollUntil } from '../../harness/assert.js';

interface Received {
  auth: string | undefined;
  body: Record<string, any>;
}

async function receiver(cleanup: ReturnType<typeof useCleanup>): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      got.push({ auth: req.headers.authorization, body: JSON.parse(data) as Record<string, any> });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.add(() => new Promise<void>((r) => server.close(() => r())), 'sns receiver');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

const until = <T>(what: string, fn: () => Promise<T | undefined>, ms = 15_000): Promise<T> => pollUntil(what, fn, ms, 100);

describe('SNS + event subscriptions (real controller, real HTTP receiver)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let mod: MonitoringModule;
  let rx: Awaited<ReturnType<typeof receiver>>;
  let topicUuid: string;

  const start = async (dataDir?: string): Promise<void> => {
    mod = monitoringModule({ delivery: { backoffMs: 100, maxAttempts: 3, pollMs: 100, timeoutMs: 2_000 } });
    c = await testController(cleanup, { registry: new ApiRegistry(), modules: [mod], ...(dataDir ? { dataDir } : {}) });
    admin = await c.login('admin', c.adminPassword);
  };

  const vm = (owner: string, state = 'Running'): Promise<Resource> =>
    c.store.create({ uuid: crypto.randomUUID(), kind: 'vm-instance', name: 'vm-ev', createDate: '', lastOpDate: '', ownerAccountUuid: owner, tags: [], state });

  before(async () => {
    rx = await receiver(cleanup);
    await start();
  });

  it('refuses bad bodies with 400s naming the field', async () => {
    const noUrl = await admin.post('/v1/sns-endpoints', { name: 'x', type: 'HTTP' });
    assert.equal(noUrl.status, 400);
    assert.equal(noUrl.body.field, 'url');
    const wrongNs = await admin.post('/v1/event-subscriptions', { name: 's', namespace: 'ZStack/Host', eventName: 'VmStateChanged', actions: [] });
    assert.equal(wrongNs.status, 400);
    assert.equal(wrongNs.body.field, 'namespace');
    const noTopic = await admin.post('/v1/event-subscriptions', { name: 's', namespace: 'ZStack/VM', eventName: 'VmStateChanged', actions: [{ actionType: 'sns', actionUuid: crypto.randomUUID() }] });
    assert.equal(noTopic.status, 400);
    assert.equal(noTopic.body.field, 'actions.0.actionUuid');
    const badRe = await admin.post('/v1/alarms', { name: 'a', namespace: 'ZStack/VM', metricName: 'CPUAverageUsedUtilization', comparisonOperator: 'GreaterThan', threshold: 1, labels: [{ key: 'VMUuid', op: 'Regex', value: '(' }] });
    assert.equal(badRe.status, 400);
    assert.equal(badRe.body.field, 'labels.0.value');
  });

  it('a VM state change reaches a subscribed HTTP endpoint (basic auth, template)', async () => {
    const ep = await admin.post('/v1/sns-endpoints', { name: 'hook', type: 'HTTP', url: rx.url, username: 'ops', password: 'hook-secret-1' });
    assert.equal(ep.status, 201, JSON.stringify(ep.body));
    assert.equal(ep.body.password, undefined);
    assert.ok(!JSON.stringify((await admin.get(`/v1/sns-endpoints/${ep.body.uuid}`)).body).includes('hook-secret-1'));
    // stored sealed (AES-256-GCM under the controller's secret.key): the inventory holds no clear password
    const raw = await c.store.get(ep.body.uuid);
    assert.ok(!JSON.stringify(raw).includes('hook-secret-1'), 'not in the stored record');
    assert.match(String(raw?._passwordSealed), /^v1:/);
    const t = await admin.post('/v1/sns-topics', { name: 'ops' });
    topicUuid = t.body.uuid;
    const sub = await admin.post(`/v1/sns-topics/${topicUuid}/actions`, { subscribe: { endpointUuid: ep.body.uuid } });
    assert.equal(sub.status, 200, JSON.stringify(sub.body));
    assert.deepEqual(sub.body.endpointUuids, [ep.body.uuid]);
    const es = await admin.post('/v1/event-subscriptions', { name: 'vm-changes', namespace: 'ZStack/VM', eventName: 'VmStateChanged', labels: [{ key: 'NewState', op: 'Regex', value: 'Stopp.*' }], actions: [{ actionType: 'sns', actionUuid: topicUuid }], messageTemplate: 'VM ${RESOURCE_NAME}: ${EVENT_DETAIL}' });
    assert.equal(es.status, 201, JSON.stringify(es.body));

    const v = await vm(c.auth.adminAccountUuid);
    await c.store.update(v.uuid, { state: 'Starting' }); // does not match the label
    await c.store.update(v.uuid, { state: 'Stopped' });
    const got = await until('the notification', async () => rx.got.find((g) => g.body.resourceUuid === v.uuid));
    assert.equal(got.body.eventName, 'VmStateChanged');
    assert.equal(got.body.message, 'VM vm-ev: state Starting → Stopped');
    assert.equal(got.body.labels.NewState, 'Stopped');
    assert.equal(got.auth, `Basic ${Buffer.from('ops:hook-secret-1').toString('base64')}`);
    assert.equal(rx.got.filter((g) => g.body.resourceUuid === v.uuid).length, 1, 'Starting did not match the label');
    const d = await until('the delivery record', async () => {
      const l = await admin.get(`/v1/sns-deliveries?q=state=Succeeded&q=endpointUuid=${ep.body.uuid}`);
      return l.body.inventories[0] as Record<string, any> | undefined;
    });
    assert.equal(d.attempts, 1);
  });

  it('an endpoint that is down is retried with backoff, then recorded Failed', async () => {
    const down = await admin.post('/v1/sns-endpoints', { name: 'down', type: 'HTTP', url: 'http://127.0.0.1:9/nothing-listens' });
    await admin.post(`/v1/sns-topics/${topicUuid}/actions`, { subscribe: { endpointUuid: down.body.uuid } });
    const v = await vm(c.auth.adminAccountUuid);
    await c.store.update(v.uuid, { state: 'Stopped' });
    const failed = await until('the Failed delivery', async () => {
      const l = await admin.get(`/v1/sns-deliveries?q=endpointUuid=${down.body.uuid}&q=state=Failed`);
      return l.body.inventories[0] as Record<string, any> | undefined;
    });
    assert.equal(failed.attempts, 3);
    assert.match(failed.lastError, /fetch failed|ECONNREFUSED/);
    // the working endpoint of the same topic got it once
    await until('the other endpoint', async () => rx.got.find((g) => g.body.resourceUuid === v.uuid));
  });

  it('one occurrence is queued once, also by a restarted controller; accounts hear only their own', async () => {
    const v = await vm(c.auth.adminAccountUuid, 'Running');
    const stopped = await c.store.update(v.uuid, { state: 'Stopped' });
    await until('the notification', async () => rx.got.find((g) => g.body.resourceUuid === v.uuid));
    const ev = { type: 'resource.updated' as const, kind: 'vm-instance', uuid: v.uuid, ownerAccountUuid: v.ownerAccountUuid, resource: stopped, time: stopped.lastOpDate, id: 0 };
    // a restart with the same inventory: the same event seen again queues nothing
    const dataDir = c.dataDir;
    await c.stop();
    await start(dataDir);
    const { deriveEvents } = await import('../../../controller/monitoring/events.js');
    const raised = deriveEvents(ev, { state: 'Running' }, { lowCapacityPercent: 10 });
    assert.equal(raised.length, 1);
    assert.equal(await mod.events!.dispatch(raised[0]!), 0);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(rx.got.filter((g) => g.body.resourceUuid === v.uuid).length, 1);

    // a normal account's subscription: its own VM yes, the admin's no
    const u = await c.account('sns-user');
    const ep = await u.post('/v1/sns-endpoints', { name: 'mine', type: 'HTTP', url: rx.url });
    const t = await u.post('/v1/sns-topics', { name: 'mine' });
    assert.equal((await u.post(`/v1/sns-topics/${t.body.uuid}/actions`, { subscribe: { endpointUuid: ep.body.uuid } })).status, 200);
    const adminEp = (await admin.get('/v1/sns-endpoints?q=name=hook')).body.inventories[0];
    assert.equal((await u.post(`/v1/sns-topics/${t.body.uuid}/actions`, { subscribe: { endpointUuid: adminEp.uuid } })).status, 400, "another account's endpoint");
    const us = await u.post('/v1/event-subscriptions', { name: 'mine', namespace: 'ZStack/VM', eventName: 'VmStateChanged', actions: [{ actionType: 'sns', actionUuid: t.body.uuid }] });
    assert.equal(us.status, 201);
    const theirs = await vm(c.auth.adminAccountUuid);
    const mine = await vm(u.accountUuid);
    await c.store.update(theirs.uuid, { state: 'Stopped' });
    await c.store.update(mine.uuid, { state: 'Stopped' });
    await until('the account notification', async () => rx.got.find((g) => g.body.resourceUuid === mine.uuid && g.body.subscriptionUuid === us.body.uuid));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(rx.got.filter((g) => g.body.resourceUuid === theirs.uuid && g.body.subscriptionUuid === us.body.uuid).length, 0);
    assert.equal(rx.got.filter((g) => g.body.resourceUuid === mine.uuid && g.body.subscriptionUuid === us.body.uuid).length, 1);
  });
});
