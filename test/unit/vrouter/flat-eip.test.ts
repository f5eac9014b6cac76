// Flat-network EIPs (vrouteragent/render/flat-eip.ts, flat-eip.ts): the namespace plan, the
// netfilter and ebtables renderers (goldens) and the validation of every address that reaches
// ip, iptables or ebtables. Regenerate goldens after an intended change:
//   UPDATE_GOLDEN=1 npx mocha test/unit/vrouter/flat-eip.test.ts
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { golden as goldenFile } from '../../harness/assert.js';
import { TStackError } from '../../../shared/errors.js';
import { check } from '../../../shared/protocol/schema.js';
import { FlatEipApply } from '../../../shared/protocol/vrouter.js';
import { eipMac, planFlatEips, type FlatEipSpec } from '../../../vrouteragent/render/flat-eip.js';
import { validateFlatEips } from '../../../vrouteragent/flat-eip.js';
import { flatEipNames } from '../../../vrouteragent/names.js';

const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');
const HOST = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const PUB = '11111111-2222-3333-4444-555555555555';
const PRIV_A = 'aaaaaaaa-0000-0000-0000-000000000001';
const PRIV_B = 'bbbbbbbb-0000-0000-0000-000000000002';

const spec = (): FlatEipSpec => ({
  hostUuid: HOST,
  publicNetworks: [{ l3NetworkUuid: PUB, bridge: 'br_pub', cidr: '203.0.113.0/24', gateway: '203.0.113.1' }],
  privateNetworks: [
    { l3NetworkUuid: PRIV_B, bridge: 'br_b', cidr: '10.2.0.0/24', gateway: '10.2.0.1' },
    { l3NetworkUuid: PRIV_A, bridge: 'br_a', cidr: '10.1.0.0/24', gateway: '10.1.0.1' },
  ],
  eips: [
    { eip: '203.0.113.60', publicL3NetworkUuid: PUB, privateL3NetworkUuid: PRIV_B, privateIp: '10.2.0.7', mac: 'FA:16:3E:00:00:02' },
    { eip: '203.0.113.50', publicL3NetworkUuid: PUB, privateL3NetworkUuid: PRIV_A, privateIp: '10.1.0.5', mac: 'fa:16:3e:00:00:01' },
  ],
});

function refused(s: FlatEipSpec, field: string): void {
  assert.throws(() => validateFlatEips(s), (e: unknown) => e instanceof TStackError && e.code === 'INVALID_ARGUMENT' && e.details?.field === field, `expected 400 naming ${field}`);
}

describe('flat EIPs: plan and renderers', () => {
  const names = flatEipNames({ nsPrefix: 'tsflat', ifPrefix: 'tsf' });

  it('one namespace per host; interface and chain names fit the kernel limits', () => {
    assert.equal(names.namespace, 'tsflat-eip');
    assert.equal(names.nsIf('p', PUB), 'p11111111');
    assert.ok(names.hostVeth('g', PRIV_A).length <= 15);
    assert.notEqual(names.hostVeth('g', PRIV_A), names.hostVeth('p', PRIV_A));
    assert.equal(names.natChain, 'TSF-EIP');
  });

  it('plan: VIPs as /32 on the public interface, a table per public network, a rule and a permanent neighbour per EIP VM', () => {
    const p = planFlatEips(spec(), names);
    assert.deepEqual(p.ifs.map((i) => [i.nsIf, i.bridge, i.addrs]), [
      ['p11111111', 'br_pub', ['203.0.113.50/32', '203.0.113.60/32']],
      ['gaaaaaaaa', 'br_a', []],
      ['gbbbbbbbb', 'br_b', []],
    ]);
    assert.deepEqual(p.rules, [
      { from: '10.1.0.5/32', table: '100', priority: 1000 },
      { from: '10.2.0.7/32', table: '100', priority: 1001 },
    ]);
    assert.deepEqual(p.routes.filter((r) => r.table === '100'), [
      { table: '100', dst: '203.0.113.0/24', dev: 'p11111111' },
      { table: '100', dst: 'default', dev: 'p11111111', via: '203.0.113.1' },
    ]);
    assert.deepEqual(p.neighbours[1], { ip: '10.2.0.7', mac: 'fa:16:3e:00:00:02', dev: 'gbbbbbbbb' });
  });

  it('MACs are locally administered unicast and differ per host (a private L2 may span hosts)', () => {
    const a = eipMac(HOST, 'g', PRIV_A);
    assert.match(a, /^02(:[0-9a-f]{2}){5}$/);
    assert.notEqual(a, eipMac('00000000-0000-0000-0000-000000000000', 'g', PRIV_A));
    assert.equal(a, eipMac(HOST.toUpperCase(), 'g', PRIV_A), 'stable');
  });

  it('netfilter and ebtables (goldens); the order of the request does not matter', () => {
    const p = planFlatEips(spec(), names);
    goldenFile(GOLDEN, 'flat-eip-iptables.rules', p.iptables);
    goldenFile(GOLDEN, 'flat-eip-ebtables.rules', p.ebtables);
    const r = spec();
    r.eips.reverse();
    r.privateNetworks.reverse();
    const q = planFlatEips(r, names);
    assert.equal(q.iptables, p.iptables);
    assert.equal(q.ebtables, p.ebtables);
    // the steering: the gateway's ARP answered with the namespace's MAC, off-subnet re-addressed
    const g = eipMac(HOST, 'g', PRIV_A);
    assert.match(p.ebtables, new RegExp(`-p ARP -s fa:16:3e:00:00:01 --arp-op Request --arp-ip-dst 10\\.1\\.0\\.1 -j arpreply --arpreply-mac ${g}`));
    assert.match(p.ebtables, new RegExp(`--ip-src 10\\.1\\.0\\.5 -j dnat --to-destination ${g} --dnat-target ACCEPT`));
    assert.match(p.iptables, /-A PREROUTING -d 203\.0\.113\.50\/32 -i p11111111 -j DNAT --to-destination 10\.1\.0\.5/);
    assert.match(p.iptables, /-A POSTROUTING -s 10\.1\.0\.5\/32 -o p11111111 -j SNAT --to-source 203\.0\.113\.50/);
  });

  it('a network without EIPs gets no interface', () => {
    const s = spec();
    s.eips = s.eips.slice(1);
    assert.deepEqual(planFlatEips(s, names).ifs.map((i) => i.nsIf), ['p11111111', 'gaaaaaaaa']);
  });
});

