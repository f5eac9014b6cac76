// kvmagent secgroup/apply with real packets: a "host" network namespace with a bridge whose
// ports are veths named like VM taps; the other ends sit in "guest" namespaces (real network
// stacks), plus a service namespace (dnsmasq DHCP/DNS, a metadata HTTP listener on
// 169.254.169.254). The agent's firewall runs iptables-restore/ipset inside the host namespace,
// so nothing touches the machine's own tables. Checks: ingress whitelist, ICMP opened by a rule,
// stateful replies, egress open → whitelist → open, remote-group sets changing with membership,
// DHCP/DNS/metadata for guarded NICs (with anti-spoofing on), other rules of the host kept,
// drift (a flushed chain) repaired by re-applying, and nothing left when the last NIC goes.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { exec, execOk, execOut, startProcess } from '../../../shared/exec.js';
import { AgentServer } from '../../../shared/agent/server.js';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { registerKvmAgent } from '../../../kvmagent/main.js';
import { IpNetwork } from '../../../kvmagent/network/bridges.js';
import { FakeDriver } from '../../../kvmagent/hypervisor/fake-driver.js';
import { Firewall } from '../../../kvmagent/secgroup/firewall.js';
import { SecurityGroupApply, SecurityGroupStatus, type FirewallRuleT, type GuardedNicT, type HostFirewallT } from '../../../shared/protocol/secgroup.js';
import { useCleanup } from '../../harness/cleanup.js';
import { createNetns } from '../../harness/net.js';
import { runId, tmpDir } from '../../harness/tmp.js';

const TOKEN = 'secgroup-test-token-0123456789abcdef';
const WEB = '7a000000-0000-4000-8000-00000000000a';
const OPS = '7b000000-0000-4000-8000-00000000000b';

