// Benchmark: one full apply of a 250-VM flat L3 through tstack — the controller computes the
// desired state from its inventory (as the controller does: NICs from the event-fed cache, the
// rest from SQLite), sends it whole (flat/apply over HTTP), the agent validates, renders, writes
// atomically and SIGHUPs dnsmasq — against writing the same dnsmasq files (dhcp-hosts,
// addn-hosts) by hand and sending SIGHUP. Alternating runs against two real dnsmasq processes in
// two namespaces on one test bridge; each run changes every VM's host name (through the observed
// store, untimed: the cache follows those events) so both sides really rewrite and reload. The
// inventory is what a real L3 has: a NIC, a VM and an IP claim per VM. After each run (untimed)
// both dnsmasqs are asked for the last VM's new name over DNS: each side must really serve its new
// state. The inventory change's garbage is collected before either side is timed (a minor GC,
// which needs --expose-gc: scripts/bench/dhcp-apply passes it). Ten untimed rounds come first.
// Prints medians, the load average and, last, `ratio: X` (tstack / by hand).
//   scripts/bench/dhcp-apply [runs=15] [vms=250]
//   BENCH_WINDOWS=<file>: also writes tstack's timed windows (µs, the clock of `node --cpu-prof`)
import { mkdtempSync, rmSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { AgentServer } from '../../shared/agent/server.js';
import { AgentClient } from '../../controller/agent-client/client.js';
import { exec, execOk } from '../../shared/exec.js';
import { setLogLevel } from '../../shared/log.js';
import { registerVrouterAgent } from '../../vrouteragent/main.js';
import { openStore } from '../../controller/store/index.js';
import type { Resource } from '../../controller/store/types.js';
import { EventBus } from '../../controller/events/bus.js';
import { observedStore } from '../../controller/events/observed-store.js';
import { ReconcileQueue } from '../../controller/reconcile/queue.js';
import { desiredFlat, flatArea, flatKey } from '../../controller/network/flat-reconcile.js';
import { FlatNicCache } from '../../controller/network/flat-nics.js';
import { ipNamespace } from '../../controller/allocator/ip.js';
import type { CloudDeps } from '../../controller/cloud/common.js';
import { median } from './stats.js';

const RUNS = Number(process.argv[2] ?? 15);
const N = Number(process.argv[3] ?? 250);
/** Untimed rounds before the timed ones (each: one apply per side). */
const WARMUP = 10;
const id = 'b' + randomBytes(3).toString('hex').slice(0, 5);
const bridge = `${id}br`;
const manualNs = `${id}man`;

const res = (kind: string, uuid: string, extra: Record<string, unknown>): Resource => ({ kind, uuid, name: `${kind}-${uuid.slice(0, 6)}`, createDate: new Date().toISOString(), lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra });

const ipOf = (i: number): string => `10.88.${(i + 10) >> 8}.${(i + 10) & 0xff}`;
const macOf = (i: number): string => `fa:16:3e:88:${(((i + 10) >> 8) & 0xff).toString(16).padStart(2, '0')}:${((i + 10) & 0xff).toString(16).padStart(2, '0')}`;
const nameOf = (i: number, v: number): string => `vm-${i}-v${v}`;

async function main(): Promise<void> {
  setLogLevel('warn');
  const dir = mkdtempSync(`/tmp/${id}-bench-`);
  const undo: Array<() => Promise<unknown> | unknown> = [];
  try {
    await exec('ip', ['link', 'add', bridge, 'type', 'bridge']);
    undo.push(() => execOk('ip', ['link', 'del', bridge]));
    await exec('ip', ['link', 'set', bridge, 'up']);
    // this side of the test bridge asks both dnsmasqs over DNS (the bridge leads nowhere else)
    await exec('ip', ['addr', 'add', '10.88.15.252/20', 'dev', bridge]);

    // the agent, in process, on a loopback port
    const token = randomBytes(16).toString('hex');
    const server = new AgentServer({ agent: 'bench-vrouteragent', version: '0', token });
    const { flat, close } = await registerVrouterAgent(server, { dataDir: join(dir, 'agent'), scheme: { nsPrefix: id, ifPrefix: id }, watchdogMs: 0, metadataPort: 8775 });
    const addr = await server.listen('127.0.0.1', 0);

    // the controller's side: an inventory with one host, one flat L3 and N running VMs on it
    const bus = new EventBus();
    const store = observedStore(await openStore({ backend: 'sqlite', path: join(dir, 'inventory.db') }), bus);
    undo.push(() => store.close());
    const hostUuid = randomUUID();
    const l2 = randomUUID();
    const l3 = randomUUID();
    undo.push(async () => {
      await flat.delete(l3);
      await close();
      await server.close();
    });
    await store.create(res('host', hostUuid, { status: 'Connected', managementIp: '127.0.0.1', _agents: { vrouteragent: { port: addr.port, token } } }));
    await store.create(res('l2-network', l2, { bridgeName: bridge, physicalInterface: 'none' }));
    await store.create(res('l3-network', l3, { parentUuid: l2, provider: 'Flat', networkServices: ['DHCP', 'DNS', 'UserData'], dnsDomain: 'bench.test' }));
    await store.create(res('ip-range', randomUUID(), { parentUuid: l3, startIp: '10.88.0.2', endIp: '10.88.15.250', netmask: '255.255.240.0', gateway: '10.88.0.1', networkCidr: '10.88.0.0/20' }));
    const vmUuids: string[] = [];
    for (let i = 0; i < N; i++) {
      const vm = randomUUID();
      vmUuids.push(vm);
      await store.create(res('vm-instance', vm, { name: nameOf(i, 0), state: 'Running', hostUuid, lastHostUuid: hostUuid, l3NetworkUuids: [l3], userData: `#!/bin/sh\necho ${i}\n` }));
      const nic = randomUUID();
      await store.create(res('vm-nic', nic, { parentUuid: vm, vmInstanceUuid: vm, l3NetworkUuid: l3, ip: ipOf(i), mac: macOf(i), deviceId: 0 }));
      await store.claim(ipNamespace(l3), ipOf(i), nic);
    }
    // as the controller's (controller/main.ts): the agent checks the request, the client does not
    const d = { store, agentClient: new AgentClient({ checkRequests: false }), bus, reconcile: new ReconcileQueue() } as unknown as CloudDeps;
    // as installCloud wires it: the NIC cache follows the bus, the area applies through it
    const nics = new FlatNicCache(store);
    undo.push(nics.watch(bus));
    const area = flatArea(d, nics);
    const key = flatKey(hostUuid, l3);
    await area.apply(key); // namespace, dnsmasq, DHCP server address: set up once, outside the timing
    const flatDir = join(dir, 'agent', 'vrouter', 'flat', l3.replace(/-/g, ''));
    const agentPid = Number(readFileSync(join(flatDir, 'dnsmasq.pid'), 'utf8').trim());
    const agentDns = (await desiredFlat(d, hostUuid, (await store.get(l3))!, nics))!.network.dhcpServerIp;

    // the by-hand baseline: a second dnsmasq with the same kind of config in its own namespace
    await exec('ip', ['netns', 'add', manualNs]);
    undo.push(() => execOk('ip', ['netns', 'del', manualNs]));
    await exec('ip', ['link', 'add', `${id}mh`, 'type', 'veth', 'peer', 'name', `${id}mn`, 'netns', manualNs]);
    undo.push(() => execOk('ip', ['link', 'del', `${id}mh`]));
    await exec('ip', ['link', 'set', `${id}mh`, 'master', bridge, 'up']);
    await exec('ip', ['-n', manualNs, 'link', 'set', `${id}mn`, 'up']);
    await exec('ip', ['-n', manualNs, 'addr', 'add', '10.88.15.251/20', 'dev', `${id}mn`]);
    const hostsFile = join(dir, 'manual-dhcp-hosts');
    const addnHosts = join(dir, 'manual-hosts');
    writeFileSync(hostsFile, '');
    writeFileSync(addnHosts, '');
    const pidFile = join(dir, 'manual.pid');
    await exec('dnsmasq', [
      '--conf-file=/dev/null', `--interface=${id}mn`, '--bind-interfaces', '--except-interface=lo', '--user=root', '--group=root', '--no-resolv', '--no-hosts',
      `--addn-hosts=${addnHosts}`, '--dhcp-range=10.88.0.0,static,255.255.240.0', '--dhcp-ignore=tag:!known', '--no-ping',
      `--dhcp-hostsfile=${hostsFile}`, `--dhcp-leasefile=${join(dir, 'manual.leases')}`, `--pid-file=${pidFile}`, `--log-facility=${join(dir, 'manual.log')}`,
    ], { netns: manualNs });
    const manualPid = Number(readFileSync(pidFile, 'utf8').trim());
    /** The address `server` gives the last VM's name of version `v` (it must have re-read its hosts file). */
    const serves = async (server: string, v: number): Promise<void> => {
      const r = new Resolver({ timeout: 1000, tries: 3 });
      r.setServers([server]);
      const name = `${nameOf(N - 1, v)}.bench.test`;
      for (let t = 0; ; t++) {
        const got = await r.resolve4(name).catch((e: NodeJS.ErrnoException) => [e.code ?? String(e)]);
        if (got.length === 1 && got[0] === ipOf(N - 1)) return;
        if (t >= 20) throw new Error(`dnsmasq at ${server} does not serve ${name} (answer: ${got.join(', ')})`);
        await new Promise((ok) => setTimeout(ok, 50)); // SIGHUP is handled in dnsmasq's own time
      }
    };
    undo.push(() => {
      try {
        process.kill(manualPid, 'SIGTERM');
      } catch {
        /* gone */
      }
    });

    // node --expose-gc (scripts/bench/dhcp-apply): a young-generation collection on request
    const gc = (globalThis as { gc?: (o: { type: 'minor'; execution: 'sync' }) => void }).gc;
    const collectUntimed = gc && ((): void => gc({ type: 'minor', execution: 'sync' }));
    if (!collectUntimed) console.log('note: without --expose-gc the inventory change\'s garbage is collected whenever V8 decides (often inside tstack\'s timed apply)');
    const windows: Array<[number, number]> = [];
    const load0 = loadavg();
    const tstackMs: number[] = [];
    const handMs: number[] = [];
    // CPU time of this process (controller and agent both run here): what load on the machine does not inflate
    const tstackCpu: number[] = [];
    const handCpu: number[] = [];
    const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
    // untimed warm-up rounds first (both sides, alternating as below): the first dozen applies
    // ran 1.5-3x slower while V8 compiled the path; what is compared is the steady state
    for (let r = -WARMUP; r < RUNS * 2; r++) {
      const v = r + WARMUP + 1;
      const timed = r >= 0;
      // the change both sides apply: every VM gets a new host name (inventory updated untimed)
      for (let i = 0; i < N; i++) await store.update(vmUuids[i]!, { name: nameOf(i, v) });
      // the change's garbage collected here, untimed (~1.1 MB per run against ~0.45 MB for an
      // apply): else V8 runs the scavenge it asks for as a task at the next event-loop turn,
      // which is inside tstack's apply (it waits for HTTP) and never inside the synchronous
      // by-hand side. Each side then pays for the collections its own allocations cause.
      collectUntimed?.();
      // a collection's performance entry reaches the 'gc' observers (the agent's metrics registry
      // times GCs: prom-client) from the event loop, ~0.2 ms of CPU cold: a bare setImmediate
      // was not enough to keep it out of tstack's timed apply (it showed in the profile of the
      // timed windows, sendJson -> client answer 771 -> 527 µs median with this wait)
      await new Promise((ok) => setTimeout(ok, 5));
      const runTstack = async (): Promise<void> => {
        const t = process.hrtime.bigint();
        const c = process.cpuUsage();
        await area.apply(key);
        const end = process.hrtime.bigint();
        const cpu = cpuMs(process.cpuUsage(c));
        if (timed) {
          tstackCpu.push(cpu);
          tstackMs.push(Number(end - t) / 1e6);
          windows.push([Number(t / 1000n), Number(end / 1000n)]);
        }
        const hosts = readFileSync(join(flatDir, 'dhcp-hosts'), 'utf8');
        if (!hosts.includes(`,${nameOf(N - 1, v)},`) || hosts.split('\n').length !== N + 1) throw new Error('tstack did not apply the full state');
        if (Number(readFileSync(join(flatDir, 'dnsmasq.pid'), 'utf8').trim()) !== agentPid) throw new Error('tstack restarted dnsmasq instead of reloading it');
      };
      const runHand = (): void => {
        const t = process.hrtime.bigint();
        const c = process.cpuUsage();
        let dhcp = '';
        let names = '';
        for (let i = 0; i < N; i++) {
          dhcp += `${macOf(i)},${ipOf(i)},${nameOf(i, v)},86400\n`;
          names += `${ipOf(i)} ${nameOf(i, v)}.bench.test ${nameOf(i, v)}\n`;
        }
        writeFileSync(`${hostsFile}.tmp`, dhcp);
        renameSync(`${hostsFile}.tmp`, hostsFile);
        writeFileSync(`${addnHosts}.tmp`, names);
        renameSync(`${addnHosts}.tmp`, addnHosts);
        process.kill(manualPid, 'SIGHUP');
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        const cpu = cpuMs(process.cpuUsage(c));
        if (timed) {
          handMs.push(ms);
          handCpu.push(cpu);
        }
      };
      if (r % 2 === 0) {
        await runTstack();
        runHand();
      } else {
        runHand();
        await runTstack();
      }
      await new Promise((ok) => setTimeout(ok, 50)); // let both dnsmasqs re-read
      await serves(agentDns, v);
      await serves('10.88.15.251', v);
    }
    // the timed windows (µs, the cpu profile's clock) for a profile of the applies alone
    if (process.env.BENCH_WINDOWS) writeFileSync(process.env.BENCH_WINDOWS, JSON.stringify(windows));
    const a = median(tstackMs);
    const h = median(handMs);
    const load1 = loadavg();
    console.log(`VMs: ${N}, runs: ${tstackMs.length} each (alternating, after ${WARMUP} untimed rounds); load average ${load0[0].toFixed(1)} before, ${load1[0].toFixed(1)} after (1 min)`);
    console.log(`tstack  (desired state → HTTP → validate → render → write → SIGHUP):             median ${a.toFixed(2)} ms, min ${Math.min(...tstackMs).toFixed(2)} ms`);
    console.log(`by hand (write dhcp-hosts + addn-hosts, SIGHUP):                                 median ${h.toFixed(2)} ms, min ${Math.min(...handMs).toFixed(2)} ms`);
    console.log(`CPU time: tstack median ${median(tstackCpu).toFixed(2)} ms, by hand ${median(handCpu).toFixed(2)} ms (cpu ratio ${(median(tstackCpu) / median(handCpu)).toFixed(2)}; wall times above also count waiting for the CPU on a busy machine)`);
    console.log(`ratio: ${(a / h).toFixed(2)}`);
  } finally {
    for (const u of undo.reverse()) {
      try {
        await u();
      } catch (e) {
        process.stderr.write(`cleanup: ${(e as Error).message}\n`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`dhcp-apply bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
