// Scale benchmark (issue 19): C controller processes (tstack-controller, SQLite or one Redis),
// a tstack-simulator process with N hosts, all added through POST /v1/hosts (ssh: false), then M
// VMs created through the REST API with bounded client concurrency and counted until every one is
// Running or failed; then the filtered, paginated VM list is measured at 30 req/s and the read
// throughput with 16 connections of wrk (Debian package). Prints one JSON line and, last, `ratio: X` =
// create_s ÷ (M ÷ 7.2): ZStack's published 10,000 VMs in 23 minutes is 7.2 VMs/s, so X < 1 is faster.
//   npx tsx scripts/bench/scale.ts --hosts 50 --vms 500 --store sqlite [--controllers 1] [--concurrency 64] [--inventory K] [--cpu-prof <dir>: <dir>/controller<i>, <dir>/simulator] [--idle 10] [--idle-after S] [--start-timeout-s 300] [--kill-one | --restart [--down-s 5]]
// CPU per VM is also given net of what the processes use idle (measured --idle seconds before the creates).
// With --store redis the idle wait also gives Redis's commands/s by command and its longest scripts (redis-stats.ts).
// --idle-after S: after the reads, S more seconds of quiet measured the same way (with S >= the
// controller's reconcile period, 60 s, it holds a periodic pass over every VM: what the pass costs).
// --inventory K: K Running VM records spread over the hosts are written straight into the store
// (createMany, 1,000 a write) before the creates, so creates and lists run against that inventory;
// the simulator is given a Running domain for each (a VM sync finds what the inventory has).
// --kill-one (with --controllers C ≥ 2): once half the creates are acknowledged, the last
// controller is SIGKILLed; requests go on to the others (a create that got no answer is sent
// again elsewhere). lost = acknowledged creates with neither a VM nor a failed job; stuck = VMs
// still transitional 60 s after the run.
// Host add: hosts_connected_s / _ctl_cpu_s = until every POST /v1/hosts answered (Connected);
// hosts_storage_settled_s / _ctl_cpu_s = until the primary storage's totals include every host
// (ps/init runs after each connect); hosts_add_s = the whole cloud setup (as before).
// --restart (instead of the list measurements): with the hosts Connected and the VMs made, every
// controller is SIGKILLed, stays down --down-s seconds (default 5), and is started again on its
// port and data (same SQLite file / same Redis). The simulator counts what the hosts are asked
// (simulator/traffic.ts): reconnect_s = from the restart until every host was bound again by a
// controller (its last `connect`); the storm figures are the peak requests in progress at once
// and per second at the hosts, requests per host, and the spread of the hosts' reconnects.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, startProcess, type RunningProcess } from '../../shared/exec.js';
import { freePort, waitForPort } from '../../test/harness/ports.js';
import { ApiClient } from '../../test/harness/controller.js';
import { setupSimulatedCloud } from '../../test/harness/simulated-cloud.js';
import type { SimHostInfo } from '../../simulator/simulator.js';
import { openStore, type Resource } from '../../controller/store/index.js';
import { storeIndexes } from '../../controller/model/indexes.js';
import { redisWindow, type RedisWindow } from './redis-stats.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TRANSITIONAL = new Set(['Created', 'Starting', 'Stopping', 'Rebooting', 'Pausing', 'Resuming', 'Migrating', 'Destroying', 'Creating', 'Expunging']);

function flags(argv: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) o[a.slice(2)] = 'true';
    else o[a.slice(2)] = argv[++i]!;
  }
  return o;
}

