// Benchmark: the store writes of one VM create (issue 19), replayed on a SQLite store holding
// --vms VM rows (with their NICs and volumes), in three shapes: each write its own call and
// commit (26 writes, 26 commits, before store batches); `batched`, the writes of a step that
// follow each other in one batch, the dhcp save gone, the VM's placement written with its NICs
// (24 writes, 17 commits); `merged`, as vm-create now issues them: besides, the audit record
// with the job's first doc and its completion with the job's end, the host step's save left to
// the ips step's (23 writes, 14 commits); `claims`: besides, the IP and MAC claims with the NIC
// batch, the PS claim with the root volume's save and record (23 writes, 11 commits; vm-create
// has since left the root volume's save before its claim out: 10); `deferred`: besides, the NIC
// owner's save in the commit with its claims and the root volume Ready with the VM's root in the
// start step's save (8 commits). CPU µs per create (user + system of this process: the
// store is synchronous, the machine's other load counts little).
// The sequence mirrors functional/vm-create-store-ops (one NIC, a root volume, a job, an audit
// record); the documents have the sizes of real ones (the journal carries the VM record).
//   npx tsx scripts/bench/create-writes.ts [--vms 10000] [--creates 3000]
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../controller/store/sqlite.js';
import type { Resource, StoreWrite } from '../../controller/store/types.js';
import { storeIndexedFields } from '../../controller/model/indexes.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const VMS = Number(arg('vms', '10000'));
const CREATES = Number(arg('creates', '3000'));
const HOSTS = 100;
const ids = { zone: randomUUID(), cluster: randomUUID(), offering: randomUUID(), image: randomUUID(), l3: randomUUID(), ps: randomUUID(), account: randomUUID() };
const hosts = Array.from({ length: HOSTS }, () => randomUUID());

const base = (kind: string, name: string): Resource => ({ uuid: randomUUID(), kind, name, createDate: '', lastOpDate: '', ownerAccountUuid: ids.account, tags: [] });

type Shape = 'single' | 'batched' | 'merged' | 'claims' | 'deferred';
const SHAPES: Shape[] = ['single', 'batched', 'merged', 'claims', 'deferred'];
const B: Shape[] = ['batched', 'merged', 'claims', 'deferred'];
const M: Shape[] = ['merged', 'claims', 'deferred'];
/** The claims that ride in a batch in the `claims` shape (`with`: in the write before's batch). */
const C: Shape[] = ['claims', 'deferred'];
const D: Shape[] = ['deferred'];

/** One create's resources and writes, each write a step of the sequence (`with`: in the batch of the write before it, in those shapes; `only`: written in those shapes only). */
function createWrites(j: number): Array<{ w: StoreWrite; with?: Shape[]; only?: Shape[] } | { claim: [string, string]; rides?: boolean; with?: Shape[] }> {
  const host = hosts[j % HOSTS]!;
  const vm: Resource = {
    ...base('vm-instance', `vm${j}`), state: 'Starting', instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], defaultL3NetworkUuid: ids.l3,
    cpuNum: 1, memorySize: 64 * 1024 * 1024, type: 'UserVm', platform: 'Linux', vmNics: [], allVolumes: [], _consolePassword: 'x8Jd0sKq', description: 'a benchmark VM with a description of ordinary length',
  };
  const nic: Resource = { ...base('vm-nic', `vm${j}-nic0`), parentUuid: vm.uuid, vmInstanceUuid: vm.uuid, l3NetworkUuid: ids.l3, ip: `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${j & 255}`, mac: 'fa:16:3e:00:00:01', netmask: '255.0.0.0', gateway: '10.0.0.1', deviceId: 0, clusterUuid: ids.cluster };
  const vol: Resource = { ...base('volume', `ROOT-for-vm${j}`), type: 'Root', state: 'Enabled', status: 'Creating', vmInstanceUuid: vm.uuid, primaryStorageUuid: ids.ps, hostUuid: host, clusterUuid: ids.cluster, rootImageUuid: ids.image, deviceId: 0, size: 1 << 30 };
  const audit: Resource = { ...base('audit', 'POST /v1/vm-instances'), apiName: 'CreateVmInstance', result: 'Accepted', jobUuid: randomUUID(), startTime: new Date().toISOString(), accountUuid: ids.account };
  const jobId = String(audit.jobUuid);
  const job = { uuid: jobId, type: 'vm-instances.create', state: 'Running', progress: 0, accountUuid: ids.account, controllerId: 'c1', resourceUuid: vm.uuid, context: { body: { name: vm.name, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] } }, createDate: '', lastOpDate: '' };
  const journal = (step: number): unknown => ({ id: jobId, flow: 'vm-create', controllerId: 'c1', state: 'running', completed: step, current: step, rolledBack: [], data: { vm, hostUuid: host, nics: [nic], data: [], services: [] }, lockKeys: [vm.uuid], keepOutcome: true, startedAt: '', updatedAt: '' });
  const placement = { hostUuid: host, lastHostUuid: host, clusterUuid: ids.cluster, zoneUuid: ids.zone, hypervisorType: 'KVM' };
  const vmNics = [{ uuid: nic.uuid, l3NetworkUuid: ids.l3, ip: nic.ip, mac: nic.mac }];
  const jw = (step: number): StoreWrite => ({ op: 'putDoc', collection: 'flow-journals', id: jobId, doc: journal(step) });
  return [
    { w: { op: 'putDoc', collection: 'jobs', id: jobId, doc: job } },
    { w: { op: 'create', resource: audit }, with: M },
    { w: jw(0) },
    { w: { op: 'create', resource: vm }, with: B },
    { claim: ['host-capacity', vm.uuid] },
    { w: jw(1), only: ['single', 'batched'] },
    { w: { op: 'update', uuid: vm.uuid, patch: placement }, only: ['single'] },
    { w: jw(2) },
    { claim: ['ip', nic.uuid], rides: true, with: D },
    { claim: ['mac', nic.uuid], rides: true, with: C },
    { w: { op: 'create', resource: nic }, with: C },
    { w: { op: 'update', uuid: vm.uuid, patch: { vmNics } }, with: B, only: ['single'] },
    { w: { op: 'update', uuid: vm.uuid, patch: { ...placement, vmNics } }, with: B, only: B },
    { w: jw(3), only: ['single', 'batched', 'merged', 'claims'] },
    { claim: ['ps-capacity', vol.uuid], rides: true },
    { w: jw(3), with: C },
    { w: { op: 'create', resource: vol }, with: B },
    { w: { op: 'update', uuid: vol.uuid, patch: { status: 'Ready', installPath: `/ps/${vol.uuid}.qcow2`, format: 'qcow2', actualSize: 200 << 20 } } },
    { w: { op: 'update', uuid: vm.uuid, patch: { rootVolumeUuid: vol.uuid, allVolumes: [vol.uuid] } }, with: B },
    { w: jw(6), only: ['single'] }, // the dhcp save
    { w: jw(7), with: D },
    { w: { op: 'update', uuid: vm.uuid, patch: { state: 'Running', serialLogPath: `/var/log/${vm.uuid}.log` } } },
    { w: { op: 'putDoc', collection: 'flow-outcomes', id: jobId, doc: { flow: 'vm-create', action: 'completed', at: '' } }, with: B },
    { w: { op: 'deleteDoc', collection: 'flow-journals', id: jobId }, with: B },
    { w: { op: 'putDoc', collection: 'jobs', id: jobId, doc: { ...job, state: 'Succeeded', progress: 100, result: vm } } },
    { w: { op: 'deleteDoc', collection: 'flow-outcomes', id: jobId }, with: B },
    { w: { op: 'update', uuid: audit.uuid, patch: { result: 'Succeeded', resourceUuid: vm.uuid, duration: 900 } }, with: M },
  ];
}