describe('kvmagent: security groups with real packets (network namespaces)', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  const rid = runId();
  const H = `${rid}sh`;
  const S = `${rid}ss`;
  const G = [1, 2, 3].map((i) => `${rid}s${i}`);
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  const ip = (i: number): string => `${net}.${10 + i}`;
  const tap = (i: number): string => `vn0000000000${i}`;
  const SVC = `${net}.2`;
  const client = new AgentClient();
  let ep: { url: string; token: string };

  const nicOf = (i: number, o: Partial<GuardedNicT> = {}): GuardedNicT => ({
    tap: tap(i),
    nicUuid: `eeeeeeee-0000-4000-8000-00000000000${i}`,
    mac: `fa:00:00:00:00:0${i}`,
    ip: ip(i),
    ingress: [],
    egress: [],
    egressWhitelist: false,
    serviceIps: [SVC],
    ...o,
  });
  const apply = (fw: HostFirewallT) => client.call(SecurityGroupApply, ep, { firewall: fw });
  const ping = (from: string, to: string): Promise<boolean> => execOk('ping', ['-c', '1', '-W', '1', to], { netns: from, timeoutMs: 10_000 });
  /** A TCP connection to port 2222 that gets the listener's greeting back (so replies pass too). */
  const tcp = async (from: string, to: string, port = 2222): Promise<boolean> => {
    const r = await exec('socat', ['-T', '2', '-', `TCP:${to}:${port},connect-timeout=2`], { netns: from, timeoutMs: 10_000, okCodes: [0, 1], quiet: true }).catch(() => undefined);
    return r?.stdout.includes('hello') ?? false;
  };
  const reach = async (from: string, to: string): Promise<{ ping: boolean; tcp: boolean }> => ({ ping: await ping(from, to), tcp: await tcp(from, to) });

  before(async () => {
    const work = await tmpDir('secgroup', cleanup);
    for (const ns of [H, S, ...G]) await createNetns(ns, cleanup);
    await exec('ip', ['netns', 'exec', H, 'sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1'], { timeoutMs: 10_000 });
    await exec('ip', ['-n', H, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await exec('ip', ['-n', H, 'link', 'set', 'br0', 'up']);
    const plug = async (port: string, ns: string, addr: string, mac?: string): Promise<void> => {
      await exec('ip', ['-n', H, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      if (mac) await exec('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac]);
      await exec('ip', ['-n', H, 'link', 'set', port, 'master', 'br0', 'up']);
      await exec('ip', ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      await exec('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    };
    await plug('svc0', S, SVC);
    await exec('ip', ['-n', S, 'addr', 'add', '169.254.169.254/32', 'dev', 'eth0']);
    for (const [i, ns] of G.entries()) {
      await plug(tap(i + 1), ns, ip(i + 1), nicOf(i + 1).mac);
      await exec('ip', ['-n', ns, 'route', 'add', '169.254.169.254/32', 'dev', 'eth0']);
      // every guest greets on TCP 2222 (one connection at a time is enough)
      await startProcess('socat', ['TCP-LISTEN:2222,fork,reuseaddr', 'SYSTEM:echo hello'], { netns: ns });
    }
    // services: DHCP + DNS (dnsmasq), metadata (HTTP-ish greeting on 169.254.169.254:80)
    await startProcess('dnsmasq', ['-k', '--conf-file=/dev/null', '--interface=eth0', '--bind-interfaces', `--dhcp-range=${net}.100,${net}.150,2m`, `--dhcp-leasefile=${join(work, 'leases')}`, '--address=/meta.tstack.test/10.1.2.3', '--no-resolv', '--no-hosts', `--pid-file=${join(work, 'dnsmasq.pid')}`], { netns: S });
    await startProcess('socat', ['TCP-LISTEN:80,bind=169.254.169.254,fork,reuseaddr', 'SYSTEM:echo hello-metadata'], { netns: S });
    // a rule of the host's own that must survive every apply
    await exec('iptables', ['-w', '-A', 'FORWARD', '-p', 'udp', '--dport', '9', '-j', 'DROP'], { netns: H });
    const server = new AgentServer({ agent: 'tstack-kvmagent', version: 'test', token: TOKEN });
    const a = await registerKvmAgent(server, { driver: new FakeDriver(), network: new IpNetwork({ netns: H }), firewall: new Firewall({ netns: H }) }, { noWatcher: true });
    const addr = await server.listen('127.0.0.1', 0);
    cleanup.add(async () => {
      await a.stop();
      await server.close();
    }, 'kvmagent');
    ep = { url: `http://127.0.0.1:${addr.port}`, token: TOKEN };
    // wait for the listeners
    for (let i = 0; i < 50 && !(await tcp(G[1]!, ip(1))); i++) await new Promise((r) => setTimeout(r, 100));
  });

  it('unguarded: everything passes', async () => {
    assert.deepEqual(await reach(G[1]!, ip(1)), { ping: true, tcp: true });
  });

  it('ingress is a whitelist: nothing but TCP 2222 reaches a guarded NIC; an ICMP rule opens ping', async () => {
    const r = await apply({ nics: [nicOf(1, { ingress: [{ protocol: 'TCP', startPort: 2222, endPort: 2222 }] })], sets: [] });
    assert.equal(r.nics, 1);
    assert.deepEqual(await reach(G[1]!, ip(1)), { ping: false, tcp: true });
    await apply({ nics: [nicOf(1, { ingress: [{ protocol: 'TCP', startPort: 2222, endPort: 2222 }, { protocol: 'ICMP' }] })], sets: [] });
    assert.deepEqual(await reach(G[1]!, ip(1)), { ping: true, tcp: true });
    // a CIDR narrows a rule: only guest 3 may connect
    await apply({ nics: [nicOf(1, { ingress: [{ protocol: 'TCP', startPort: 2000, endPort: 3000, cidr: `${ip(3)}/32` }] })], sets: [] });
    assert.deepEqual(await reach(G[1]!, ip(1)), { ping: false, tcp: false });
    assert.deepEqual(await reach(G[2]!, ip(1)), { ping: false, tcp: true });
  });

  it('stateful: a guarded NIC reaches out (egress open) and the replies come back through the closed ingress', async () => {
    assert.deepEqual(await reach(G[0]!, ip(2)), { ping: true, tcp: true });
  });

  it('egress: one egress rule makes it a whitelist (only that passes), no egress rule opens it again', async () => {
    const only3: FirewallRuleT[] = [{ protocol: 'ALL', cidr: `${ip(3)}/32` }];
    await apply({ nics: [nicOf(1, { egress: only3, egressWhitelist: true })], sets: [] });
    assert.deepEqual(await reach(G[0]!, ip(2)), { ping: false, tcp: false });
    assert.deepEqual(await reach(G[0]!, ip(3)), { ping: true, tcp: true });
    await apply({ nics: [nicOf(1)], sets: [] });
    assert.deepEqual(await reach(G[0]!, ip(2)), { ping: true, tcp: true });
  });

  it('remote groups: members reach each other; a NIC joining or leaving changes only the set', async () => {
    const fromWeb: FirewallRuleT[] = [{ protocol: 'ALL', remoteGroupUuid: WEB }];
    const fw = (members: number[]): HostFirewallT => ({ nics: members.map((i) => nicOf(i, { ingress: fromWeb })), sets: [{ groupUuid: WEB, ips: members.map(ip) }] });
    await apply(fw([1, 2]));
    assert.deepEqual(await reach(G[1]!, ip(1)), { ping: true, tcp: true }, 'member → member');
    assert.deepEqual(await reach(G[2]!, ip(1)), { ping: false, tcp: false }, 'non-member → member');
    const rules = await execOut('iptables-save', ['-t', 'filter'], { netns: H });
    await apply(fw([1, 2, 3]));
    assert.deepEqual(await reach(G[2]!, ip(1)), { ping: true, tcp: true }, 'after joining');
    // guest 3's own chains are new; the rules of 1 and 2 are unchanged (the set changed)
    const after = await execOut('iptables-save', ['-t', 'filter'], { netns: H });
    const of = (s: string, t: string): string[] => s.split('\n').filter((l) => l.startsWith(`-A tsg-i-${t}`) || l.startsWith(`-A tsg-o-${t}`));
    assert.deepEqual(of(after, tap(1)), of(rules, tap(1)));
    assert.match(await execOut('ipset', ['list', 'tsg4-' + (await execOut('ipset', ['list', '-n'], { netns: H })).split('\n').find((s) => s.startsWith('tsg4-'))!.slice(5)], { netns: H }), new RegExp(ip(3).replace(/\./g, '\\.')));
    await apply(fw([1, 2]));
    assert.deepEqual(await reach(G[2]!, ip(1)), { ping: false, tcp: false }, 'after leaving');
  });

  it('DHCP, DNS to the network server and metadata work for a guarded, anti-spoofed NIC with a closed egress', async () => {
    await apply({ nics: [nicOf(1, { egressWhitelist: true, egress: [{ protocol: 'TCP', startPort: 1, endPort: 1, cidr: '192.0.2.1/32' }], antiSpoofing: true })], sets: [] });
    assert.equal(await ping(G[0]!, SVC), false, 'ICMP to the server is not allowed');
    const lease = await exec('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '4', '-T', '1', '-s', '/bin/true'], { netns: G[0]!, timeoutMs: 30_000, okCodes: [0, 1] });
    assert.equal(lease.code, 0, `udhcpc got a lease: ${lease.stderr}${lease.stdout}`);
    const dns = await exec('busybox', ['nslookup', 'meta.tstack.test', SVC], { netns: G[0]!, timeoutMs: 15_000, okCodes: [0, 1] });
    assert.match(dns.stdout, /10\.1\.2\.3/, `DNS answered: ${dns.stdout}${dns.stderr}`);
    const meta = await exec('curl', ['-s', '--http0.9', '-m', '3', 'http://169.254.169.254/'], { netns: G[0]!, timeoutMs: 15_000, okCodes: [0, 1, 52, 56] });
    assert.match(meta.stdout, /hello-metadata/);
    // anti-spoofing: another source address from the same NIC is dropped
    await exec('ip', ['-n', G[0]!, 'addr', 'add', `${net}.99/24`, 'dev', 'eth0']);
    await apply({ nics: [nicOf(1, { antiSpoofing: true })], sets: [] });
    assert.equal(await execOk('ping', ['-c', '1', '-W', '1', '-I', `${net}.99`, ip(2)], { netns: G[0]!, timeoutMs: 10_000 }), false, 'spoofed source dropped');
    assert.equal(await ping(G[0]!, ip(2)), true, 'own source passes');
    await exec('ip', ['-n', G[0]!, 'addr', 'del', `${net}.99/24`, 'dev', 'eth0']);
  });

  it('drift: a hand-flushed chain is restored by the next apply; the host’s own rule survives; status reports the chains', async () => {
    const fw: HostFirewallT = { nics: [nicOf(1, { ingress: [{ protocol: 'TCP', startPort: 2222, endPort: 2222 }] })], sets: [] };
    await apply(fw);
    await exec('iptables', ['-w', '-F', `tsg-i-${tap(1)}`], { netns: H });
    await exec('iptables', ['-w', '-F', 'tstack-sg'], { netns: H });
    assert.equal(await ping(G[1]!, ip(1)), true, 'flushed: unfiltered');
    await apply(fw);
    assert.equal(await ping(G[1]!, ip(1)), false, 'restored');
    // the hook removed by hand: the agent's remembered state is wrong, the restore fails, it
    // re-reads the tables and applies again
    await exec('iptables', ['-w', '-D', 'FORWARD', '-j', 'tstack-sg'], { netns: H });
    assert.equal(await ping(G[1]!, ip(1)), true, 'unhooked: unfiltered');
    await apply(fw);
    assert.equal(await ping(G[1]!, ip(1)), false, 'hooked again');
    const st = await client.call(SecurityGroupStatus, ep, {});
    assert.equal(st.hooked, true);
    assert.deepEqual(st.chains.sort(), ['tsg-i-vn00000000001', 'tsg-o-vn00000000001', 'tstack-sg']);
    const fwd = await execOut('iptables', ['-w', '-S', 'FORWARD'], { netns: H });
    assert.equal(fwd.split('\n').filter((l) => l === '-A FORWARD -j tstack-sg').length, 1, 'hooked once');
    assert.match(fwd, /--dport 9 -j DROP/);
  });

  it('the last NIC leaving removes every chain, the hook and every set; the host’s own rule stays', async () => {
    await apply({ nics: [nicOf(1, { ingress: [{ protocol: 'ALL', remoteGroupUuid: OPS }] })], sets: [{ groupUuid: OPS, ips: [ip(2)] }] });
    const r = await apply({ nics: [], sets: [] });
    assert.equal(r.removedSets, 1);
    const save = await execOut('iptables-save', ['-t', 'filter'], { netns: H });
    assert.doesNotMatch(save, /tstack-sg|tsg-/);
    assert.match(save, /--dport 9 -j DROP/);
    assert.equal((await execOut('ipset', ['list', '-n'], { netns: H })).trim(), '');
    assert.deepEqual(await reach(G[1]!, ip(1)), { ping: true, tcp: true });
    // and applying nothing again is a no-op
    assert.equal((await apply({ nics: [], sets: [] })).rules, 0);
  });
});
