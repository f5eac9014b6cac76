// SSE /v1/events (resource changes and job progress, filtered per account) and
// POST /v1/agent-events (agent token → host uuid → event bus).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import type { AgentEventIn } from '../../../controller/events/bus.js';
import { Obj, Type } from '../../../shared/protocol/schema.js';

interface Sse {
  events: Array<{ event: string; id: string; data: any }>;
  waitFor(pred: (e: { event: string; id: string; data: any }) => boolean, ms?: number): Promise<{ event: string; id: string; data: any }>;
  close(): void;
}

async function openSse(url: string, token: string, qs = '', lastEventId?: string): Promise<Sse> {
  const ac = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  const res = await fetch(`${url}/v1/events${qs}`, { headers, signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const events: Sse['events'] = [];
  const waiters: Array<() => void> = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e: Record<string, string> = {};
          for (const line of block.split('\n')) {
            const m = /^(\w+): ?(.*)$/.exec(line);
            if (m) e[m[1]!] = m[2]!;
          }
          if (e.event) events.push({ event: e.event, id: e.id ?? '', data: JSON.parse(e.data!) });
          waiters.splice(0).forEach((w) => w());
        }
      }
    } catch {
      /* aborted */
    }
  })();
  return {
    events,
    async waitFor(pred, ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = events.find(pred);
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no matching event within ${ms} ms; got ${events.map((e) => e.event).join(', ')}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
    close: () => ac.abort(),
  };
}

