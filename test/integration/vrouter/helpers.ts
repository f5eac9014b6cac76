// Shared pieces of the vrouter integration tests: an agent per simulated "host", client
// namespaces standing in for VMs (busybox udhcpc, curl), and cleanup of the agent's namespaces.
import { readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { exec, execOk, execOut, type ExecResult } from '../../../shared/exec.js';
import { startAgentProcess, type AgentProcess } from '../../harness/agents.js';
import type { Cleanup } from '../../harness/cleanup.js';
import { createNetns, createVeth, deleteLink, deleteNetns, moveToNetns } from '../../harness/net.js';
import { runId } from '../../harness/tmp.js';
import { flatNames } from '../../../vrouteragent/names.js';

export const client = new AgentClient();

export interface Host {
  name: string;
  agent: AgentProcess;
  scheme: { nsPrefix: string; ifPrefix: string };
  ep: { url: string; token: string };
  args: string[];
}

/** A vrouteragent process standing in for one host; its namespaces are removed by cleanup. */
export async function startHost(letter: string, cleanup: Cleanup, l3s: string[], opts: { watchdogMs?: number } = {}): Promise<Host> {
  const scheme = { nsPrefix: `${runId()}${letter}`, ifPrefix: `${runId()}${letter}` };
  const args = ['--name-prefix', scheme.nsPrefix, '--if-prefix', scheme.ifPrefix, '--watchdog-ms', String(opts.watchdogMs ?? 1000), '--metrics-interval-ms', '500'];
  for (const l3 of l3s) {
    const n = flatNames(l3, scheme);
    cleanup.add(async () => {
      await deleteNetns(n.namespace);
      await deleteLink(n.hostVeth).catch(() => undefined); // usually gone with the namespace
    }, `vrouter namespace ${n.namespace}`);
  }
  const agent = await startAgentProcess('vrouteragent', { cleanup, args });
  return { name: letter, agent, scheme, ep: { url: agent.url, token: agent.token }, args };
}

/** Restart a host's agent in place (same port, data dir, prefixes). */
export async function restartHost(h: Host, cleanup: Cleanup): Promise<void> {
  h.agent = await startAgentProcess('vrouteragent', { cleanup, args: h.args, port: h.agent.port, dataDir: h.agent.dataDir });
  h.ep = { url: h.agent.url, token: h.agent.token };
}

export interface Vm {
  ns: string;
  ifname: string;
  mac: string;
}

/** A namespace with one veth on the bridge and the given MAC: a "VM" for fast DHCP checks. */
export async function fakeVm(tag: string, bridge: string, mac: string, cleanup: Cleanup): Promise<Vm> {
  const ns = await createNetns(`${runId()}${tag}`, cleanup);
  const [host, peer] = await createVeth(`${runId()}${tag}h`, `${runId()}${tag}p`, cleanup);
  await exec('ip', ['link', 'set', host, 'master', bridge, 'up']);
  await moveToNetns(peer, ns);
  await exec('ip', ['-n', ns, 'link', 'set', peer, 'down']);
  await exec('ip', ['-n', ns, 'link', 'set', peer, 'address', mac, 'up']);
  return { ns, ifname: peer, mac };
}

const SCRIPT = `#!/bin/sh
# udhcpc hook for test namespaces: configure the interface, log the event with its options
ev="$1"
out="$LEASE_DIR/$interface"
case "$ev" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    fi
    echo "event=$ev ip=$ip mask=$mask router=$router dns=$dns domain=$domain hostname=$hostname lease=$lease mtu=$mtu serverid=$serverid staticroutes=$staticroutes" >> "$out" ;;
esac
exit 0
`;

export function writeUdhcpcScript(dir: string): string {
  const f = join(dir, 'udhcpc.sh');
  writeFileSync(f, SCRIPT);
  chmodSync(f, 0o755);
  return f;
}

export type Lease = Record<string, string>;

export function parseLease(line: string): Lease {
  const out: Lease = {};
  for (const m of line.matchAll(/(\w+)=((?:(?! \w+=).)*)/g)) out[m[1]!] = m[2]!.trim();
  return out;
}

export function leaseEvents(dir: string, vm: Vm): Lease[] {
  const f = join(dir, vm.ifname);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map(parseLease);
}

/** One-shot DHCP (udhcpc -n -q): the lease, or undefined when nobody answered. */
export async function dhcpOnce(vm: Vm, script: string, dir: string, tries = 4): Promise<Lease | undefined> {
  const before = leaseEvents(dir, vm).length;
  const ok = await execOk('busybox', ['udhcpc', '-i', vm.ifname, '-s', script, '-n', '-q', '-t', String(tries), '-T', '1', '-A', '1'], {
    netns: vm.ns,
    env: { LEASE_DIR: dir },
    timeoutMs: 30_000,
  });
  const ev = leaseEvents(dir, vm);
  return ok && ev.length > before ? ev[ev.length - 1] : undefined;
}

export async function curl(vm: Vm, url: string): Promise<{ status: number; body: string }> {
  const r: ExecResult = await exec('curl', ['-s', '-m', '5', '-w', '\\n%{http_code}', url], { netns: vm.ns, timeoutMs: 15_000, okCodes: [0, 7, 28] });
  const i = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(i + 1)), body: r.stdout.slice(0, i) };
}

export async function nslookup(vm: Vm, name: string, server: string): Promise<string | undefined> {
  const out = await execOut('busybox', ['nslookup', '-type=a', name, server], { netns: vm.ns, timeoutMs: 15_000 }).catch(() => '');
  const m = /Name:\s+\S+\s+Address:\s+([\d.]+)/.exec(out);
  return m?.[1];
}

/** Running (not gone, not a zombie waiting to be reaped). */
export function pidAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