describe('flat EIPs: validation (400 naming the field)', () => {
  it('the schema refuses bad syntax before anything else', () => {
    const bad = { ...spec(), eips: [{ ...spec().eips[0]!, eip: '203.0.113.999' }] };
    assert.ok(check(FlatEipApply.request, bad).length > 0);
    assert.ok(check(FlatEipApply.request, { ...spec(), publicNetworks: [{ ...spec().publicNetworks[0]!, bridge: 'br;rm -rf' }] }).length > 0);
    assert.equal(check(FlatEipApply.request, spec()).length, 0);
  });

  it('accepts the example and an empty set', () => {
    validateFlatEips(spec());
    validateFlatEips({ hostUuid: HOST, publicNetworks: [], privateNetworks: [], eips: [] });
  });

  it('refuses addresses outside their network, gateways, duplicates, unknown networks, overlaps', () => {
    const s = (f: (x: FlatEipSpec) => void): FlatEipSpec => {
      const x = spec();
      f(x);
      return x;
    };
    refused(s((x) => (x.eips[0]!.eip = '198.51.100.5')), 'eips.0.eip');
    refused(s((x) => (x.eips[0]!.eip = '203.0.113.1')), 'eips.0.eip');
    refused(s((x) => (x.eips[0]!.eip = '203.0.113.255')), 'eips.0.eip');
    refused(s((x) => (x.eips[0]!.privateIp = '10.1.0.9')), 'eips.0.privateIp');
    refused(s((x) => (x.eips[0]!.privateIp = '10.2.0.1')), 'eips.0.privateIp');
    refused(s((x) => (x.eips[1]!.eip = '203.0.113.60')), 'eips.1.eip');
    refused(s((x) => (x.eips[1]!.mac = 'fa:16:3e:00:00:02')), 'eips.1.mac');
    refused(s((x) => (x.eips[0]!.mac = '01:00:5e:00:00:01')), 'eips.0.mac');
    refused(s((x) => (x.eips[0]!.publicL3NetworkUuid = PRIV_A)), 'eips.0.publicL3NetworkUuid');
    refused(s((x) => (x.eips[0]!.privateL3NetworkUuid = PUB)), 'eips.0.privateL3NetworkUuid');
    refused(s((x) => (x.privateNetworks[0]!.cidr = '10.2.0.5/24')), 'privateNetworks.0.cidr');
    refused(s((x) => (x.privateNetworks[0]!.gateway = '10.9.0.1')), 'privateNetworks.0.gateway');
    refused(s((x) => (x.privateNetworks[1]!.cidr = '10.0.0.0/8')), 'privateNetworks.1.cidr');
    refused(s((x) => (x.privateNetworks[1]!.l3NetworkUuid = PRIV_B)), 'privateNetworks.1.l3NetworkUuid');
  });
});