async function single(s: SqliteStore, w: StoreWrite): Promise<void> {
  if (w.op === 'create') await s.create(w.resource);
  else if (w.op === 'update') await s.update(w.uuid, w.patch);
  else if (w.op === 'transition') await s.transition(w.uuid, w.from, w.to, w.patch);
  else if (w.op === 'putDoc') await s.putDoc(w.collection, w.id, w.doc);
  else if (w.op === 'deleteDoc') await s.deleteDoc(w.collection, w.id);
  else if (w.op === 'claim') await s.claim(w.namespace, w.key, w.owner);
  else await s.release(w.namespace, w.key, w.owner);
}

async function replay(s: SqliteStore, j: number, shape: Shape): Promise<number> {
  let commits = 0;
  let pending: StoreWrite[] = [];
  const flush = async (): Promise<void> => {
    if (pending.length === 1) await single(s, pending[0]!);
    else if (pending.length) await s.batch(pending);
    if (pending.length) commits++;
    pending = [];
  };
  for (const x of createWrites(j)) {
    if ('claim' in x && x.rides && C.includes(shape)) {
      if (!x.with?.includes(shape)) await flush();
      pending.push({ op: 'claim', namespace: x.claim[0], key: `${x.claim[0]}:${j}`, owner: x.claim[1] });
      continue;
    }
    if ('claim' in x) {
      await flush();
      await s.claim(x.claim[0], `${x.claim[0]}:${j}`, x.claim[1]);
      commits++;
      continue;
    }
    if (x.only && !x.only.includes(shape)) continue;
    if (shape === 'single') {
      await single(s, x.w);
      commits++;
      continue;
    }
    if (!x.with?.includes(shape)) await flush();
    pending.push(x.w);
  }
  await flush();
  return commits;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tstack-cw-'));
  try {
    const s = new SqliteStore({ path: join(dir, 'inv.db'), indexedFields: storeIndexedFields() });
    await s.init();
    // the inventory: VMS creates' records, loaded as vm-create writes them
    for (let j = 0; j < VMS; j++) await replay(s, j, 'merged');
    const out: Record<string, number> = {};
    // alternate the shapes in rounds, so each sees the same table sizes and warm caches
    const rounds = 4;
    const per = Math.floor(CREATES / rounds / SHAPES.length);
    const cpu: Record<Shape, number> = { single: 0, batched: 0, merged: 0, claims: 0, deferred: 0 };
    const commits: Record<Shape, number> = { single: 0, batched: 0, merged: 0, claims: 0, deferred: 0 };
    let j = VMS;
    for (let r = 0; r < rounds; r++) {
      for (const shape of SHAPES) {
        const c0 = process.cpuUsage();
        for (let i = 0; i < per; i++) commits[shape] = await replay(s, j++, shape);
        const c = process.cpuUsage(c0);
        cpu[shape] += c.user + c.system;
      }
    }
    for (const shape of SHAPES) {
      out[`${shape}_us_per_create`] = Math.round(cpu[shape] / (per * rounds));
      out[`${shape}_commits`] = commits[shape];
    }
    console.log(JSON.stringify({ vms: VMS, creates: per * rounds * SHAPES.length, ...out, load1: Number(loadavg()[0]!.toFixed(2)) }));
    console.log(`ratio merged/batched: ${(out.merged_us_per_create! / out.batched_us_per_create!).toFixed(3)}, claims/merged: ${(out.claims_us_per_create! / out.merged_us_per_create!).toFixed(3)}, deferred/claims: ${(out.deferred_us_per_create! / out.claims_us_per_create!).toFixed(3)}`);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
