// The controller's computation of one host's desired security-group firewall (pure part), and
// the rule validation of the security-group kind.
import assert from 'node:assert/strict';
import { hostFirewall, closesEgress, guardedHosts, type NicInfo, type Snapshot } from '../../../controller/secgroup/desired.js';
import { defaultRules, type SecurityGroup } from '../../../controller/secgroup/model.js';
import { renderFirewall } from '../../../kvmagent/secgroup/render.js';

const H1 = 'h1111111-0000-4000-8000-000000000001';
const H2 = 'h2222222-0000-4000-8000-000000000002';
const L3 = '33333333-0000-4000-8000-000000000003';
const WEB = 'aaaaaaaa-0000-4000-8000-00000000000a';
const DB = 'bbbbbbbb-0000-4000-8000-00000000000b';
let seq = 0;
const uid = (): string => `cccccccc-0000-4000-8000-${String(++seq).padStart(12, '0')}`;

function nic(n: number, host: string | undefined): NicInfo {
  const u = `eeeeeeee-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const r: NicInfo = { uuid: u, ip: `10.0.0.${n}`, mac: `fa:00:00:00:00:${String(n).padStart(2, '0')}`, l3NetworkUuid: L3, tap: `vn${String(n).padStart(11, '0')}` };
  if (host) r.hostUuid = host;
  return r;
}

function group(uuid: string, members: NicInfo[], extra: SecurityGroup['rules'] = []): SecurityGroup {
  return { uuid, kind: 'security-group', name: uuid.slice(0, 4), createDate: '', lastOpDate: '', ownerAccountUuid: 'acc', tags: [], state: 'Enabled', rules: [...defaultRules(uuid, uid), ...extra], attachedL3NetworkUuids: [L3], vmNicUuids: members.map((m) => m.uuid) };
}

function snap(groups: SecurityGroup[], nics: NicInfo[]): Snapshot {
  return { groups, nics: new Map(nics.map((n) => [n.uuid, n])), serviceIps: new Map([[L3, ['10.0.0.2']]]), antiSpoofing: new Set() };
}

describe('security groups: desired state of a host', () => {
  const a = nic(11, H1); // web, host 1
  const b = nic(12, H1); // db, host 1
  const c = nic(13, H2); // web, host 2
  const d = nic(14, H1); // in no group
  const stopped = nic(15, undefined); // web, no host

  it('only member NICs of the host are guarded; a NIC in no group is not', () => {
    const s = snap([group(WEB, [a, c, stopped]), group(DB, [b])], [a, b, c, d, stopped]);
    const fw = hostFirewall(H1, s);
    assert.deepEqual(fw.nics.map((n) => n.ip), ['10.0.0.11', '10.0.0.12']);
    assert.deepEqual([...guardedHosts(s)].sort(), [H1, H2]);
  });

  it('a new group (default rules only): ingress from members, egress open; member set spans hosts', () => {
    const fw = hostFirewall(H1, snap([group(WEB, [a, c, stopped])], [a, c, stopped]));
    const n = fw.nics[0]!;
    assert.deepEqual(n.ingress, [{ protocol: 'ALL', remoteGroupUuid: WEB }]);
    assert.equal(n.egressWhitelist, false);
    assert.deepEqual(n.egress, []);
    assert.deepEqual(n.serviceIps, ['10.0.0.2']);
    assert.deepEqual(fw.sets, [{ groupUuid: WEB, ips: ['10.0.0.11', '10.0.0.13', '10.0.0.15'] }]);
  });

  it('one egress rule turns egress into a whitelist that keeps the default member rule', () => {
    const g = group(WEB, [a], [{ uuid: uid(), type: 'Egress', protocol: 'TCP', startPort: 443, endPort: 443, allowedCidr: '0.0.0.0/0', ipVersion: 4 }]);
    const n = hostFirewall(H1, snap([g], [a])).nics[0]!;
    assert.equal(n.egressWhitelist, true);
    assert.deepEqual(n.egress, [{ protocol: 'ALL', remoteGroupUuid: WEB }, { protocol: 'TCP', startPort: 443, endPort: 443, cidr: '0.0.0.0/0' }]);
    assert.equal(closesEgress(g, g.rules[0]!), false, 'Ingress rules never close egress');
    assert.equal(closesEgress(g, g.rules[1]!), false, 'the default ALL-to-members rule does not');
    assert.equal(closesEgress(g, g.rules[2]!), true);
  });

  it('a NIC in two groups gets the union of their rules; remote-group rules bring that set', () => {
    const web = group(WEB, [a]);
    const db = group(DB, [a, b], [{ uuid: uid(), type: 'Ingress', protocol: 'TCP', startPort: 5432, endPort: 5432, remoteSecurityGroupUuid: WEB, ipVersion: 4 }]);
    const fw = hostFirewall(H1, snap([web, db], [a, b]));
    const na = fw.nics.find((n) => n.ip === '10.0.0.11')!;
    assert.deepEqual(na.ingress.map((r) => r.remoteGroupUuid), [WEB, DB, WEB]);
    assert.deepEqual(fw.sets.map((s) => s.groupUuid), [WEB, DB].sort());
    // and it renders
    assert.ok(renderFirewall(fw, { hooked: false, chains: [], sets: [] }).rules > 10);
  });

  it('removing the default rules: a group with no rules denies all ingress and leaves egress open', () => {
    const g = group(WEB, [a]);
    g.rules = [];
    const fw = hostFirewall(H1, snap([g], [a]));
    assert.deepEqual(fw.nics[0]!.ingress, []);
    assert.equal(fw.nics[0]!.egressWhitelist, false);
    assert.deepEqual(fw.sets, []);
  });

  it('members that no longer exist and rules naming a deleted group are left out; anti-spoofing per L3', () => {
    const g = group(WEB, [a], [{ uuid: uid(), type: 'Ingress', protocol: 'ALL', startPort: -1, endPort: -1, remoteSecurityGroupUuid: DB, ipVersion: 4 }]);
    g.vmNicUuids.push('ffffffff-0000-4000-8000-000000000000');
    const s = snap([g], [a]);
    s.antiSpoofing.add(L3);
    const fw = hostFirewall(H1, s);
    assert.equal(fw.nics.length, 1);
    assert.deepEqual(fw.nics[0]!.ingress, [{ protocol: 'ALL', remoteGroupUuid: WEB }]);
    assert.equal(fw.nics[0]!.antiSpoofing, true);
  });

  it('a host with no guarded NIC gets the empty firewall (which removes everything)', () => {
    assert.deepEqual(hostFirewall(H2, snap([group(WEB, [a])], [a])), { nics: [], sets: [] });
  });
});
