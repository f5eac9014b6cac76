// Email endpoints through a real SMTP conversation: a local SMTP sink (smtp-server) on
// 127.0.0.1 with authentication; a VmStateChanged notification arrives as a mail to the
// endpoint's address. Without a reachable SMTP server the delivery is retried and recorded Failed.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { monitoringModule } from '../../../controller/monitoring/module.js';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { until as pollUntil } from '../../harness/assert.js';

const until = <T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> => pollUntil(what, fn, ms, 100);

describe('SNS email endpoints (real SMTP sink)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  const mails: Array<{ to: string[]; data: string; user?: string }> = [];

  const sink = async (): Promise<number> => {
    const server = new SMTPServer({
      authOptional: false,
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      onAuth: (auth, _s, cb) => (auth.username === 'mailer' && auth.password === 'smtp-pass-1' ? cb(null, { user: 'mailer' }) : cb(new Error('bad credentials'))),
      onData: (stream, session, cb) => {
        let data = '';
        stream.on('data', (b: Buffer) => (data += b.toString()));
        stream.on('end', () => {
          mails.push({ to: session.envelope.rcptTo.map((r) => r.address), data, user: session.user as string | undefined });
          cb();
        });
      },
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => server.close(() => r())), 'smtp sink');
    return (server.server.address() as AddressInfo).port;
  };

  const setup = async (smtpUrl: string): Promise<{ c: TestController; admin: ApiClient; topic: string }> => {
    const mod = monitoringModule({ smtp: { url: smtpUrl, from: 'cloud@example.test' }, delivery: { pollMs: 100, backoffMs: 100, maxAttempts: 2, timeoutMs: 5_000 } });
    const c = await testController(cleanup, { registry: new ApiRegistry(), modules: [mod] });
    const admin = await c.login('admin', c.adminPassword);
    const ep = await admin.post('/v1/sns-endpoints', { name: 'ops-mail', type: 'Email', email: 'ops@example.test' });
    assert.equal(ep.status, 201, JSON.stringify(ep.body));
    const t = await admin.post('/v1/sns-topics', { name: 'mail' });
    await admin.post(`/v1/sns-topics/${t.body.uuid}/actions`, { subscribe: { endpointUuid: ep.body.uuid } });
    const s = await admin.post('/v1/event-subscriptions', { name: 'vm', namespace: 'ZStack/VM', eventName: 'VmStateChanged', actions: [{ actionType: 'sns', actionUuid: t.body.uuid }] });
    assert.equal(s.status, 201);
    return { c, admin, topic: t.body.uuid };
  };

  const stopVm = async (c: TestController): Promise<string> => {
    const vm = await c.store.create({ uuid: crypto.randomUUID(), kind: 'vm-instance', name: 'mail-vm', createDate: '', lastOpDate: '', ownerAccountUuid: c.auth.adminAccountUuid, tags: [], state: 'Running' });
    await c.store.update(vm.uuid, { state: 'Stopped' });
    return vm.uuid;
  };

  it('a notification arrives as a mail (authenticated SMTP)', async () => {
    const port = await sink();
    const { c } = await setup(`smtp://mailer:smtp-pass-1@127.0.0.1:${port}`);
    const vmUuid = await stopVm(c);
    const m = await until('the mail', async () => mails.find((x) => x.data.includes(vmUuid)));
    assert.deepEqual(m.to, ['ops@example.test']);
    assert.equal(m.user, 'mailer');
    assert.match(m.data, /Subject: VmStateChanged: mail-vm/);
    assert.match(m.data, /From: cloud@example\.test/);
  });

  it('an unreachable SMTP server: retried, then Failed with the reason', async () => {
    const { c, admin } = await setup('smtp://127.0.0.1:9');
    await stopVm(c);
    const failed = await until('the Failed delivery', async () => (await admin.get('/v1/sns-deliveries?q=state=Failed')).body.inventories[0] as Record<string, any> | undefined);
    assert.equal(failed.attempts, 2);
    assert.equal(failed.endpointType, 'Email');
    assert.match(failed.lastError, /ECONNREFUSED|connect/i);
  });
});
