// The store suite on a real SQLite file (WAL), a peer being a second connection to the same file.
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { openStore, SqliteStore, INDEXED_FIELDS } from '../../../controller/store/index.js';
import type { Query, Resource } from '../../../controller/store/types.js';
import { tmpDir } from '../../harness/tmp.js';
import { useCleanup } from '../../harness/cleanup.js';
import { storeSuite } from './store.suite.js';
import { viewOf } from '../../../controller/store/view.js';

describe('controller store: SQLite', () => {
  const cleanup = useCleanup();
  let dir: string;
  let path = '';
  before(async () => {
    dir = await tmpDir('store-sqlite', cleanup);
  });

  storeSuite({
    open: async () => {
      path = join(dir, `inv-${randomUUID()}.db`);
      return openStore({ backend: 'sqlite', path });
    },
    openPeer: async () => openStore({ backend: 'sqlite', path }),
  });

  it('a page\'s total follows writes of this connection and of another one on the file (counts are reused only while nothing changed)', async () => {
    const p = join(dir, `counts-${randomUUID()}.db`);
    const a = await openStore({ backend: 'sqlite', path: p });
    const b = await openStore({ backend: 'sqlite', path: p });
    const zone = (name: string) => ({ uuid: randomUUID(), kind: 'zone', name, createDate: '', lastOpDate: '', ownerAccountUuid: 'x', tags: [], state: 'Enabled' });
    const page = async () => (await a.list({ kind: 'zone', filters: [{ field: 'state', op: '=', value: 'Enabled' }], limit: 1 })).total;
    await a.createMany([zone('z1'), zone('z2')]);
    assert.equal(await page(), 2);
    assert.equal(await page(), 2);
    const z3 = await a.create(zone('z3'));
    assert.equal(await page(), 3, 'a write of this connection');
    await b.create(zone('z4'));
    assert.equal(await page(), 4, 'a write of another connection');
    await b.update(z3.uuid, { state: 'Disabled' });
    assert.equal(await page(), 3, 'an update elsewhere that leaves the filter');
    await b.delete(z3.uuid);
    await a.close();
    await b.close();
  });

  it('persists across reopen, in WAL mode', async () => {
    const p = join(dir, 'persist.db');
    const a = await openStore({ backend: 'sqlite', path: p });
    await a.create({ uuid: randomUUID(), kind: 'zone', name: 'kept', createDate: '', lastOpDate: '', ownerAccountUuid: 'x', tags: [] });
    await a.close();
    assert.ok(existsSync(p));
    const b = await openStore({ backend: 'sqlite', path: p });
    const all = await b.list({ kind: 'zone' });
    assert.deepEqual(all.items.map((z) => z.name), ['kept']);
    await b.close();
  });

  const vm = (n: number, extra: Partial<Resource> = {}): Resource => ({
    uuid: randomUUID(), kind: 'vm-instance', name: `vm${n}`, createDate: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(), lastOpDate: '', ownerAccountUuid: 'acc',
    tags: [], state: 'Running', hostUuid: `host-${n % 3}`, zoneUuid: 'z1', type: 'UserVm', cpuNum: n, hasGpu: n % 2 === 0, ...extra,
  });
  const hostPage: Query = { kind: 'vm-instance', filters: [{ field: 'state', op: '=', value: 'Running' }, { field: 'hostUuid', op: '=', value: 'host-1' }], limit: 50 };

  it('opens a database of the expression-index schema: columns filled, old indexes dropped, data and queries intact', async () => {
    const p = join(dir, `old-${randomUUID()}.db`);
    // the schema and rows as the store before issue 19's field columns wrote them
    const raw = new Database(p);
    raw.pragma('journal_mode = WAL');
    raw.exec('CREATE TABLE resources (uuid PRIMARY KEY NOT NULL, kind NOT NULL, parent_uuid, state, owner, name, create_date NOT NULL, last_op_date NOT NULL, body NOT NULL)');
    for (const f of INDEXED_FIELDS) raw.exec(`CREATE INDEX resources_os_${f} ON resources(kind, json_extract(body, '$.${f}'), state, create_date, uuid) WHERE json_extract(body, '$.${f}') IS NOT NULL`);
    raw.exec("CREATE INDEX resources_f_status ON resources(kind, json_extract(body, '$.status')) WHERE json_extract(body, '$.status') IS NOT NULL");
    const rows: Resource[] = Array.from({ length: 12 }, (_, n) => ({ ...vm(n), lastOpDate: vm(n).createDate }));
    const ins = raw.prepare('INSERT INTO resources VALUES (?,?,?,?,?,?,?,?,?)');
    for (const r of rows) ins.run(r.uuid, r.kind, null, r.state, r.ownerAccountUuid, r.name, r.createDate, r.lastOpDate, JSON.stringify(r));
    // enough other rows that a sampled analysis (what PRAGMA optimize does) only estimates
    const vols = Array.from({ length: 5000 }, (_, n): Resource => ({ uuid: randomUUID(), kind: 'volume', name: `v${n}`, createDate: vm(n).createDate, lastOpDate: '', ownerAccountUuid: 'acc', tags: [], state: 'Ready', hostUuid: `host-${n % 50}` }));
    const put = raw.transaction((rs: Resource[]) => {
      for (const r of rs) ins.run(r.uuid, r.kind, null, r.state, r.ownerAccountUuid, r.name, r.createDate, r.lastOpDate, JSON.stringify(r));
    });
    // statistics from when the table was smaller, as a long-running database has them
    put(vols.slice(0, 3000));
    raw.exec('ANALYZE');
    put(vols.slice(3000));
    raw.close();

    const s = new SqliteStore({ path: p });
    await s.init();
    try {
      const inHost1 = rows.filter((r) => r.hostUuid === 'host-1').map((r) => r.uuid);
      const page = await s.list(hostPage);
      assert.deepEqual(page.items.map((r) => r.uuid), inHost1);
      assert.equal(page.total, 4);
      assert.deepEqual(await s.get(rows[5]!.uuid), rows[5]);
      assert.deepEqual((await s.list({ kind: 'vm-instance', filters: [{ field: 'type', op: '=', value: 'UserVm' }, { field: 'cpuNum', op: '>', value: 9 }] })).items.map((r) => r.name), ['vm10', 'vm11']);
      assert.match(s.planOf(hostPage), /resources_f:hostUuid/);
      await s.update(rows[1]!.uuid, { hostUuid: 'host-2' });
      assert.deepEqual((await s.list(hostPage)).items.map((r) => r.uuid), inHost1.slice(1), 'the column follows updates');
    } finally {
      await s.close();
    }
    const check = new Database(p, { readonly: true });
    const names = (check.prepare("SELECT name FROM sqlite_master WHERE type = 'index'").all() as Array<{ name: string }>).map((r) => r.name);
    // the migration re-analyzed the table: the planner has statistics of the new field indexes
    const stat = check.prepare('SELECT stat FROM sqlite_stat1 WHERE idx = ?').get('resources_f:hostUuid') as { stat: string } | undefined;
    check.close();
    // rows in the index, then rows per kind: counted, not estimated from a sample as PRAGMA optimize
    // does (its estimate made the planner walk a kind's state index on a migrated 100k database)
    const n = rows.length + vols.length;
    assert.deepEqual(stat?.stat.split(' ').slice(0, 2), [String(n), String(Math.floor((n + 1) / 2))], `statistics of the new hostUuid index after the migration: ${stat?.stat}`);
    assert.deepEqual(names.filter((n) => n.startsWith('resources_os_') || n.startsWith('resources_f_')), [], 'expression indexes dropped');
    assert.ok(names.includes('resources_f:hostUuid'));
  });

  it('field indexes: state only in those combined with state (hostUuid); an older file\'s indexes reshaped; lists in index order either way', async () => {
    const p = join(dir, `shape-${randomUUID()}.db`);
    // the file as the previous version left it: every field index with state
    const raw = new Database(p);
    raw.pragma('journal_mode = WAL');
    raw.close();
    const old = new SqliteStore({ path: p, compoundIndexes: [['hostUuid', 'state'], ['zoneUuid', 'state']] });
    await old.init();
    const rows = await old.createMany(Array.from({ length: 20 }, (_, n) => vm(n, { zoneUuid: `z${n % 2}` })));
    await old.close();
    const names = (): string[] => {
      const db = new Database(p, { readonly: true });
      try {
        return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'resources_f%'").all() as Array<{ name: string }>).map((r) => r.name).sort();
      } finally {
        db.close();
      }
    };
    assert.ok(names().includes('resources_f:zoneUuid'), names().join(' '));
    // opened as the controller opens it (hostUuid with state only)
    const s = new SqliteStore({ path: p, compoundIndexes: [['hostUuid', 'state']] });
    await s.init();
    try {
      const n = names();
      assert.ok(n.includes('resources_f:hostUuid') && n.includes('resources_fd:zoneUuid') && n.includes('resources_fd:type'), n.join(' '));
      assert.ok(!n.includes('resources_f:zoneUuid') && !n.includes('resources_fd:hostUuid'), 'one index per field, in its shape: ' + n.join(' '));
      const zonePage: Query = { kind: 'vm-instance', filters: [{ field: 'zoneUuid', op: '=', value: 'z1' }, { field: 'state', op: '=', value: 'Running' }], limit: 3 };
      await s.transition(rows[1]!.uuid, 'Running', 'Stopped');
      const page = await s.list(zonePage);
      assert.deepEqual(page.items.map((r) => r.name), ['vm3', 'vm5', 'vm7'], 'state filtered from the rows, in createDate order');
      assert.equal(page.total, 9);
      assert.doesNotMatch(s.planOf(zonePage), /TEMP B-TREE/);
      assert.match(s.planOf(hostPage), /resources_f:hostUuid \(kind=\? AND f:hostUuid=\? AND state=\?\)/);
    } finally {
      await s.close();
    }
  });

  it('a database from before view_len: views are made from the bodies, a write of this version keeps the row\'s view again; internal fields never in a view', async () => {
    const p = join(dir, `noview-${randomUUID()}.db`);
    const raw = new Database(p);
    raw.pragma('journal_mode = WAL');
    raw.exec('CREATE TABLE resources (uuid PRIMARY KEY NOT NULL, kind NOT NULL, parent_uuid, state, owner, name, create_date NOT NULL, last_op_date NOT NULL, body NOT NULL)');
    // as the previous version wrote them: JSON.stringify of the resource, internal fields anywhere
    const rows: Resource[] = Array.from({ length: 6 }, (_, n) => ({ _first: 'internal', ...vm(n), lastOpDate: vm(n).createDate, _last: { n } }));
    const ins = raw.prepare('INSERT INTO resources VALUES (?,?,?,?,?,?,?,?,?)');
    for (const r of rows) ins.run(r.uuid, r.kind, null, r.state, r.ownerAccountUuid, r.name, r.createDate, r.lastOpDate, JSON.stringify(r));
    raw.close();
    const s = new SqliteStore({ path: p });
    await s.init();
    try {
      const q: Query = { kind: 'vm-instance', limit: 10 };
      const expected = async (): Promise<string[]> => (await s.list(q)).items.map((r) => JSON.stringify(viewOf(r)));
      const before = await s.listViews(q);
      assert.deepEqual(before.views, await expected());
      assert.equal(before.total, 6);
      assert.ok(before.views.every((v) => !v.includes('"_')), before.views.join('\n'));
      await s.update(rows[2]!.uuid, { name: 'rewritten', _more: 'internal' });
      const db = new Database(p, { readonly: true });
      const lens = db.prepare('SELECT uuid, view_len FROM resources').all() as Array<{ uuid: string; view_len: number | null }>;
      db.close();
      assert.deepEqual(lens.filter((l) => l.view_len !== null).map((l) => l.uuid), [rows[2]!.uuid], 'only the row this version wrote has its view kept');
      const after = await s.listViews(q);
      assert.deepEqual(after.views, await expected());
      assert.ok(after.views.every((v) => !v.includes('"_')));
      assert.equal(JSON.parse(after.views[2]!).name, 'rewritten');
      assert.deepEqual(after.item(2), await s.get(rows[2]!.uuid), 'item(i) is the whole resource');
    } finally {
      await s.close();
    }
  });

  it('field columns hold what json_extract gives of the body after creates, updates, transitions; a host page walks its index', async () => {
    const p = join(dir, `cols-${randomUUID()}.db`);
    const s = new SqliteStore({ path: p, indexedFields: [...INDEXED_FIELDS, 'cpuNum', 'hasGpu', 'nested.x'] });
    await s.init();
    try {
      const made = await s.createMany(Array.from({ length: 30 }, (_, n) => vm(n, n % 5 ? {} : { nested: { x: n } })));
      await s.create(vm(31, { hostUuid: undefined, status: 'Connected' }));
      for (const [i, r] of made.entries()) {
        if (i % 3 === 0) await s.update(r.uuid, { hostUuid: undefined, lastHostUuid: r.hostUuid, hasGpu: true });
        if (i % 3 === 1) await s.transition(r.uuid, 'Running', 'Stopped', { cpuNum: 99, nested: { x: 'text' } });
        if (i % 3 === 2) await s.update(r.uuid, { description: 'nothing indexed changes' });
      }
      const cols = [...INDEXED_FIELDS, 'cpuNum', 'hasGpu', 'nested.x'];
      const db = new Database(p, { readonly: true });
      try {
        for (const f of cols) {
          const bad = db.prepare(`SELECT COUNT(*) AS n FROM resources WHERE "f:${f}" IS NOT json_extract(body, '$.${f}')`).get() as { n: number };
          assert.equal(bad.n, 0, `column of ${f}`);
        }
      } finally {
        db.close();
      }
      assert.equal((await s.list({ kind: 'vm-instance', filters: [{ field: 'nested.x', op: '=', value: 'text' }] })).total, 10);
      assert.equal((await s.list({ kind: 'vm-instance', filters: [{ field: 'hasGpu', op: '=', value: true }] })).total, 20);
      assert.equal((await s.list({ kind: 'vm-instance', filters: [{ field: 'cpuNum', op: '>=', value: '99' }] })).total, 10);
      const plan = s.planOf(hostPage);
      assert.match(plan, /USING (COVERING )?INDEX resources_f:hostUuid/);
      assert.doesNotMatch(plan, /TEMP B-TREE/, 'no sort: the index is in list order');
    } finally {
      await s.close();
    }
  });
});
