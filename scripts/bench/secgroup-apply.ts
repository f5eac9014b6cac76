// Benchmark: a host firewall of 1,000 rules over 100 guarded NICs (10 per NIC, a few through a
// remote-group ipset), applied through the kvmagent (HTTP call → validation → read current
// state → render → ipset restore → iptables-restore --noflush) vs. one raw `iptables-restore
// --noflush` of the same rendered text (+ the same ipset text). Both run inside a throwaway
// network namespace (the machine's own tables are never touched); runs alternate and change
// one rule per run so each apply really rewrites. Prints medians and, last, `ratio: X`.
//   npx tsx scripts/bench/secgroup-apply.ts [runs=15] [nics=100] [rulesPerNic=10]
import { randomBytes } from 'node:crypto';
import { AgentServer } from '../../shared/agent/server.js';
import { AgentClient } from '../../controller/agent-client/client.js';
import { exec, execOk } from '../../shared/exec.js';
import { setLogLevel } from '../../shared/log.js';
import { registerKvmAgent } from '../../kvmagent/main.js';
import { FakeDriver } from '../../kvmagent/hypervisor/fake-driver.js';
import { IpNetwork } from '../../kvmagent/network/bridges.js';
import { Firewall } from '../../kvmagent/secgroup/firewall.js';
import { parseCurrent, renderFirewall } from '../../kvmagent/secgroup/render.js';
import { SecurityGroupApply, type GuardedNicT, type HostFirewallT } from '../../shared/protocol/secgroup.js';
import { median } from './stats.js';

const RUNS = Number(process.argv[2] ?? 15);
const NICS = Number(process.argv[3] ?? 100);
const PER = Number(process.argv[4] ?? 10);
const id = 'b' + randomBytes(3).toString('hex').slice(0, 5);
const NS = `${id}fw`;
const GROUP = '0badcafe-0000-4000-8000-000000000001';

function firewall(variant: number): HostFirewallT {
  const nics: GuardedNicT[] = [];
  for (let i = 0; i < NICS; i++) {
    const ingress: GuardedNicT['ingress'] = [{ protocol: 'ALL', remoteGroupUuid: GROUP }, { protocol: 'ICMP' }];
    for (let r = 2; r < PER; r++) ingress.push({ protocol: r % 2 ? 'UDP' : 'TCP', startPort: 1000 + r * 10 + (i === 0 ? variant : 0), endPort: 1005 + r * 10 + (i === 0 ? variant : 0), cidr: `10.${r}.0.0/16` });
    nics.push({ tap: `vn${String(i).padStart(11, '0')}`, nicUuid: `eeeeeeee-0000-4000-8000-${String(i).padStart(12, '0')}`, mac: `fa:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, ip: `10.200.${i >> 8}.${(i & 255) + 1}`, ingress, egress: [], egressWhitelist: false, serviceIps: ['10.200.255.2'] });
  }
  return { nics, sets: [{ groupUuid: GROUP, ips: nics.map((n) => n.ip) }] };
}

async function main(): Promise<void> {
  setLogLevel('warn');
  await exec('ip', ['netns', 'add', NS]);
  try {
    const token = randomBytes(16).toString('hex');
    const server = new AgentServer({ agent: 'bench-kvmagent', version: '0', token });
    const agent = await registerKvmAgent(server, { driver: new FakeDriver(), network: new IpNetwork({ netns: NS }), firewall: new Firewall({ netns: NS }) }, { noWatcher: true });
    const addr = await server.listen('127.0.0.1', 0);
    const ep = { url: `http://127.0.0.1:${addr.port}`, token };
    const client = new AgentClient();
    const viaAgent: number[] = [];
    const raw: number[] = [];
    let rules = 0;
    for (let run = 0; run < RUNS * 2; run++) {
      const fw = firewall(run);
      if (run % 2 === 0) {
        const t0 = performance.now();
        const r = await client.call(SecurityGroupApply, ep, { firewall: fw });
        viaAgent.push(performance.now() - t0);
        rules = r.rules;
      } else {
        // the same work done by hand: the text rendered beforehand (as a script would have it)
        const save = (await exec('iptables-save', ['-t', 'filter'], { netns: NS })).stdout;
        const sets = (await exec('ipset', ['list', '-n'], { netns: NS })).stdout;
        const text = renderFirewall(fw, parseCurrent(save, sets));
        const t0 = performance.now();
        await exec('ipset', ['-exist', 'restore'], { netns: NS, stdin: text.ipset });
        await exec('iptables-restore', ['-w', '10', '--noflush'], { netns: NS, stdin: text.iptables });
        raw.push(performance.now() - t0);
      }
    }
    await client.call(SecurityGroupApply, ep, { firewall: { nics: [], sets: [] } });
    await agent.stop();
    await server.close();
    const a = median(viaAgent);
    const m = median(raw);
    process.stdout.write(`secgroup apply: ${NICS} NICs, ${NICS * PER} rules (${rules} iptables rules incl. chains' own), ${RUNS} runs each\n`);
    process.stdout.write(`tstack apply (HTTP + validation + render + ipset + iptables-restore): median ${a.toFixed(1)} ms\n`);
    process.stdout.write(`raw ipset restore + iptables-restore of the same text: median ${m.toFixed(1)} ms\n`);
    process.stdout.write(`ratio: ${(a / m).toFixed(2)}\n`);
  } finally {
    await execOk('ip', ['netns', 'del', NS]);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
