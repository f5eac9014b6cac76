// The API's read path (controller/api/read-path.ts, issue 19): GETs of collections and
// resources served on a plain context instead of Koa must answer exactly as Koa does. A real
// controller with the real modules (policy gate, quotas, audits, metrics routes…) on a real
// SQLite file; each request is sent twice over real HTTP, read path on and off, and the two
// answers compared: status line, every header but Date (names, values, order) and body bytes.
// The requests mix good ones, bad and missing tokens, other accounts, users under policies,
// access keys, list parameters good and bad, hostile input, paths the read path must leave to
// Koa, and other methods. Each request is also checked to have gone the way it should (read
// path or Koa), so a read path that quietly never runs fails too. Hostile input is 4xx, never 5xx.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import type { ControllerModule } from '../../../controller/main.js';
import { installHostModule } from '../../../controller/host/api.js';
import { cloudModule } from '../../../controller/cloud/install.js';
import { monitoringModule } from '../../../controller/monitoring/module.js';
import { identityModule } from '../../../controller/identity/module.js';
import type { Resource } from '../../../controller/store/types.js';

/**
 * The modules whose API middlewares a read meets or passes (the policy gate, quotas, login
 * limits, metrics and migration-target routes; the audit log is always there), imported here
 * rather than through builtinModules(): its modules are loaded with import(), which under mocha
 * makes second copies of shared modules, whose errors the API then takes for internal ones.
 */
function modules(): ControllerModule[] {
  let hosts: ReturnType<typeof installHostModule> | undefined;
  return [
    { name: 'hosts', install: (s) => void (hosts = installHostModule(s)), stop: async () => hosts?.stop() },
    cloudModule() as ControllerModule,
    monitoringModule() as ControllerModule,
    identityModule({ repairPeriodMs: 0 }) as ControllerModule,
  ];
}

interface Answer {
  status: number;
  message: string;
  headers: string[];
  body: string;
}

