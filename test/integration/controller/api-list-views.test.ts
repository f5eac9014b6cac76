// List pages served from the SQLite store's view texts (issue 19: no parse, shape and
// stringify per page): for the same records, every such page is byte for byte the page the
// shaped path gives (the same controller with the store's listViews taken away), internal
// fields never appear, a kind with hidden fields and a normal account's page of a shared kind
// still go the shaped way, and a body written by an older version (no view_len) is shown
// right. A real controller on a real SQLite file, over HTTP.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { useCleanup } from '../../harness/cleanup.js';
import { dbPath, testController, type ApiClient, type TestController } from '../../harness/controller.js';
import type { Resource } from '../../../controller/store/types.js';

const LEAK = 'LEAKED-INTERNAL';

describe('controller API: list pages from stored views (real SQLite, real HTTP)', function () {
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let tenant: ApiClient & { accountUuid: string };
  const hosts = [randomUUID(), randomUUID()];
  let viewCalls = 0;

  /** The page's text, its status and content type. */
  const raw = async (cl: ApiClient, path: string): Promise<{ status: number; text: string; type: string | null }> => {
    const res = await fetch(cl.url + path, { headers: { authorization: `Bearer ${cl.token}` } });
    return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
  };

  /** The page as served from views, then as shaped with the store's listViews taken away. */
  const bothWays = async (cl: ApiClient, path: string): Promise<{ views: string; shaped: string; usedViews: boolean }> => {
    const before = viewCalls;
    const v = await raw(cl, path);
    const usedViews = viewCalls > before;
    const store = c.store as { listViews?: unknown };
    const keep = store.listViews;
    delete store.listViews;
    try {
      const s = await raw(cl, path);
      assert.equal(v.status, 200, `${path}: ${v.text}`);
      assert.equal(s.status, 200, `${path}: ${s.text}`);
      assert.equal(v.type, s.type);
      return { views: v.text, shaped: s.text, usedViews };
    } finally {
      store.listViews = keep;
    }
  };

  const vm = (i: number, owner: string, extra: Record<string, unknown> = {}): Resource => ({
    uuid: randomUUID(),
    kind: 'vm-instance',
    name: i % 3 === 0 ? `vm-${i} 😀 "q" \\ ü` : `vm-${i}`,
    createDate: '',
    lastOpDate: '',
    ownerAccountUuid: owner,
    tags: i % 2 ? ['a', `t${i}`] : [],
    state: i % 4 === 3 ? 'Stopped' : 'Running',
    hostUuid: hosts[i % 2]!,
    cpuNum: (i % 5) + 1,
    memorySize: 1024 * (i + 1),
    ...(i % 2 ? { description: `d${i}` } : {}),
    ...(i % 3 ? { _placement: { leak: LEAK, i }, _z: LEAK } : {}),
    ...extra,
  });

  before(async function () {
    c = await testController(cleanup);
    admin = await c.login('admin', c.adminPassword);
    tenant = await c.account('views');
    const store = c.store as { listViews?: (...a: unknown[]) => unknown };
    const inner = store.listViews!;
    store.listViews = (...a: unknown[]) => {
      viewCalls++;
      return inner(...a);
    };
    const made = await c.store.createMany([...Array.from({ length: 24 }, (_, i) => vm(i, c.adminAccountUuid)), ...Array.from({ length: 9 }, (_, i) => vm(i + 100, tenant.accountUuid))]);
    // rewritten rows too (update and transition: view_len's sign flips each write)
    await c.store.update(made[1]!.uuid, { _late: LEAK, name: 'renamed-1', memorySize: 7 });
    await c.store.update(made[1]!.uuid, { description: 'again' });
    await c.store.transition(made[2]!.uuid, 'Running', 'Stopped', { _why: LEAK });
    await c.store.update(made[25]!.uuid, { _owner_note: LEAK, cpuNum: 64 });
  });

  const paths = (host: string): string[] => [
    '/v1/vm-instances',
    '/v1/vm-instances?limit=5',
    `/v1/vm-instances?q=state=Running&q=hostUuid=${host}&limit=3&sort=createDate`,
    `/v1/vm-instances?q=state=Running&q=hostUuid=${host}&limit=3&sort=createDate&replyWithCount=false`,
    '/v1/vm-instances?sort=-name&limit=4&start=2',
    '/v1/vm-instances?sort=cpuNum&limit=7',
    '/v1/vm-instances?q=tags=a&sort=-memorySize',
    '/v1/vm-instances?q=name~=vm-1%25&limit=0',
    '/v1/vm-instances?q=state=Nothing',
  ];

  it('every page is the shaped page byte for byte, with no internal field (admin and a normal account, cursors followed)', async function () {
    for (const cl of [admin, tenant]) {
      for (const path of paths(hosts[0]!)) {
        let p: string | undefined = path;
        for (let n = 0; p !== undefined && n < 20; n++) {
          const r = await bothWays(cl, p);
          assert.ok(r.usedViews, `${p}: served from the views`);
          assert.equal(r.views, r.shaped, p);
          assert.ok(!r.views.includes(LEAK) && !r.views.includes('"_'), `${p}: ${r.views.slice(0, 300)}`);
          const next = (JSON.parse(r.views) as { next?: string }).next;
          // a cursor replaces start (the two exclude each other)
          const base = path.replace(/&start=\d+/, '');
          p = next === undefined ? undefined : `${base}${base.includes('?') ? '&' : '?'}cursor=${next}`;
        }
      }
    }
  });

  it('a normal account sees only its own VMs, exactly as the shaped page', async function () {
    const r = await bothWays(tenant, '/v1/vm-instances');
    const page = JSON.parse(r.views) as { inventories: Resource[]; total: number };
    assert.equal(page.total, 9);
    assert.deepEqual(new Set(page.inventories.map((v) => v.ownerAccountUuid)), new Set([tenant.accountUuid]));
    const all = JSON.parse((await bothWays(admin, '/v1/vm-instances')).views) as { total: number };
    assert.equal(all.total, 33);
  });

  it('fields=, count=true, a kind with hidden fields and a shared kind for a normal account go the shaped way; hidden fields stay hidden', async function () {
    const h = { uuid: randomUUID(), kind: 'host', name: 'views-host', createDate: '', lastOpDate: '', ownerAccountUuid: c.adminAccountUuid, tags: [], state: 'Enabled', managementIp: '192.0.2.1', password: 'HOST-SECRET-PW', agentToken: 'HOST-SECRET-TOKEN', _k: LEAK };
    await c.store.create(h);
    for (const [cl, path] of [
      [admin, '/v1/vm-instances?fields=uuid,name&limit=3'],
      [admin, '/v1/vm-instances?count=true'],
      [admin, '/v1/hosts'],
      [tenant, '/v1/zones'],
    ] as const) {
      const r = await bothWays(cl, path);
      assert.equal(r.usedViews, false, path);
      assert.equal(r.views, r.shaped, path);
      assert.ok(!r.views.includes('HOST-SECRET') && !r.views.includes(LEAK), `${path}: ${r.views.slice(0, 300)}`);
    }
    const hostsPage = JSON.parse((await raw(admin, '/v1/hosts')).text) as { inventories: Resource[] };
    assert.deepEqual(hostsPage.inventories.map((x) => x.name), ['views-host']);
  });

  it('a body written without view_len (an older tstack on the same file) is shown from the body: no stale view, no internal field', async function () {
    const [target] = await c.store.createMany([vm(900, c.adminAccountUuid, { name: 'old-writer', _a: LEAK })]);
    await c.store.update(target!.uuid, { cpuNum: 3 });
    // what the previous version's update wrote: JSON.stringify of the merged resource, internal
    // fields wherever they fall, the body and last_op_date only
    const db = new Database(dbPath(c.dataDir));
    try {
      const cur = JSON.parse((db.prepare('SELECT body FROM resources WHERE uuid = ?').get(target!.uuid) as { body: string }).body) as Record<string, unknown>;
      const old = { _first: LEAK, ...cur, name: 'old-writer-renamed-longer', _last: LEAK, extra: 'e' };
      db.prepare('UPDATE resources SET last_op_date = ?, body = ?, name = ? WHERE uuid = ?').run(new Date().toISOString(), JSON.stringify(old), old.name, target!.uuid);
    } finally {
      db.close();
    }
    const r = await bothWays(admin, '/v1/vm-instances?q=name~=old-writer%25');
    assert.ok(r.usedViews);
    assert.equal(r.views, r.shaped);
    const page = JSON.parse(r.views) as { inventories: Array<Record<string, unknown>> };
    assert.equal(page.inventories.length, 1);
    assert.equal(page.inventories[0]!.name, 'old-writer-renamed-longer');
    assert.equal(page.inventories[0]!.extra, 'e');
    assert.ok(!r.views.includes(LEAK));
    // and once this version writes it again, the row's view is kept again
    await c.store.update(target!.uuid, { cpuNum: 4 });
    const again = await bothWays(admin, '/v1/vm-instances?q=name~=old-writer%25');
    assert.equal(again.views, again.shaped);
    assert.ok(!again.views.includes(LEAK));
  });
});