const f = flags(process.argv.slice(2));
const int = (k: string, d: number): number => {
  const n = f[k] === undefined ? d : Number(f[k]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${k}: expected a non-negative integer, got ${f[k]}`);
  return n;
};
const HOSTS = int('hosts', 50);
const VMS = int('vms', 500);
const CONTROLLERS = int('controllers', 1);
const CONCURRENCY = int('concurrency', 64);
const STORE = f.store ?? 'sqlite';
if (!['sqlite', 'redis'].includes(STORE)) throw new Error('--store: sqlite or redis');
if (CONTROLLERS < 1 || (CONTROLLERS > 1 && STORE !== 'redis')) throw new Error('--controllers: 1, or several with --store redis');
const KILL_ONE = f['kill-one'] !== undefined;
if (KILL_ONE && CONTROLLERS < 2) throw new Error('--kill-one needs --controllers 2 or more');
const INVENTORY = int('inventory', 0);
const PROF = f['cpu-prof'];
/** Seconds of quiet before the creates, to measure the idle CPU (default 10). */
const IDLE_S = int('idle', 10);
const IDLE_AFTER_S = int('idle-after', 0);
const RESTART = f.restart !== undefined;
const DOWN_S = int('down-s', 5);
/** How long a controller may take to listen and answer /health (start and restart). */
const START_TIMEOUT_S = int('start-timeout-s', 300);
if (RESTART && KILL_ONE) throw new Error('--restart and --kill-one: one at a time');

const dir = mkdtempSync(join(tmpdir(), 'tstack-scale-'));
const procs: RunningProcess[] = [];
let simPid: number | undefined;
let redisPid: number | undefined;
const ctlPids: number[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (m: string): void => void process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

async function cleanupAll(): Promise<void> {
  for (const p of procs.reverse()) await p.stop(15_000).catch(() => undefined);
  if (!f['keep-dir']) rmSync(dir, { recursive: true, force: true });
}

async function startSimulator(): Promise<{ control: string; hosts: SimHostInfo[] }> {
  const sdir = join(dir, 'sim');
  // a random 127/8 block: other runs on this machine use others
  const b = 64 + Math.floor(Math.random() * 60);
  const node = PROF ? ['--cpu-prof', '--cpu-prof-dir', join(PROF, 'simulator')] : [];
  const p = await startProcess(process.execPath, [...node, '--import', 'tsx', join(ROOT, 'simulator/main.ts'), '--hosts', String(HOSTS), '--first-ip', `127.${b}.0.1`, '--host-port', String(await freePort()), '--listen', '127.0.0.1:0', '--data-dir', sdir, '--token-file', join(sdir, 'token'), '--log-level', 'warn'], {
    cwd: ROOT,
    logFile: join(dir, 'simulator.log'),
  });
  procs.push(p);
  simPid = p.pid;
  const file = join(sdir, 'simulator-hosts.json');
  const end = Date.now() + 300_000;
  while (!existsSync(file)) {
    if (!p.running) throw new Error(`simulator exited: ${readFileSync(join(dir, 'simulator.log'), 'utf8').slice(-2000)}`);
    if (Date.now() > end) throw new Error('simulator did not start in 300 s');
    await sleep(200);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as { control: string; hosts: SimHostInfo[] };
}

const controllerProcs: RunningProcess[] = [];

const controllersCpu = (): number => controllerProcs.reduce((s, p) => s + (p.running ? cpuSeconds(p.pid) || 0 : 0), 0);

const ctlPorts: number[] = [];

async function startController(i: number, store: string): Promise<string> {
  const cdir = join(dir, `ctl${i}`);
  // a restart keeps the controller's port (and its data directory)
  const port = (ctlPorts[i] ??= await freePort());
  const pw = join(dir, 'admin-password');
  const node = PROF ? ['--cpu-prof', '--cpu-prof-dir', join(PROF, `controller${i}`)] : [];
  const p = await startProcess(process.execPath, [...node, '--import', 'tsx', join(ROOT, 'controller/main.ts'), '--listen', `127.0.0.1:${port}`, '--data-dir', cdir, '--token-file', join(cdir, 'token'), '--store', store, '--admin-password-file', pw, '--log-level', 'warn'], {
    cwd: ROOT,
    logFile: join(dir, `controller${i}.log`),
  });
  procs.push(p);
  ctlPids.push(p.pid);
  controllerProcs[i] = p;
  // one deadline for listening and healthy: a start (tsx compiling, the store opened) at load 30
  // on two cores took ~50 s, close to the 60 s the health wait alone used to allow
  const end = Date.now() + START_TIMEOUT_S * 1000;
  await waitForPort('127.0.0.1', port, START_TIMEOUT_S * 1000);
  const url = `http://127.0.0.1:${port}`;
  for (; Date.now() < end; await sleep(200)) {
    if ((await fetch(`${url}/health`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined))?.ok) return url;
    if (!p.running) throw new Error(`controller ${i} exited: ${readFileSync(join(dir, `controller${i}.log`), 'utf8').slice(-2000)}`);
  }
  throw new Error(`controller ${i} did not get healthy in ${START_TIMEOUT_S} s`);
}

/** GET with a few retries: a request that never got an answer under load is asked again. */
async function get(api: ApiClient, path: string): Promise<{ status: number; body: any }> {
  for (let i = 0; ; i++) {
    try {
      return await api.get(path);
    } catch (e) {
      if (i >= 5) throw e;
      await sleep(500 * (i + 1));
    }
  }
}

async function listAll(api: ApiClient, image: string): Promise<Array<{ name: string; state: string }>> {
  const out: Array<{ name: string; state: string }> = [];
  // the bench's own VMs (of the cloud's image; the loaded inventory has its own), page by page
  const path = `/v1/vm-instances?q=imageUuid=${image}&limit=5000&fields=name,state`;
  for (let cursor = ''; ; ) {
    const r = await get(api, cursor ? `${path}&cursor=${cursor}` : path);
    if (r.status !== 200) throw new Error(`list VMs: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    out.push(...(r.body.inventories as Array<{ name: string; state: string }>));
    if (!r.body.next) return out;
    cursor = r.body.next as string;
  }
}

/**
 * `wrk -c conns -d secs` against one URL with the bearer token: the 2xx answers and the rest
 * (non-2xx, socket errors). Its threads: one per 8 connections.
 */
async function wrk(url: string, token: string, conns: number, secs: number): Promise<{ ok: number; failed: number }> {
  const threads = String(Math.max(1, Math.ceil(conns / 8)));
  const r = await exec('wrk', ['-t', threads, '-c', String(conns), '-d', `${secs}s`, '-H', `Authorization: Bearer ${token}`, url], { timeoutMs: (secs + 30) * 1000 });
  const total = Number(/(\d+) requests in /.exec(r.stdout)?.[1] ?? NaN);
  if (!Number.isFinite(total)) throw new Error(`wrk printed no request count: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  const errs = sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
  return { ok: total - non2xx, failed: non2xx + errs };
}

/**
 * K Running VM records over the hosts, straight into the controller's store, and their domains in
 * the simulator (a VM sync, after a tracker takes a host over, finds what the inventory has;
 * without them it corrected every record to Stopped).
 */
async function loadInventory(spec: string, sim: { control: string }, ids: { hosts: string[]; zone: string; cluster: string; offering: string; image: string }, owner: string): Promise<void> {
  const t = Date.now();
  const uuids = Array.from({ length: INVENTORY }, () => randomUUID());
  // the domains first (VM j on host j mod N; ids.hosts[i] is simulator host i): a host synced
  // between a record and its domain would have that record corrected
  const auth = { authorization: `Bearer ${readFileSync(join(dir, 'sim', 'token'), 'utf8').trim()}`, 'content-type': 'application/json' };
  for (let i = 0; i < ids.hosts.length && i < INVENTORY; i++) {
    const vmUuids: string[] = [];
    for (let j = i; j < INVENTORY; j += ids.hosts.length) vmUuids.push(uuids[j]!);
    const r = await fetch(`${sim.control}/hosts/${i}/domains`, { method: 'POST', headers: auth, body: JSON.stringify({ vmUuids, cpuNum: 1, memoryKiB: 65_536 }) });
    if (!r.ok) throw new Error(`simulator: domains of host ${i}: ${r.status} ${await r.text()}`);
  }
  const st = await openStore({ ...(spec === 'sqlite' ? { backend: 'sqlite' as const, path: join(dir, 'ctl0', 'inventory.db') } : { backend: 'redis' as const, url: spec }), ...storeIndexes() });
  try {
    // an image of their own, so the bench's VMs are listed by theirs without reading these
    const image = await st.get(ids.image);
    if (!image) throw new Error('the cloud has no image');
    const invImage = randomUUID();
    await st.createMany([{ ...image, uuid: invImage, name: 'scale-inventory-image', createDate: '', lastOpDate: '' }]);
    for (let i = 0; i < INVENTORY; i += 1000) {
      const batch: Resource[] = [];
      for (let j = i; j < Math.min(INVENTORY, i + 1000); j++) {
        const host = ids.hosts[j % ids.hosts.length]!;
        batch.push({ uuid: uuids[j]!, kind: 'vm-instance', name: `inv${j}`, createDate: '', lastOpDate: '', ownerAccountUuid: owner, tags: [], state: 'Running', hostUuid: host, lastHostUuid: host, zoneUuid: ids.zone, clusterUuid: ids.cluster, instanceOfferingUuid: ids.offering, imageUuid: invImage, cpuNum: 1, memorySize: 64 * 1024 * 1024, type: 'UserVm', hypervisorType: 'KVM', platform: 'Linux' });
      }
      await st.createMany(batch);
    }
  } finally {
    await st.close();
  }
  log(`${INVENTORY} VM records (and their simulated domains) loaded in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}

/** CPU seconds (user + system) a process has used: on a shared machine the honest cost, wall time is not. */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime (fields 14, 15) in USER_HZ (100)
  } catch {
    return NaN;
  }
}

const lastCpu = new Map<number, number>();
/** The controllers' CPU seconds so far; a killed one counts what it had used when last read. */
function ctlCpuSeconds(): number {
  let sum = 0;
  for (const p of ctlPids) {
    const s = cpuSeconds(p);
    if (!Number.isNaN(s)) lastCpu.set(p, s);
    sum += lastCpu.get(p) ?? 0;
  }
  return sum;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
};

async function main(): Promise<void> {
  writeFileSync(join(dir, 'admin-password'), 'scale-bench-admin-pw-1\n', { mode: 0o600 });
  let store = 'sqlite';
  if (STORE === 'redis') {
    const port = await freePort();
    const rdir = join(dir, 'redis');
    const p = await startProcess('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { cwd: dir, logFile: join(dir, 'redis.log') });
    procs.push(p);
    redisPid = p.pid;
    await waitForPort('127.0.0.1', port, 15_000);
    store = `redis://127.0.0.1:${port}/0`;
    void rdir;
  }
  const load0 = loadavg()[0]!;
  log(`starting the simulator (${HOSTS} hosts) and ${CONTROLLERS} controller(s) on ${STORE}; load ${load0.toFixed(2)}`);
  const [sim, ...urls] = await Promise.all([startSimulator(), ...Array.from({ length: CONTROLLERS }, (_, i) => startController(i, store))]);
  const apis: ApiClient[] = [];
  for (const url of urls) {
    const r = await new ApiClient(url).post('/v1/sessions', { accountName: 'admin', password: 'scale-bench-admin-pw-1' });
    if (r.status !== 200) throw new Error(`login: ${r.status} ${JSON.stringify(r.body)}`);
    apis.push(new ApiClient(url, r.body.token));
  }
  const api = apis[0]!;
  const tHosts = Date.now();
  const hostsCpu0 = ctlCpuSeconds();
  let hostsAdded = { s: NaN, cpu: NaN };
  const ids = await setupSimulatedCloud(api, sim.hosts, { prefix: 'scale', vms: VMS, hostConcurrency: 32, onHostsAdded: () => (hostsAdded = { s: (Date.now() - tHosts) / 1000, cpu: ctlCpuSeconds() - hostsCpu0 }) });
  const hostsS = (Date.now() - tHosts) / 1000;
  const connected = (await get(api, '/v1/hosts?q=status=Connected&count=true')).body.total as number;
  const storage = await storageSettled(api, ids.ps, tHosts, hostsCpu0);
  log(`hosts: every add answered (Connected) after ${hostsAdded.s.toFixed(1)} s, controller CPU ${hostsAdded.cpu.toFixed(1)} s; the storage totals (${storage.total} B) settled after ${storage.s.toFixed(1)} s, controller CPU ${storage.cpu.toFixed(1)} s; load ${loadavg()[0]!.toFixed(2)}`);
  const hostFigures = {
    hosts_add_s: Number(hostsS.toFixed(1)),
    hosts_connected_s: Number(hostsAdded.s.toFixed(1)),
    hosts_connected_ctl_cpu_s: Number(hostsAdded.cpu.toFixed(1)),
    hosts_storage_settled_s: Number(storage.s.toFixed(1)),
    hosts_storage_settled_ctl_cpu_s: Number(storage.cpu.toFixed(1)),
  };
  if (INVENTORY > 0) await loadInventory(store, sim, ids, (await get(api, '/v1/accounts?q=name=admin')).body.inventories[0].uuid as string);
  log(`${connected}/${HOSTS} hosts Connected, cloud set up in ${hostsS.toFixed(1)} s; creating ${VMS} VMs, ${CONCURRENCY} requests at a time`);

  // --- create: every request acknowledged (202) counts; names identify the VMs afterwards
  const acked = new Set<string>();
  const refused: string[] = [];
  const alive = apis.map(() => true);
  let killedAt: number | undefined;
  const killOne = (): void => {
    const i = apis.length - 1;
    ctlCpuSeconds(); // its CPU until now still counts
    controllerProcs[i]!.kill('SIGKILL');
    alive[i] = false;
    killedAt = Date.now();
    log(`SIGKILLed controller ${i} after ${acked.size} acknowledged creates`);
  };
  let next = 0;
  // what the controllers and the simulator burn with nothing to do (pings, periodic passes): a
  // long run on a loaded machine pays more of it, so the CPU per VM is also given net of it
  const endRedisIdle = STORE === 'redis' ? await redisWindow(store) : undefined;
  const idle0 = { sim: simPid ? cpuSeconds(simPid) : NaN, ctl: ctlCpuSeconds(), at: Date.now() };
  await sleep(IDLE_S * 1000);
  const idleS = (Date.now() - idle0.at) / 1000;
  const cpu0 = { sim: simPid ? cpuSeconds(simPid) : NaN, ctl: ctlCpuSeconds() };
  const redisIdle: RedisWindow | undefined = await endRedisIdle?.();
  if (redisIdle) log(`redis while idle: ${JSON.stringify(redisIdle)}`);
  await simTraffic(sim, true); // the agent requests of the creates, per route
  const idleRate = { sim: (cpu0.sim - idle0.sim) / idleS, ctl: (cpu0.ctl - idle0.ctl) / idleS };
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, VMS) }, async (_, w) => {
      for (let i = next++; i < VMS; i = next++) {
        const name = `s${i}`;
        // the same resourceUuid on every attempt: a create sent again after no answer (its
        // controller was killed) answers the first one's job instead of making a second VM
        const resourceUuid = randomUUID();
        for (let attempt = 0; ; attempt++) {
          const live = apis.filter((_a, k) => alive[k]);
          const a = live[(w + i + attempt) % live.length]!;
          const r = await a.post('/v1/vm-instances', { name, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], resourceUuid }).catch((e: Error) => ({ status: 0, body: e.message }));
          if (r.status === 202 || r.status === 201 || r.status === 200) {
            acked.add(name);
            if (KILL_ONE && killedAt === undefined && acked.size >= VMS / 2) killOne();
            break;
          }
          if ((r.status === 503 || r.status === 429 || r.status === 0) && attempt < 20) {
            await sleep(250 * (attempt + 1));
            continue;
          }
          refused.push(`${name}: ${r.status} ${String(JSON.stringify(r.body)).slice(0, 200)}`);
          break;
        }
      }
    }),
  );
  const tAcked = (Date.now() - t0) / 1000;
  log(`${acked.size} creates acknowledged in ${tAcked.toFixed(1)} s (${refused.length} refused${refused.length ? `, e.g. ${refused[0]}` : ''}); waiting for Running`);
  // --- until every VM is Running or failed (or nothing moves for 120 s)
  let settled = 0;
  let lastChange = Date.now();
  let lastSettled = t0;
  let failedSoFar = 0;
  let lastVms = -1;
  let lastProgressLog = Date.now();
  for (let poll = 0; ; poll++) {
    const n = ((await get(api, '/v1/vm-instances?q=state=Running&count=true')).body?.total as number) - INVENTORY;
    // one count per state: '=' on an indexed field is counted from its index
    let err = 0;
    for (const s of ['Error', 'Destroyed', 'Stopped']) err += (await get(api, `/v1/vm-instances?q=state=${s}&count=true`)).body?.total as number;
    // counting jobs reads every job (10,000 at the goal's size: ~45 ms of controller CPU each, 1.3 s
    // of a 10,000-VM run when polled every 5th time): only when the VM counts stood still since
    // the last poll (a failed create shows as no progress) or all look settled, so the bench's own
    // polling does not weigh on the controller CPU it measures
    const vmsNow = n + err;
    if ((vmsNow === lastVms && poll % 5 === 0) || vmsNow + failedSoFar >= acked.size) failedSoFar = ((await get(api, '/v1/jobs?q=type=vm-instances.create&q=state=Failed&count=true')).body?.total as number) ?? 0;
    lastVms = vmsNow;
    const now = n + err + failedSoFar;
    if (now !== settled) lastChange = lastSettled = Date.now();
    settled = now;
    // a line every 10 s: a slow run shows where it stands
    if (Date.now() - lastProgressLog >= 10_000) {
      lastProgressLog = Date.now();
      log(`${n} Running, ${err} Error/Destroyed/Stopped, ${failedSoFar} failed jobs; load ${loadavg()[0]!.toFixed(2)}`);
    }
    if (settled >= acked.size) break;
    if (Date.now() - lastChange > 120_000) {
      log(`no progress for 120 s: ${settled}/${acked.size} settled`);
      break;
    }
    await sleep(500);
  }
  // the time until the last VM settled (Running, or its create failed)
  const createS = (lastSettled - t0) / 1000;
  const cpuCtl = ctlCpuSeconds() - cpu0.ctl;
  const cpuSim = simPid ? cpuSeconds(simPid) - cpu0.sim : NaN;
  log(`CPU during the creates: controller(s) ${cpuCtl.toFixed(1)} s (${((cpuCtl * 1000) / Math.max(1, VMS)).toFixed(1)} ms per VM), simulator ${cpuSim.toFixed(1)} s; load ${loadavg()[0]!.toFixed(2)}`);
  const createWallS = (Date.now() - t0) / 1000;
  const netMs = (cpu: number, rate: number): number => Number((((cpu - rate * createWallS) * 1000) / Math.max(1, VMS)).toFixed(1));
  const net = { ctl: netMs(cpuCtl, idleRate.ctl), sim: netMs(cpuSim, idleRate.sim) };
  const createTraffic = await simTraffic(sim);
  const perVm = Object.entries(createTraffic.byRoute).sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${(n / Math.max(1, VMS)).toFixed(2)}`);
  log(`agent requests during the creates, per VM: ${(createTraffic.requests / Math.max(1, VMS)).toFixed(2)} (${perVm.join(', ')})`);
  log(`idle: controller(s) ${(idleRate.ctl * 1000).toFixed(0)} ms/s, simulator ${(idleRate.sim * 1000).toFixed(0)} ms/s; net of it per VM: controller(s) ${net.ctl} ms, simulator ${net.sim} ms`);

  // --- stuck / lost (transitional VMs get up to 60 s more)
  let all = await listAll(api, ids.image);
  for (let t = Date.now(); all.some((v) => TRANSITIONAL.has(v.state)) && Date.now() - t < 60_000; all = await listAll(api, ids.image)) await sleep(2_000);
  const names = new Set(all.map((v) => v.name));
  const failedJobs = ((await get(api, '/v1/jobs?q=type=vm-instances.create&q=state=Failed&count=true')).body?.total as number) ?? 0;
  if (killedAt !== undefined) log(`${((Date.now() - killedAt) / 1000).toFixed(0)} s since the kill; ${failedJobs} create jobs failed (the live controllers finish a dead one's creates)`);
  // an acknowledged create whose job failed (and rolled back) is failed, not lost
  const lost = Math.max(0, [...acked].filter((n) => !names.has(n)).length - failedJobs);
  const stuck = all.filter((v) => TRANSITIONAL.has(v.state)).length;
  // a failed create leaves an Error VM or none (rolled back): the larger count, not their sum
  const failed = Math.max(all.filter((v) => !TRANSITIONAL.has(v.state) && v.state !== 'Running').length, failedJobs) + refused.length;
  const running = all.filter((v) => v.state === 'Running').length;
  log(`${running} Running; the last VM settled after ${createS.toFixed(1)} s; ${failedJobs} create jobs failed`);
  if (failedJobs > 0) {
    // why: the distinct errors of a few failed jobs
    const some = ((await get(api, '/v1/jobs?q=type=vm-instances.create&q=state=Failed&limit=20')).body?.inventories ?? []) as Array<{ error?: unknown }>;
    const why = [...new Set(some.map((j) => JSON.stringify(j.error ?? null).slice(0, 300)))];
    log(`failed creates' errors (of ${some.length}): ${why.join(' | ')}`);
  }
  const simStats = (await (await fetch(`${sim.control}/stats`, { headers: { authorization: `Bearer ${readFileSync(join(dir, 'sim', 'token'), 'utf8').trim()}` } })).json()) as { vms: number; byState: Record<string, number> };
  log(`simulator: ${simStats.vms} domains ${JSON.stringify(simStats.byState)}`);

  if (RESTART) {
    const r = await restartPhase(sim, store, apis.length);
    const out = { hosts: HOSTS, vms: VMS, running, failed, stuck, lost, hosts_connected: connected, controllers: CONTROLLERS, store: STORE, ...hostFigures, ...r, load1_start: Number(load0.toFixed(2)), load1_end: Number(loadavg()[0]!.toFixed(2)) };
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }

  // --- list latency at 30 req/s for 10 s; read throughput: 16 readers for 5 s
  const hostUuid = ids.hosts[0]!;
  const listPath = `/v1/vm-instances?q=state=Running&q=hostUuid=${hostUuid}&limit=50&sort=createDate`;
  const lat: number[] = [];
  let listErrors = 0;
  let listError = '';
  const timed = async (a: ApiClient): Promise<void> => {
    const s = performance.now();
    const r = await a.get(listPath).catch((e: Error) => ({ status: 0, body: e.message }));
    // a refused or failed request counts at its full time (and is reported)
    lat.push(performance.now() - s);
    if (r.status !== 200 || !Array.isArray(r.body?.inventories)) {
      listErrors++;
      listError ||= `${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
    }
  };
  const readers = apis.filter((_a, k) => alive[k]);
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < 300; i++) {
    pending.push(timed(readers[i % readers.length]!));
    await sleep(1000 / 30);
  }
  await Promise.all(pending);
  if (listErrors) log(`${listErrors} of 300 list requests failed, e.g. ${listError}`);
  // read throughput: wrk (C, keep-alive) as the load, 16 connections over the live controllers for
  // 5 s. The bench's own Node client (fetch) cost more CPU per request than the controller spends
  // answering it and shared the 2 cores with it: it measured the client (issue 19)
  const readCpu0 = controllersCpu();
  const redisCpu0 = redisPid ? cpuSeconds(redisPid) : NaN;
  const tr = Date.now();
  const perCtl = Math.max(1, Math.floor(16 / readers.length));
  const wrks = await Promise.all(readers.map((a) => wrk(a.url + listPath, a.token ?? '', perCtl, 5)));
  const reads = wrks.reduce((n, w) => n + w.ok, 0);
  const readErrors = wrks.reduce((n, w) => n + w.failed, 0);
  if (readErrors) log(`${readErrors} reads failed (non-2xx or socket errors)`);
  const readS = (Date.now() - tr) / 1000;
  const readsS = reads / readS;
  // the controllers' CPU per read: what the machine's load does not change much
  const cpuMsPerRead = reads ? ((controllersCpu() - readCpu0) * 1000) / reads : NaN;
  // less what the controllers burn with nothing to do (measured before the creates): at a few
  // hundred reads a second on a loaded machine that is a fair part of the figure
  const cpuMsPerReadNet = reads ? ((controllersCpu() - readCpu0 - idleRate.ctl * readS) * 1000) / reads : NaN;
  const redisMsPerRead = reads && redisPid ? ((cpuSeconds(redisPid) - redisCpu0) * 1000) / reads : NaN;
  // quiet again, with every VM made: the periodic passes (flat, firewalls) are what runs now
  let idleAfter: Record<string, unknown> = {};
  if (IDLE_AFTER_S > 0) {
    await simTraffic(sim, true);
    const a0 = { ctl: controllersCpu(), sim: simPid ? cpuSeconds(simPid) : NaN, at: Date.now() };
    await sleep(IDLE_AFTER_S * 1000);
    const s = (Date.now() - a0.at) / 1000;
    const tr = await simTraffic(sim);
    idleAfter = {
      idle_after_s: Number(s.toFixed(1)),
      idle_after_ctl_ms_per_s: Number((((controllersCpu() - a0.ctl) * 1000) / s).toFixed(0)),
      idle_after_sim_ms_per_s: Number((((simPid ? cpuSeconds(simPid) : NaN) - a0.sim) * 1000 / s).toFixed(0)),
      idle_after_flat_applies: tr.byRoute['/flat/apply'] ?? 0,
      idle_before_ctl_ms_per_s: Number((idleRate.ctl * 1000).toFixed(0)),
    };
    log(`idle after the creates (${s.toFixed(0)} s): ${JSON.stringify(idleAfter)}`);
  }
  const out = {
    hosts: HOSTS,
    vms: VMS,
    create_s: Number(createS.toFixed(2)),
    vms_per_s: Number((running / createS).toFixed(1)),
    running,
    failed,
    stuck,
    lost,
    hosts_connected: connected,
    list_p50_ms: Number(pct(lat, 50).toFixed(1)),
    list_p95_ms: Number(pct(lat, 95).toFixed(1)),
    reads_per_s: Number(readsS.toFixed(0)),
    read_errors: readErrors,
    list_errors: listErrors,
    ctl_cpu_ms_per_read: Number(cpuMsPerRead.toFixed(2)),
    ctl_cpu_ms_per_read_net: Number(cpuMsPerReadNet.toFixed(2)),
    ...(redisPid ? { redis_cpu_ms_per_read: Number(redisMsPerRead.toFixed(2)) } : {}),
    controllers: CONTROLLERS,
    killed_one: KILL_ONE,
    store: STORE,
    inventory: INVENTORY,
    ...hostFigures,
    controller_cpu_s: Number(cpuCtl.toFixed(1)),
    simulator_cpu_s: Number(cpuSim.toFixed(1)),
    controller_cpu_ms_per_vm_net: net.ctl,
    simulator_cpu_ms_per_vm_net: net.sim,
    load1_start: Number(load0.toFixed(2)),
    idle_ctl_ms_per_s: Number((idleRate.ctl * 1000).toFixed(0)),
    idle_sim_ms_per_s: Number((idleRate.sim * 1000).toFixed(0)),
    ...(redisIdle ? { redis_idle: redisIdle } : {}),
    ...idleAfter,
    load1_end: Number(loadavg()[0]!.toFixed(2)),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  process.stdout.write(`ratio: ${(createS / (VMS / 7.2)).toFixed(3)}\n`);
}

/**
 * The primary storage's totals after the hosts joined: each host's ps/init runs after its
 * connect (in the background), so a host add's cost ends when they stop changing. Polled until
 * unchanged for 3 s; returns when (seconds after `t0`) and at what controller CPU (since `cpu0`)
 * the final value was first seen.
 */
async function storageSettled(api: ApiClient, ps: string, t0: number, cpu0: number): Promise<{ s: number; cpu: number; total: number }> {
  let last = { total: NaN, s: NaN, cpu: NaN };
  for (const end = Date.now() + 300_000; Date.now() < end; await sleep(250)) {
    const total = Number((await get(api, `/v1/primary-storage/${ps}`)).body?.totalCapacity);
    const now = { s: (Date.now() - t0) / 1000, cpu: ctlCpuSeconds() - cpu0 };
    if (total !== last.total) last = { total, ...now };
    else if (now.s - last.s >= 3) break;
  }
  return last;
}

interface TrafficReport {
  since: number;
  requests: number;
  byRoute: Record<string, number>;
  perSecond: Array<[number, number]>;
  peakInFlight: number;
  connectedAt: Record<string, number>;
}

/** The simulator's count of agent requests (simulator/traffic.ts); `reset`: start a new window. */
async function simTraffic(sim: { control: string }, reset = false): Promise<TrafficReport> {
  const auth = { authorization: `Bearer ${readFileSync(join(dir, 'sim', 'token'), 'utf8').trim()}` };
  return (await (await fetch(`${sim.control}/traffic${reset ? '/reset' : ''}`, { method: reset ? 'POST' : 'GET', headers: auth })).json()) as TrafficReport;
}

/** Kill every controller, start them again, and measure the hosts' reconnect at the hosts. */
async function restartPhase(sim: { control: string }, store: string, controllers: number): Promise<Record<string, unknown>> {
  const auth = { authorization: `Bearer ${readFileSync(join(dir, 'sim', 'token'), 'utf8').trim()}` };
  const traffic = async (reset = false): Promise<TrafficReport> => (await (await fetch(`${sim.control}/traffic${reset ? '/reset' : ''}`, { method: reset ? 'POST' : 'GET', headers: auth })).json()) as TrafficReport;
  // the steady state first: what tracking costs the hosts with nothing happening
  await traffic(true);
  await sleep(15_000);
  const steady = await traffic();
  const steadyRps = steady.requests / ((Date.now() - steady.since) / 1000);
  log(`steady state: ${steadyRps.toFixed(0)} requests/s at the hosts ${JSON.stringify(steady.byRoute)}; SIGKILLing ${controllers} controller(s)`);
  for (const p of controllerProcs) p.kill('SIGKILL');
  for (const p of controllerProcs) while (p.running) await sleep(50);
  await traffic(true);
  await sleep(DOWN_S * 1000);
  const tStart = Date.now();
  const cpu0 = { sim: simPid ? cpuSeconds(simPid) : NaN };
  const urls = await Promise.all(Array.from({ length: controllers }, (_, i) => startController(i, store)));
  const tHealthy = Date.now();
  log(`controller(s) restarted, healthy after ${((tHealthy - tStart) / 1000).toFixed(1)} s; waiting for every host to be bound again`);
  let tr = await traffic();
  for (const end = Date.now() + 300_000; Object.keys(tr.connectedAt).length < HOSTS && Date.now() < end; tr = await traffic()) await sleep(500);
  const times = Object.values(tr.connectedAt).sort((a, b) => a - b);
  const rebound = times.length;
  const tLast = times[times.length - 1] ?? NaN;
  // a little longer, so the traffic right after the reconnect (VM syncs still going) is counted
  await sleep(3_000);
  tr = await traffic();
  const cpuCtl = controllersCpu();
  const cpuSim = simPid ? cpuSeconds(simPid) - cpu0.sim : NaN;
  const api = new ApiClient(urls[0]!, (await new ApiClient(urls[0]!).post('/v1/sessions', { accountName: 'admin', password: 'scale-bench-admin-pw-1' })).body.token as string);
  const connectedNow = (await get(api, '/v1/hosts?q=status=Connected&count=true')).body.total as number;
  const unknownVms = (await get(api, '/v1/vm-instances?q=state=Unknown&count=true')).body.total as number;
  const rates = tr.perSecond.map(([, n]) => n);
  const rel = (t: number): number => Number(((t - tStart) / 1000).toFixed(1));
  const hist = new Map<number, number>();
  for (const t of times) hist.set(Math.floor((t - tStart) / 1000), (hist.get(Math.floor((t - tStart) / 1000)) ?? 0) + 1);
  log(`hosts bound again per second after the restart: ${JSON.stringify(Object.fromEntries(hist))}`);
  log(`requests at the hosts since the kill: ${JSON.stringify(tr.byRoute)}`);
  return {
    mode: 'restart',
    down_s: DOWN_S,
    restart_to_healthy_s: rel(tHealthy),
    reconnect_s: rel(tLast),
    hosts_rebound: rebound,
    first_rebound_s: rel(times[0] ?? NaN),
    p50_rebound_s: rel(pct(times, 50)),
    p95_rebound_s: rel(pct(times, 95)),
    hosts_connected_after: connectedNow,
    vms_unknown_after: unknownVms,
    requests: tr.requests,
    requests_per_host: Number((tr.requests / Math.max(1, HOSTS)).toFixed(1)),
    peak_requests_per_s: Math.max(0, ...rates),
    mean_requests_per_s_reconnect: Number((tr.requests / Math.max(0.001, (tLast - tHealthy + 3_000) / 1000)).toFixed(0)),
    peak_in_flight: tr.peakInFlight,
    steady_requests_per_s: Number(steadyRps.toFixed(0)),
    controller_cpu_s_since_restart: Number(cpuCtl.toFixed(1)),
    simulator_cpu_s_since_restart: Number(cpuSim.toFixed(1)),
  };
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`scale bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanupAll());