/** One request on a fresh connection; the answer with its raw headers (Date left out). */
function send(base: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const h: Record<string, string> = { ...headers };
    if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
    const req = request({ host: u.hostname, port: u.port, method, path, headers: h, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) if (res.rawHeaders[i]!.toLowerCase() !== 'date') raw.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
        resolve({ status: res.statusCode ?? 0, message: res.statusMessage ?? '', headers: raw, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path}: no answer`)));
    req.end(body);
  });
}

describe('controller API: the read path answers exactly as Koa (real controller, real HTTP)', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let tenant: ApiClient & { accountUuid: string };
  let other: ApiClient & { accountUuid: string };
  let reader: string;
  let blind: string;
  let accessKey: string;
  const ids: Record<string, string> = {};
  const host = randomUUID();

  const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

  /**
   * The same request with the read path on, then off; the two answers must be equal. `fast`:
   * whether the read path must have served it. Returns the read path's answer.
   */
  const both = async (what: { method?: string; path: string; headers?: Record<string, string>; body?: string; fast: boolean }): Promise<Answer> => {
    const method = what.method ?? 'GET';
    const label = `${method} ${what.path.slice(0, 200)}`;
    const served = c.readPath.served;
    c.readPath.enabled = true;
    const viaRead = await send(c.url, method, what.path, what.headers ?? {}, what.body);
    assert.equal(c.readPath.served - served, what.fast ? 1 : 0, `${label}: ${what.fast ? 'not served by' : 'served by'} the read path`);
    c.readPath.enabled = false;
    let viaKoa: Answer;
    try {
      viaKoa = await send(c.url, method, what.path, what.headers ?? {}, what.body);
    } finally {
      c.readPath.enabled = true;
    }
    assert.deepEqual(viaRead, viaKoa, `${label}: the read path answers otherwise than Koa`);
    assert.ok(viaRead.status < 500, `${label}: ${viaRead.status} ${viaRead.body.slice(0, 300)}`);
    return viaRead;
  };

  before(async function () {
    c = await testController(cleanup, { modules: modules() });
    admin = await c.login('admin', c.adminPassword);
    tenant = await c.account('rp-tenant');
    other = await c.account('rp-other');
    assert.equal(c.readPath.enabled, true, 'the real modules leave the read path on');
    for (const n of ['z1', 'z2', 'z3']) {
      const z = await admin.post('/v1/zones', { name: n, description: `zone ${n} "quoted" ü` });
      assert.equal(z.status, 201, JSON.stringify(z.body));
      ids[n] = z.body.uuid;
    }
    const now = (i: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
    const vm = (i: number, owner: string): Resource => ({ uuid: randomUUID(), kind: 'vm-instance', name: `vm-${i}${i % 3 ? '' : ' 😀'}`, ownerAccountUuid: owner, tags: i % 2 ? ['a'] : [], createDate: now(i), lastOpDate: now(i), state: i % 4 ? 'Running' : 'Stopped', hostUuid: host, cpuNum: (i % 4) + 1, memorySize: 1024 * i, _placement: { internal: true } });
    const made = await c.store.createMany([...Array.from({ length: 12 }, (_, i) => vm(i, c.adminAccountUuid)), ...Array.from({ length: 5 }, (_, i) => vm(i + 20, tenant.accountUuid))]);
    ids.adminVm = made[0]!.uuid;
    ids.tenantVm = made[12]!.uuid;
    const img = await c.store.createMany([
      { uuid: randomUUID(), kind: 'image', name: 'shared-img', ownerAccountUuid: c.adminAccountUuid, tags: [], createDate: now(50), lastOpDate: now(50), state: 'Enabled' },
      { uuid: randomUUID(), kind: 'image', name: 'own-img', ownerAccountUuid: other.accountUuid, tags: [], createDate: now(51), lastOpDate: now(51), state: 'Enabled' },
    ]);
    ids.otherImage = img[1]!.uuid;
    // users of the tenant: one with the default (reads allowed), one denied reading zones
    const pol = await tenant.post('/v1/policies', { name: 'no-zones', statements: [{ effect: 'Deny', actions: ['zones:read'] }] });
    assert.equal(pol.status, 201, JSON.stringify(pol.body));
    const tenantName = (await tenant.get(`/v1/accounts/${tenant.accountUuid}`)).body.name as string;
    for (const [name, deny] of [['reader', false], ['blind', true]] as const) {
      const u = await tenant.post('/v1/users', { name, password: `${name}-password-1` });
      assert.equal(u.status, 201, JSON.stringify(u.body));
      if (deny) assert.equal((await tenant.post(`/v1/users/${u.body.uuid}/actions`, { attachPolicy: { policyUuid: pol.body.uuid } })).status, 200);
      const s = await c.anon.post('/v1/sessions', { accountName: tenantName, userName: name, password: `${name}-password-1` });
      assert.equal(s.status, 200, JSON.stringify(s.body));
      if (deny) blind = s.body.token;
      else reader = s.body.token;
    }
    const k = await tenant.post('/v1/access-keys', { description: 'rp' });
    assert.equal(k.status, 201, JSON.stringify(k.body));
    accessKey = `ak:${k.body.accessKeyId}:${k.body.secret}`;
  });

  it('lists and single resources, for the admin, accounts, users and access keys', async function () {
    const callers: Array<[string, Record<string, string>]> = [
      ['admin', bearer(admin.token!)],
      ['tenant', bearer(tenant.token!)],
      ['reader', bearer(reader)],
      ['blind', bearer(blind)],
      ['key', bearer(accessKey)],
    ];
    const paths = [
      '/v1/zones',
      '/v1/zones?limit=1',
      '/v1/zones?limit=0',
      '/v1/zones?count=true',
      '/v1/zones?count=false&limit=2',
      '/v1/zones?fields=uuid,name',
      '/v1/zones?fields=name&limit=1&start=1',
      '/v1/zones?sort=-name',
      '/v1/zones?sort=+name',
      '/v1/zones?sort=%2Bname',
      '/v1/zones?q=name=z2',
      '/v1/zones?q=name~=z%25',
      '/v1/zones?q=name!=z1&q=description~=%25%C3%BC%25',
      `/v1/zones?q=uuid?=${ids.z1},${ids.z3}`,
      '/v1/zones?replyWithCount=false&limit=1',
      `/v1/zones/${ids.z1}`,
      `/v1/zones/${ids.z2}?fields=name,description`,
      `/v1/vm-instances?q=state=Running&q=hostUuid=${host}&limit=3&sort=createDate`,
      `/v1/vm-instances?q=hostUuid=${host}&limit=4&sort=-memorySize`,
      '/v1/vm-instances?q=cpuNum>=2&q=cpuNum<4&fields=name,cpuNum',
      '/v1/vm-instances?q=name~=%25%F0%9F%98%80',
      `/v1/vm-instances/${ids.adminVm}`,
      `/v1/vm-instances/${ids.tenantVm}`,
      `/v1/images/${ids.otherImage}`,
      '/v1/images',
      '/v1/users',
      '/v1/policies?fields=name,statements',
      `/v1/accounts/${tenant.accountUuid}`,
      '/v1/accounts',
    ];
    const seen = new Set<number>();
    for (const [who, h] of callers) {
      for (const path of paths) {
        const a = await both({ path, headers: h, fast: true });
        seen.add(a.status);
        if (who === 'blind' && path.startsWith('/v1/zones')) assert.equal(a.status, 403, `${who} ${path}: the policy gate runs on the read path`);
      }
    }
    // the comparison met successes and refusals (not only errors, not only pages)
    assert.ok(seen.has(200) && seen.has(403) && seen.has(404), [...seen].join(','));
  });

  it('cursor pages, followed to the end', async function () {
    let path: string | undefined = `/v1/vm-instances?q=hostUuid=${host}&limit=5&sort=createDate`;
    let pages = 0;
    while (path) {
      const a = await both({ path, headers: bearer(admin.token!), fast: true });
      assert.equal(a.status, 200, a.body);
      const next = (JSON.parse(a.body) as { next?: string }).next;
      path = next ? `/v1/vm-instances?q=hostUuid=${host}&limit=5&sort=createDate&cursor=${next}` : undefined;
      pages++;
    }
    assert.equal(pages, 4, '17 VMs in pages of 5');
  });

  it('bad tokens and bad list parameters: the same 4xx', async function () {
    const h = bearer(tenant.token!);
    const cases: Array<{ path: string; headers?: Record<string, string>; ok?: true }> = [
      { path: '/v1/zones' },
      { path: '/v1/zones', headers: bearer('not-a-session') },
      { path: '/v1/zones', headers: bearer('ak:AAAAAAAAAAAA:bbbbbbbbbbbbbbbbbbbbbbbb') },
      { path: '/v1/zones', headers: { authorization: 'Bearer' } },
      { path: '/v1/zones', headers: { authorization: 'Basic YWRtaW46eA==' } },
      { path: `/v1/zones/${ids.z1}`, headers: bearer('x'.repeat(4000)) },
      { path: '/v1/zones?limit=abc', headers: h },
      { path: '/v1/zones?limit=-1', headers: h },
      { path: '/v1/zones?limit=99999999', headers: h },
      { path: '/v1/zones?limit=1&limit=2', headers: h },
      { path: '/v1/zones?start=1e3', headers: h },
      { path: '/v1/zones?unknown=1', headers: h },
      { path: '/v1/zones?__proto__=x', headers: h },
      { path: '/v1/zones?constructor=x&q=name=z1', headers: h },
      { path: '/v1/zones?q=', headers: h },
      { path: '/v1/zones?q=name', headers: h },
      { path: '/v1/zones?q=nosuchfield=1', headers: h },
      { path: '/v1/zones?q=_internal=1', headers: h },
      { path: '/v1/zones?q=name>=', headers: h },
      { path: '/v1/zones?q=name=%ZZ%', headers: h, ok: true },
      { path: '/v1/zones?q=name=%ED%A0%80', headers: h, ok: true },
      { path: '/v1/zones?q=name~=' + '%25_'.repeat(40), headers: h },
      { path: `/v1/zones?q=uuid?=${Array.from({ length: 300 }, (_, i) => i).join(',')}`, headers: h },
      { path: `/v1/zones?${Array.from({ length: 40 }, (_, i) => `q=name!=x${i}`).join('&')}`, headers: h },
      { path: `/v1/zones?q=name=${'a'.repeat(3000)}`, headers: h },
      { path: `/v1/zones?${'x=1&'.repeat(2000)}`, headers: h },
      { path: '/v1/zones?sort=', headers: h },
      { path: '/v1/zones?sort=-', headers: h },
      { path: '/v1/zones?sort=name;drop', headers: h },
      { path: '/v1/zones?sort=nosuch', headers: h },
      { path: '/v1/zones?count=yes', headers: h },
      { path: '/v1/zones?replyWithCount=1', headers: h },
      { path: '/v1/zones?fields=', headers: h },
      { path: '/v1/zones?fields=nope', headers: h },
      { path: '/v1/zones?fields=a..b', headers: h },
      { path: '/v1/zones?cursor=garbage', headers: h },
      { path: '/v1/zones?cursor=', headers: h },
      { path: '/v1/zones?cursor=eyJ4Ijox', headers: h },
      { path: '/v1/zones?cursor=abc&start=1', headers: h },
      { path: `/v1/zones?cursor=${'A'.repeat(5000)}`, headers: h },
      { path: `/v1/zones/${ids.z1}?fields=nope`, headers: h },
      // a single resource takes one fields= or none
      { path: `/v1/zones/${ids.z1}?fields=a&fields=b`, headers: h, ok: true },
      { path: `/v1/zones/${ids.z1}?anything=goes`, headers: h, ok: true },
      { path: '/v1/zones/not-a-uuid', headers: h },
      { path: `/v1/vm-instances/${ids.adminVm}`, headers: h },
      { path: `/v1/vm-instances/${ids.tenantVm}`, headers: bearer(other.token!) },
      { path: `/v1/users/${randomUUID()}`, headers: h },
      { path: '/v1/zones/..', headers: h },
      { path: '/v1/zones/.', headers: h },
      { path: `/v1/zones/${'9'.repeat(2000)}`, headers: h },
    ];
    for (const x of cases) {
      const a = await both({ path: x.path, headers: x.headers ?? {}, fast: true });
      assert.equal(a.status >= 400, !x.ok, `${x.path.slice(0, 100)}: ${a.status} ${a.body.slice(0, 200)}`);
    }
  });

  it('what the read path leaves to Koa answers the same too', async function () {
    const h = bearer(tenant.token!);
    const ah = bearer(admin.token!);
    const cases: Array<{ method?: string; path: string; headers?: Record<string, string>; body?: string }> = [
      { method: 'HEAD', path: '/v1/zones', headers: h },
      { method: 'HEAD', path: `/v1/zones/${ids.z1}`, headers: h },
      { method: 'OPTIONS', path: '/v1/zones', headers: h },
      { method: 'OPTIONS', path: `/v1/zones/${ids.z1}`, headers: h },
      { method: 'DELETE', path: '/v1/zones', headers: ah },
      { method: 'TRACE', path: '/v1/zones', headers: h },
      { method: 'POST', path: '/v1/zones', headers: { ...h, 'content-type': 'application/json' }, body: '{"name":' },
      { path: '/v1/nosuch', headers: h },
      { path: '/v1/nosuch/x', headers: h },
      { path: '/v1/ZONES', headers: h },
      { path: '/v1/Zones', headers: h },
      { path: '/v1/zones/', headers: h },
      { path: '/v1/zones//', headers: h },
      { path: `/v1/zones/${ids.z1}/`, headers: h },
      { path: `/v1/zones/%${ids.z1}`, headers: h },
      { path: `/v1/zones/${encodeURIComponent(ids.z1!)}%2F`, headers: h },
      { path: '/v1/zones/%E0%A4%A', headers: h },
      { path: '/v1/zones/a%2Fb', headers: h },
      { path: `/v1/zones/${ids.z1}/actions`, headers: h },
      { path: `/v1/vm-instances/${randomUUID()}/migration-targets`, headers: ah },
      { path: '/v1/zones?q=name=a#frag', headers: h },
      { path: '/v1/jobs', headers: h },
      { path: `/v1/jobs/${randomUUID()}`, headers: h },
      { path: '/v1/resources?q=name=z1', headers: h },
      { path: '/v1/audits?limit=1', headers: ah },
      { path: '/v1/quotas', headers: h },
      { path: '/v1/metrics/names', headers: ah },
      { path: '/v1/sessions', headers: h },
      { path: '/v1/sessions/current', headers: h },
      { path: '/v1', headers: h },
      { path: '/v1/', headers: h },
      { path: '/nowhere', headers: h },
      { path: '/health' },
      // a signed request is verified by the HMAC layer, on Koa only
      { path: '/v1/zones', headers: { authorization: 'TSTACK-HMAC-SHA256 Credential=AAAAAAAA, Nonce=bbbbbbbbbbbbbbbb, Signature=' + '0'.repeat(64), 'x-tstack-date': new Date().toISOString() } },
    ];
    for (const x of cases) await both({ ...x, fast: false });
  });

  it('GET with a body, odd headers and content types: the read path, same answer', async function () {
    const h = bearer(tenant.token!);
    await both({ path: '/v1/zones', headers: { ...h, 'content-type': 'application/json' }, body: '{"a":1}', fast: true });
    await both({ path: '/v1/zones?limit=1', headers: { ...h, 'content-type': 'application/json' }, body: '{"broken', fast: true });
    await both({ path: '/v1/zones', headers: { ...h, 'content-type': 'text/plain', 'content-encoding': 'br' }, body: 'zzz', fast: true });
    await both({ path: '/v1/zones', headers: { ...h, accept: 'text/html', 'x-forwarded-for': '1.2.3.4', referer: 'x' }, fast: true });
    await both({ path: `/v1/zones/${ids.z1}`, headers: { ...h, 'accept-encoding': 'gzip' }, fast: true });
  });

  it('counts its requests in the same metrics series as Koa (route label, status)', async function () {
    const series = async (): Promise<number> => {
      const m = await admin.get('/metrics');
      const line = String(m.body)
        .split('\n')
        .find((l) => l.startsWith('tstack_http_requests_total{') && l.includes('method="GET"') && l.includes('route="/v1/:collection/:uuid"') && l.includes('status="200"'));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const before = await series();
    for (let i = 0; i < 3; i++) await both({ path: `/v1/zones/${ids.z3}`, headers: bearer(admin.token!), fast: true });
    assert.equal((await series()) - before, 6, 'three through each way, all in the same series');
  });

  it('the in-flight limit holds on the read path (503 + Retry-After, as through Koa)', async function () {
    const busy = await testController(cleanup, { modules: modules(), maxInFlight: 0 });
    assert.equal(busy.readPath.enabled, true);
    const served = busy.readPath.served;
    const a = await send(busy.url, 'GET', '/v1/zones', bearer('whatever'));
    assert.equal(busy.readPath.served - served, 1);
    busy.readPath.enabled = false;
    const b = await send(busy.url, 'GET', '/v1/zones', bearer('whatever'));
    assert.equal(a.status, 503, a.body);
    assert.ok(a.headers.includes('Retry-After: 1'), a.headers.join('\n'));
    assert.deepEqual(a, b);
  });
});
