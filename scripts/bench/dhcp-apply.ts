// Benchmark: apply 1,000 static DHCP entries through the vrouteragent (HTTP call → validation →
// render → atomic write → SIGHUP) vs. doing the same by hand (write the dhcp-hosts file, SIGHUP
// dnsmasq). Alternating runs against two real dnsmasq processes in two namespaces on one test
// bridge; prints the medians and, as the last line, `ratio: X` (agent / by hand).
//   npx tsx scripts/bench/dhcp-apply.ts [runs=15] [entries=1000]
import { mkdtempSync, rmSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { AgentServer } from '../../shared/agent/server.js';
import { AgentClient } from '../../controller/agent-client/client.js';
import { exec, execOk } from '../../shared/exec.js';
import { vrouter } from '../../shared/protocol/index.js';
import { setLogLevel } from '../../shared/log.js';
import { registerVrouterAgent } from '../../vrouteragent/main.js';

const RUNS = Number(process.argv[2] ?? 15);
const N = Number(process.argv[3] ?? 1000);
const id = 'b' + randomBytes(3).toString('hex').slice(0, 5);
const bridge = `${id}br`;
const manualNs = `${id}man`;
const L3 = randomUUID();

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function entries(variant: number): Array<{ mac: string; ip: string; hostname: string }> {
  const out = [];
  for (let i = 0; i < N; i++) {
    const n = i + 10; // 10.88.0.10 … inside the /20 (no network, broadcast, server or gateway address)
    out.push({
      mac: `52:54:00:88:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`,
      ip: `10.88.${n >> 8}.${n & 0xff}`,
      hostname: `vm-${i}-v${variant}`,
    });
  }
  return out;
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const dir = mkdtempSync(`/tmp/${id}-bench-`);
  const undo: Array<() => Promise<unknown> | unknown> = [];
  try {
    await exec('ip', ['link', 'add', bridge, 'type', 'bridge']);
    undo.push(() => execOk('ip', ['link', 'del', bridge]));
    await exec('ip', ['link', 'set', bridge, 'up']);

    // the agent, in process, on a loopback port
    const token = randomBytes(16).toString('hex');
    const server = new AgentServer({ agent: 'bench-vrouteragent', version: '0', token });
    const { flat, close } = await registerVrouterAgent(server, { dataDir: join(dir, 'agent'), scheme: { nsPrefix: id, ifPrefix: id } });
    undo.push(async () => {
      await flat.delete(L3);
      await close();
      await server.close();
    });
    const addr = await server.listen('127.0.0.1', 0);
    const ep = { url: `http://127.0.0.1:${addr.port}`, token };
    const client = new AgentClient();
    await client.call(vrouter.NamespaceEnsure, ep, { network: { l3NetworkUuid: L3, bridge, cidr: '10.88.0.0/20', dhcpServerIp: '10.88.0.2', gateway: '10.88.0.1' } });

    // the by-hand baseline: a second dnsmasq with the same kind of config in its own namespace
    await exec('ip', ['netns', 'add', manualNs]);
    undo.push(() => execOk('ip', ['netns', 'del', manualNs]));
    await exec('ip', ['link', 'add', `${id}mh`, 'type', 'veth', 'peer', 'name', `${id}mn`, 'netns', manualNs]);
    undo.push(() => execOk('ip', ['link', 'del', `${id}mh`]));
    await exec('ip', ['link', 'set', `${id}mh`, 'master', bridge, 'up']);
    await exec('ip', ['-n', manualNs, 'link', 'set', `${id}mn`, 'up']);
    await exec('ip', ['-n', manualNs, 'addr', 'add', '10.88.0.3/20', 'dev', `${id}mn`]);
    const hostsFile = join(dir, 'manual-hosts');
    writeFileSync(hostsFile, '');
    const pidFile = join(dir, 'manual.pid');
    await exec('dnsmasq', [
      '--conf-file=/dev/null', `--interface=${id}mn`, '--bind-interfaces', '--port=0', '--user=root', '--group=root',
      '--dhcp-range=10.88.0.0,static,255.255.240.0', '--dhcp-ignore=tag:!known', '--no-ping',
      `--dhcp-hostsfile=${hostsFile}`, `--dhcp-leasefile=${join(dir, 'manual.leases')}`, `--pid-file=${pidFile}`, `--log-facility=${join(dir, 'manual.log')}`,
    ], { netns: manualNs });
    const manualPid = Number(readFileSync(pidFile, 'utf8').trim());
    undo.push(() => {
      try {
        process.kill(manualPid, 'SIGTERM');
      } catch {
        /* gone */
      }
    });

    const sets = [entries(0), entries(1)];
    const agentMs: number[] = [];
    const handMs: number[] = [];
    for (let r = 0; r < RUNS * 2; r++) {
      const set = sets[r % 2]!;
      const agentFirst = r % 2 === 0;
      const runAgent = async (): Promise<void> => {
        const t = process.hrtime.bigint();
        const res = await client.call(vrouter.DhcpApply, ep, { l3NetworkUuid: L3, entries: set });
        agentMs.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (res.entries !== N || !res.reloaded) throw new Error(`agent applied ${res.entries} entries, reloaded=${res.reloaded}`);
      };
      const runHand = (): void => {
        const t = process.hrtime.bigint();
        let text = '';
        for (const e of set) text += `${e.mac},${e.ip},${e.hostname},86400\n`;
        const tmp = `${hostsFile}.tmp`;
        writeFileSync(tmp, text);
        renameSync(tmp, hostsFile);
        process.kill(manualPid, 'SIGHUP');
        handMs.push(Number(process.hrtime.bigint() - t) / 1e6);
      };
      if (agentFirst) {
        await runAgent();
        runHand();
      } else {
        runHand();
        await runAgent();
      }
      await new Promise((res) => setTimeout(res, 50)); // let both dnsmasqs re-read
    }
    const a = median(agentMs);
    const h = median(handMs);
    console.log(`entries: ${N}, runs: ${agentMs.length} each (alternating)`);
    console.log(`agent  (HTTP + validate + render + write + SIGHUP): median ${a.toFixed(2)} ms, min ${Math.min(...agentMs).toFixed(2)} ms`);
    console.log(`by hand (write hosts file + SIGHUP):                median ${h.toFixed(2)} ms, min ${Math.min(...handMs).toFixed(2)} ms`);
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
