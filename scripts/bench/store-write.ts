// Benchmark: the SQLite store's cost per operation (issue 19) at 10k and 100k VM rows, 100
// hosts (1,000 VMs a host at 100k), with the controller's indexed fields. Per size: the load
// (createMany, 1,000 a transaction), then single creates, updates of a field no index holds,
// state transitions (every index that ends in state), updates moving hostUuid, gets, and the
// list goal's query (a host's Running VMs, first page of 50 with its count, then a cursor page).
// Baseline, same run and file system: the same updates (read, merge, write the body in a BEGIN
// IMMEDIATE transaction) on a table with no secondary index. Last line: `ratio: X` = store
// update µs ÷ baseline update µs at the largest size.
//   npx tsx scripts/bench/store-write.ts [--sizes 10000,100000] [--ops 2000] [--keep <dir>]
// --keep: leave the databases there (inv-<size>.db), e.g. to time a migration by a newer store.
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../controller/store/sqlite.js';
import { applyPatch, nowIso, positionOf } from '../../controller/store/query.js';
import type { Resource } from '../../controller/store/types.js';
import { storeIndexedFields } from '../../controller/model/indexes.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const SIZES = arg('sizes', '10000,100000').split(',').map(Number);
const OPS = Number(arg('ops', '2000'));
const KEEP = arg('keep', '');
const HOSTS = 100;
const ids = { zone: randomUUID(), cluster: randomUUID(), offering: randomUUID(), image: randomUUID(), l3: randomUUID() };
const hosts = Array.from({ length: HOSTS }, () => randomUUID());

/** A VM record shaped like the controller's (the fields a create leaves). */
function vm(j: number): Resource {
  const host = hosts[j % HOSTS]!;
  return {
    uuid: randomUUID(), kind: 'vm-instance', name: `vm${j}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'acc-admin', tags: [],
    state: 'Running', hostUuid: host, lastHostUuid: host, zoneUuid: ids.zone, clusterUuid: ids.cluster, instanceOfferingUuid: ids.offering,
    imageUuid: ids.image, rootVolumeUuid: randomUUID(), defaultL3NetworkUuid: ids.l3, cpuNum: 1, memorySize: 64 * 1024 * 1024,
    type: 'UserVm', hypervisorType: 'KVM', platform: 'Linux', allocatorStrategy: 'LeastVmPreferredHostAllocatorStrategy',
    vmNics: [{ uuid: randomUUID(), l3NetworkUuid: ids.l3, ip: `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`, mac: 'fa:16:3e:00:00:01' }],
    description: 'a benchmark VM with a description of ordinary length',
  };
}

const us = (ms: number): string => (ms * 1000).toFixed(1);

/**
 * CPU µs per call of `fn` over `n` calls (user + system of this process, so the machine's
 * other load counts little; the store is synchronous, nothing else runs meanwhile), after a
 * warm-up of n/10 calls.
 */
async function perOp(n: number, fn: (i: number) => unknown): Promise<number> {
  for (let i = 0; i < n / 10; i++) await fn(n + i); // warm-up (JIT, statement cache)
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await fn(i);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n / 1000;
}

/** CPU µs of the same update with no secondary index: read, merge, write the body in one transaction. */
function baseline(path: string, rows: Resource[]): number {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE plain (uuid PRIMARY KEY NOT NULL, body NOT NULL)');
  const ins = db.prepare('INSERT INTO plain (uuid, body) VALUES (?, ?)');
  db.transaction(() => {
    for (const r of rows) ins.run(r.uuid, JSON.stringify(r));
  })();
  const sel = db.prepare('SELECT body FROM plain WHERE uuid = ?');
  const upd = db.prepare('UPDATE plain SET body = ? WHERE uuid = ?');
  const tx = db.transaction((uuid: string, patch: Partial<Resource>) => {
    const cur = JSON.parse((sel.get(uuid) as { body: string }).body) as Resource;
    upd.run(JSON.stringify(applyPatch(cur, patch, nowIso())), uuid);
  });
  const c0 = process.cpuUsage();
  for (let i = 0; i < OPS; i++) tx.immediate(rows[(i * 7919) % rows.length]!.uuid, { agentVersion: i });
  const c = process.cpuUsage(c0);
  db.close();
  return (c.user + c.system) / OPS / 1000;
}

async function main(): Promise<void> {
  const dir = KEEP || mkdtempSync(join(tmpdir(), 'tstack-store-bench-'));
  mkdirSync(dir, { recursive: true });
  console.log(`load ${loadavg()[0]!.toFixed(2)}; ${OPS} ops per figure, CPU µs per operation (mean)`);
  let ratio = NaN;
  try {
    for (const size of SIZES) {
      const store = new SqliteStore({ path: join(dir, `inv-${size}.db`), indexedFields: storeIndexedFields() });
      await store.init();
      const rows: Resource[] = [];
      const c0 = process.cpuUsage();
      for (let i = 0; i < size; i += 1000) {
        const batch = Array.from({ length: Math.min(1000, size - i) }, (_, k) => vm(i + k));
        rows.push(...(await store.createMany(batch)));
      }
      const cl = process.cpuUsage(c0);
      const load = (cl.user + cl.system) / size / 1000;
      const pick = (i: number): Resource => rows[(i * 7919) % rows.length]!;
      const create = await perOp(OPS, (i) => store.create(vm(size + i)));
      const update = await perOp(OPS, (i) => store.update(pick(i).uuid, { agentVersion: i }));
      const transition = await perOp(OPS, (i) => store.transition(pick(i).uuid, ['Running', 'Stopped'], i % 2 ? 'Running' : 'Stopped'));
      const move = await perOp(OPS, (i) => store.update(pick(i).uuid, { hostUuid: hosts[(i * 31) % HOSTS]! }));
      const get = await perOp(OPS, (i) => store.get(pick(i).uuid));
      const q = (h: number) => ({ kind: 'vm-instance', filters: [{ field: 'state', op: '=' as const, value: 'Running' }, { field: 'hostUuid', op: '=' as const, value: hosts[h % HOSTS]! }], limit: 50, sort: { field: 'createDate', dir: 'asc' as const } });
      const first = await perOp(200, (i) => store.list(q(i)));
      const cursor = await perOp(200, async (i) => {
        const p = await store.list({ ...q(i), skipTotal: true });
        return p.items.length ? store.list({ ...q(i), skipTotal: true, after: positionOf(p.items.at(-1)!, q(i).sort) }) : p;
      });
      await store.close();
      const base = baseline(join(dir, `plain-${size}.db`), rows);
      console.log(`${size} VMs: load ${us(load)} | create ${us(create)} | update ${us(update)} | transition ${us(transition)} | move host ${us(move)} | get ${us(get)} | list first page+count ${us(first)} | two cursor pages ${us(cursor)} | baseline update (no index) ${us(base)}`);
      ratio = update / base;
    }
  } finally {
    if (!KEEP) rmSync(dir, { recursive: true, force: true });
  }
  console.log(`ratio: ${ratio.toFixed(2)}`);
}

await main();
