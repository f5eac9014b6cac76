// Security-group renderer: golden files pin the exact iptables-restore / ipset text; a missing
// golden file is a failure (UPDATE_GOLDEN=1 writes them after an intended change).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nicChains, normCidr, parseCurrent, renderFirewall, ruleMatch, setName } from '../../../kvmagent/secgroup/render.js';
import { FakeFirewall } from '../../../kvmagent/secgroup/firewall.js';
import type { HostFirewallT } from '../../../shared/protocol/secgroup.js';
import { TStackError } from '../../../shared/errors.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), 'golden');

function golden(name: string, actual: string): void {
  const f = join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(f, actual);
  assert.ok(existsSync(f), `golden file ${name} is missing (UPDATE_GOLDEN=1 creates it)`);
  assert.equal(actual, readFileSync(f, 'utf8'), `${name} differs from the golden file (UPDATE_GOLDEN=1 to accept an intended change)`);
}

const WEB = '5b6f7c1e-0a1b-4c2d-8e3f-000000000001';
const DB = '5b6f7c1e-0a1b-4c2d-8e3f-000000000002';

export function twoNics(): HostFirewallT {
  return {
    nics: [
      {
        tap: 'vnbbbbbbbbbbb',
        nicUuid: 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb',
        mac: 'fa:16:3e:00:00:02',
        ip: '10.0.0.12',
        ingress: [
          { protocol: 'TCP', startPort: 5432, endPort: 5432, remoteGroupUuid: WEB },
          { protocol: 'ALL', remoteGroupUuid: DB },
        ],
        egress: [{ protocol: 'ALL', remoteGroupUuid: DB }],
        egressWhitelist: false,
        serviceIps: ['10.0.0.2'],
      },
      {
        tap: 'vnaaaaaaaaaaa',
        nicUuid: 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa',
        mac: 'FA:16:3E:00:00:01',
        ip: '10.0.0.11',
        ingress: [
          { protocol: 'TCP', startPort: 22, endPort: 22 },
          { protocol: 'TCP', startPort: 8000, endPort: 8080, cidr: '192.168.7.9/24' },
          { protocol: 'ICMP', cidr: '10.0.0.0/24', remoteGroupUuid: WEB },
          { protocol: 'TCP', startPort: 22, endPort: 22 },
        ],
        egress: [
          { protocol: 'UDP', startPort: 123, endPort: 123, cidr: '0.0.0.0/0' },
          { protocol: 'ALL', remoteGroupUuid: WEB },
        ],
        egressWhitelist: true,
        serviceIps: ['10.0.0.2'],
        antiSpoofing: true,
      },
    ],
    sets: [
      { groupUuid: WEB, ips: ['10.0.0.11', '10.0.0.31', '10.0.0.11'] },
      { groupUuid: DB, ips: ['10.0.0.12'] },
    ],
  };
}