describe('controller API: events', function () {
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient & { token?: string };
  let b: ApiClient & { accountUuid: string };
  const registry = new ApiRegistry();
  registry.registerAction('volumes', 'slowCount', {
    long: true,
    schema: Obj({ to: Type.Integer({ minimum: 1 }) }),
    run: async (_v, p, ctx) => {
      for (let i = 1; i <= (p.to as number); i++) {
        await new Promise((r) => setTimeout(r, 20));
        ctx.job?.progress((i * 100) / (p.to as number));
      }
      return { ok: true };
    },
  });

  before(async function () {
    c = await testController(cleanup, { registry });
    admin = await c.login('admin', c.adminPassword);
    b = await c.account('ev-b');
  });

  it('streams resource.created/updated/deleted; a normal account sees its own and the admin\'s shared catalog only', async function () {
    const sa = await openSse(c.url, admin.token!);
    const sb = await openSse(c.url, b.token!);
    cleanup.add(() => sa.close());
    cleanup.add(() => sb.close());
    const z = (await admin.post('/v1/zones', { name: 'ev-zone' })).body;
    await admin.put(`/v1/zones/${z.uuid}`, { description: 'changed' });
    const v = (await b.post('/v1/volumes', { name: 'ev-vol', diskSize: 1024 * 1024 * 10 })).body;
    const created = await sa.waitFor((e) => e.event === 'resource.created' && e.data.uuid === z.uuid);
    assert.equal(created.data.kind, 'zone');
    assert.equal(created.data.resource.name, 'ev-zone');
    const upd = await sa.waitFor((e) => e.event === 'resource.updated' && e.data.uuid === z.uuid);
    assert.equal(upd.data.resource.description, 'changed');
    await sa.waitFor((e) => e.event === 'resource.created' && e.data.uuid === v.uuid);
    await sb.waitFor((e) => e.event === 'resource.created' && e.data.uuid === v.uuid);
    const cl = (await admin.post('/v1/clusters', { name: 'ev-cluster', zoneUuid: z.uuid, hypervisorType: 'KVM' })).body;
    await admin.del(`/v1/clusters/${cl.uuid}`);
    await admin.del(`/v1/zones/${z.uuid}`);
    await sa.waitFor((e) => e.event === 'resource.deleted' && e.data.uuid === z.uuid);
    // zones are part of the admin's shared catalog (B may GET them), clusters are not
    await sb.waitFor((e) => e.event === 'resource.deleted' && e.data.uuid === z.uuid);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(sa.events.some((e) => e.data.uuid === cl.uuid));
    assert.ok(!sb.events.some((e) => e.data.uuid === cl.uuid), 'B saw the admin\'s cluster');
    assert.ok(sb.events.every((e) => e.data.ownerAccountUuid === b.accountUuid || e.data.accountUuid === b.accountUuid || e.data.kind === 'zone'));
    // account resources never carry the password hash: create and update one while streaming
    const acct = (await admin.post('/v1/accounts', { name: `ev-leak-${Date.now()}`, password: 'leak-check-pw-1' })).body;
    await admin.put(`/v1/accounts/${acct.uuid}`, { password: 'leak-check-pw-2' });
    const acctCreated = await sa.waitFor((e) => e.event === 'resource.created' && e.data.uuid === acct.uuid);
    const acctUpdated = await sa.waitFor((e) => e.event === 'resource.updated' && e.data.uuid === acct.uuid);
    for (const e of [acctCreated, acctUpdated]) {
      const text = JSON.stringify(e.data);
      assert.equal(e.data.kind, 'account');
      assert.ok(!text.includes('scrypt$') && !/password/i.test(text), `account event leaks the password (hash): ${text}`);
    }
  });

  it('streams job.created/progress/finished to the job\'s account; ?types and ?kinds filter', async function () {
    const sb = await openSse(c.url, b.token!, '?types=job.progress,job.finished');
    const sk = await openSse(c.url, b.token!, '?kinds=zone');
    cleanup.add(() => sb.close());
    cleanup.add(() => sk.close());
    const v = (await b.post('/v1/volumes', { name: 'ev-vol2', diskSize: 1024 * 1024 * 10 })).body;
    const r = await b.post(`/v1/volumes/${v.uuid}/actions`, { slowCount: { to: 3 } });
    assert.equal(r.status, 202);
    const fin = await sb.waitFor((e) => e.event === 'job.finished' && e.data.job.uuid === r.body.jobUuid);
    assert.equal(fin.data.job.state, 'Succeeded');
    assert.ok(sb.events.some((e) => e.event === 'job.progress' && e.data.job.uuid === r.body.jobUuid));
    assert.ok(sb.events.every((e) => e.event === 'job.progress' || e.event === 'job.finished'));
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(sk.events.length, 0, 'kinds=zone: no volume or job events');
  });

  it('POST /v1/agent-events: needs a registered agent token; events reach the bus stamped with that host', async function () {
    const hostUuid = randomUUID();
    const token = c.agents.register(hostUuid);
    const got: AgentEventIn[] = [];
    const off = c.bus.onAgentEvent('vm.state', (e) => void got.push(e));
    cleanup.add(off);
    const ev = { type: 'vm.state', agent: 'kvmagent', time: new Date().toISOString(), hostUuid: 'someone-else', data: { vmUuid: 'v1', state: 'Stopped' } };
    const anon = await c.anon.post('/v1/agent-events', { events: [ev] });
    assert.equal(anon.status, 401);
    const wrong = await c.anon.req('POST', '/v1/agent-events', { events: [ev] }, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    const session = await admin.post('/v1/agent-events', { events: [ev] });
    assert.equal(session.status, 401, 'a user session is not an agent token');
    const ok = await c.anon.req('POST', '/v1/agent-events', { events: [ev, { ...ev, type: 'other' }] }, { authorization: `Bearer ${token}` });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { accepted: 2 });
    assert.equal(got.length, 1);
    assert.equal(got[0]!.hostUuid, hostUuid, 'an agent cannot speak for another host');
    assert.deepEqual(got[0]!.data, { vmUuid: 'v1', state: 'Stopped' });
    const bad = await c.anon.req('POST', '/v1/agent-events', { events: [{ type: 'x' }] }, { authorization: `Bearer ${token}` });
    assert.equal(bad.status, 400);
    assert.match(bad.body.field, /^events\.0\./);
    c.agents.unregister(hostUuid);
    assert.equal((await c.anon.req('POST', '/v1/agent-events', { events: [ev] }, { authorization: `Bearer ${token}` })).status, 401);
  });

  it('a client reconnecting with Last-Event-ID gets what it missed; an unknown id gets `resync`', async function () {
    const s1 = await openSse(c.url, admin.token!, '?kinds=zone');
    cleanup.add(() => s1.close());
    const z1 = (await admin.post('/v1/zones', { name: 'ev-replay-1' })).body;
    const seen = await s1.waitFor((e) => e.data.uuid === z1.uuid);
    assert.match(seen.id, /^[0-9a-z]+\.\d+$/);
    s1.close();
    const z2 = (await admin.post('/v1/zones', { name: 'ev-replay-2' })).body;
    await admin.put(`/v1/zones/${z2.uuid}`, { description: 'x' });
    const s2 = await openSse(c.url, admin.token!, '?kinds=zone', seen.id);
    cleanup.add(() => s2.close());
    await s2.waitFor((e) => e.event === 'resource.updated' && e.data.uuid === z2.uuid);
    assert.deepEqual(
      s2.events.filter((e) => e.data.uuid === z2.uuid).map((e) => e.event),
      ['resource.created', 'resource.updated'],
      'missed events replayed in order',
    );
    assert.ok(!s2.events.some((e) => e.data.uuid === z1.uuid), 'nothing before the given id');
    const s3 = await openSse(c.url, admin.token!, '', 'zzz.5');
    cleanup.add(() => s3.close());
    const r = await s3.waitFor((e) => e.event === 'resync');
    assert.match(r.data.reason, /re-read/);
    // replay respects ownership too
    const sb = await openSse(c.url, b.token!, '', seen.id);
    cleanup.add(() => sb.close());
    await new Promise((res) => setTimeout(res, 200));
    assert.ok(sb.events.every((e) => e.data.kind === 'zone' || e.data.ownerAccountUuid === b.accountUuid || e.data.accountUuid === b.accountUuid));
  });
});