describe('security-group renderer', () => {
  it('two guarded NICs on a fresh host: hook, dispatch, per-NIC chains, sets (golden)', () => {
    const r = renderFirewall(twoNics(), { hooked: false, chains: [], sets: [] });
    golden('secgroup-two-nics.rules', r.iptables);
    golden('secgroup-two-nics.ipset', r.ipset);
    assert.deepEqual(r.staleSets, []);
    assert.equal(r.rules, (r.iptables.match(/^-A /gm) ?? []).length);
    assert.equal((r.iptables.match(/^-I FORWARD 1 -j tstack-sg$/gm) ?? []).length, 1);
    assert.doesNotMatch(r.iptables, /^-D FORWARD/m, 'nothing to unhook on a fresh host');
  });

  it('re-applying to a host that has it already: the hook moves back to the top (not doubled); departed NICs and groups are removed (golden)', () => {
    const fw = twoNics();
    fw.nics = fw.nics.filter((n) => n.tap === 'vnaaaaaaaaaaa');
    fw.nics[0]!.ingress = [{ protocol: 'TCP', startPort: 22, endPort: 22 }];
    fw.nics[0]!.egress = [];
    fw.sets = [];
    const cur = { hooked: true, chains: ['tstack-sg', 'tsg-i-vnaaaaaaaaaaa', 'tsg-o-vnaaaaaaaaaaa', 'tsg-i-vnbbbbbbbbbbb', 'tsg-o-vnbbbbbbbbbbb'], sets: [setName(WEB), setName(DB), 'tsgt-leftoverfromacrash'] };
    const r = renderFirewall(fw, cur);
    golden('secgroup-shrink.rules', r.iptables);
    assert.equal(r.ipset, '');
    assert.deepEqual(r.staleChains, ['tsg-i-vnbbbbbbbbbbb', 'tsg-o-vnbbbbbbbbbbb']);
    assert.deepEqual(r.staleSets, [setName(WEB), setName(DB), 'tsgt-leftoverfromacrash'].sort());
    const lines = r.iptables.split('\n');
    assert.equal(lines.indexOf('-D FORWARD -j tstack-sg') + 1, lines.indexOf('-I FORWARD 1 -j tstack-sg'));
  });

  it('nothing guarded any more: unhooks and deletes every tstack chain (golden); nothing at all on a clean host', () => {
    const r = renderFirewall({ nics: [], sets: [] }, { hooked: true, chains: ['tstack-sg', 'tsg-i-vnaaaaaaaaaaa', 'tsg-o-vnaaaaaaaaaaa'], sets: [setName(WEB)] });
    golden('secgroup-empty.rules', r.iptables);
    assert.deepEqual(r.staleSets, [setName(WEB)]);
    const clean = renderFirewall({ nics: [], sets: [] }, { hooked: false, chains: [], sets: [] });
    assert.equal(clean.iptables, '*filter\nCOMMIT\n');
    assert.equal(clean.rules, 0);
  });

  it('is deterministic: NIC and set order do not change the text', () => {
    const a = twoNics();
    const b = twoNics();
    b.nics.reverse();
    b.sets.reverse();
    const cur = { hooked: true, chains: [], sets: [] };
    assert.equal(renderFirewall(a, cur).iptables, renderFirewall(b, cur).iptables);
    assert.equal(renderFirewall(a, cur).ipset, renderFirewall(b, cur).ipset);
  });

  it('open egress ends in RETURN, a whitelist in DROP after DNS to the service IPs and metadata', () => {
    const r = renderFirewall(twoNics(), { hooked: true, chains: [], sets: [] }).iptables;
    assert.match(r, /^-A tsg-o-vnbbbbbbbbbbb -j RETURN$/m);
    assert.doesNotMatch(r, /^-A tsg-o-vnbbbbbbbbbbb .*--match-set/m, 'egress rules of an open NIC are not rendered');
    assert.match(r, /^-A tsg-o-vnaaaaaaaaaaa -d 10\.0\.0\.2\/32 -p udp -m udp --dport 53 -j RETURN$/m);
    assert.match(r, /^-A tsg-o-vnaaaaaaaaaaa -d 169\.254\.169\.254\/32 -p tcp -m tcp --dport 80 -j RETURN$/m);
    assert.match(r, /^-A tsg-o-vnaaaaaaaaaaa -j DROP$/m);
    assert.match(r, /^-A tsg-i-vnaaaaaaaaaaa -j DROP$/m);
    // DHCP is allowed before the anti-spoofing drops (a DISCOVER comes from 0.0.0.0)
    const lines = r.split('\n');
    assert.ok(lines.indexOf('-A tsg-o-vnaaaaaaaaaaa -p udp -m udp --sport 68 --dport 67 -j RETURN') < lines.indexOf('-A tsg-o-vnaaaaaaaaaaa ! -s 10.0.0.11/32 -j DROP'));
    // the same rule from two groups is rendered once
    assert.equal(lines.filter((l) => l === '-A tsg-i-vnaaaaaaaaaaa -p tcp -m tcp --dport 22 -j RETURN').length, 1);
  });

  it('set names are 31 characters, distinct for uuids that differ in one digit', () => {
    assert.equal(setName(WEB).length, 31);
    assert.notEqual(setName(WEB), setName(DB));
    assert.match(setName(WEB), /^tsg4-[a-z2-7]{26}$/);
  });

  it('rule matches: CIDR normalised, port ranges, remote set with direction', () => {
    const known = new Set([setName(WEB)]);
    assert.equal(ruleMatch({ protocol: 'TCP', startPort: 1, endPort: 65535, cidr: '10.1.2.3/8' }, 'ingress', known), '-s 10.0.0.0/8 -p tcp -m tcp --dport 1:65535');
    assert.equal(ruleMatch({ protocol: 'UDP', startPort: 53, endPort: 53 }, 'egress', known), '-p udp -m udp --dport 53');
    assert.equal(ruleMatch({ protocol: 'ALL', remoteGroupUuid: WEB }, 'egress', known), `-m set --match-set ${setName(WEB)} dst`);
    assert.equal(ruleMatch({ protocol: 'ICMP', cidr: '0.0.0.0/0' }, 'ingress', known), '-s 0.0.0.0/0 -p icmp');
    assert.equal(normCidr('192.168.7.9/32'), '192.168.7.9/32');
  });

  it('refuses what would break the ruleset or inject text, naming the field', () => {
    const refuse = (fn: () => unknown, field: string): void =>
      assert.throws(fn, (e: unknown) => e instanceof TStackError && e.code === 'INVALID_ARGUMENT' && e.details?.field === field);
    refuse(() => ruleMatch({ protocol: 'TCP', startPort: 90, endPort: 80 }, 'ingress', new Set()), 'endPort');
    refuse(() => ruleMatch({ protocol: 'ALL', startPort: 1, endPort: 2 }, 'ingress', new Set()), 'startPort');
    refuse(() => ruleMatch({ protocol: 'ICMP', startPort: 1, endPort: 2 }, 'ingress', new Set()), 'startPort');
    refuse(() => ruleMatch({ protocol: 'TCP', cidr: '10.0.0.0/33' }, 'ingress', new Set()), 'cidr');
    refuse(() => ruleMatch({ protocol: 'ALL', remoteGroupUuid: DB }, 'ingress', new Set()), 'remoteGroupUuid');
    refuse(() => nicChains('vn0 -j ACCEPT'), 'tap');
    const fw = twoNics();
    fw.nics[1]!.tap = fw.nics[0]!.tap;
    refuse(() => renderFirewall(fw, { hooked: false, chains: [], sets: [] }), 'nics.tap');
    const ips = twoNics();
    ips.sets[0]!.ips.push('10.0.0.1\nflush');
    refuse(() => renderFirewall(ips, { hooked: false, chains: [], sets: [] }), 'sets.ips');
  });

  it('parses iptables-save and ipset list -n: only tstack chains, the hook, tstack sets', () => {
    const save = [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD ACCEPT [0:0]',
      ':DOCKER - [0:0]',
      ':tstack-sg - [0:0]',
      ':tsg-i-vnaaaaaaaaaaa - [0:0]',
      '-A FORWARD -j DOCKER',
      '-A FORWARD -j tstack-sg',
      'COMMIT',
    ].join('\n');
    assert.deepEqual(parseCurrent(save, 'other\ntsg4-abc\ntsgt-abc\n'), { hooked: true, chains: ['tstack-sg', 'tsg-i-vnaaaaaaaaaaa'], sets: ['tsg4-abc', 'tsgt-abc'] });
    assert.equal(parseCurrent(save.replace('-A FORWARD -j tstack-sg\n', ''), '').hooked, false);
  });

  it('the in-memory firewall converges like the real one: apply, shrink, empty', async () => {
    const f = new FakeFirewall();
    await f.apply(twoNics());
    assert.equal(f.state.hooked, true);
    assert.equal(f.state.chains.length, 5);
    assert.equal(f.state.hooked, true);
    assert.equal(f.state.sets.length, 2);
    const r = await f.apply({ nics: [], sets: [] });
    assert.equal(r.removedChains, 5);
    assert.equal(r.removedSets, 2);
    assert.deepEqual(f.state, { hooked: false, chains: [], sets: [] });
  });
});
