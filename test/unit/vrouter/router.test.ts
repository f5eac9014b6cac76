// VPC router renderers (golden files) and the validation of everything that reaches `ip` and
// iptables-restore. Regenerate goldens after an intended change:
//   UPDATE_GOLDEN=1 npx mocha test/unit/vrouter/router.test.ts
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { golden as goldenFile } from '../../harness/assert.js';
import type { RouterSpecT } from '../../../shared/protocol/vpc.js';
import { RouterSpec } from '../../../shared/protocol/vpc.js';
import { check } from '../../../shared/protocol/schema.js';
import { TStackError } from '../../../shared/errors.js';
import { planInterfaces, renderRouterNetfilter } from '../../../vrouteragent/render/router.js';
import { renderRouterDnsmasqConf, renderRouterHosts } from '../../../vrouteragent/render/router-dns.js';
import { dnsmasqPaths } from '../../../vrouteragent/render/dnsmasq.js';
import { validateRouter } from '../../../vrouteragent/router-validate.js';
import { parseVipCounters } from '../../../vrouteragent/render/vip-accounting.js';
import { vipRates } from '../../../vrouteragent/vip-metrics.js';
import { routerFromNamespace, routerNames } from '../../../vrouteragent/names.js';

const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');
const golden = (name: string, actual: string): void => goldenFile(GOLDEN, name, actual);

const R = '7a1c2a9b-0d4e-4f00-8a00-00000000cafe';
const NET_A = '11111111-2222-4333-8444-555555555555';
const NET_B = '66666666-7777-4888-8999-aaaaaaaaaaaa';

const SPEC: RouterSpecT = {
  routerUuid: R,
  public: { bridge: 'br-pub', ip: '198.51.100.10', prefix: 24, gateway: '198.51.100.1' },
  networks: [
    { l3NetworkUuid: NET_B, bridge: 'br-b', ip: '10.2.0.1', cidr: '10.2.0.0/24' },
    { l3NetworkUuid: NET_A, bridge: 'br-a', ip: '10.1.0.1', cidr: '10.1.0.0/24', mac: '52:54:00:AA:00:01' },
  ],
  vips: ['198.51.100.30', '198.51.100.20'],
  eips: [{ eip: '198.51.100.20', privateIp: '10.1.0.5' }],
  portForwards: [
    { vip: '198.51.100.30', protocol: 'UDP', vipPortStart: 5000, vipPortEnd: 5002, privateIp: '10.2.0.7', privatePortStart: 6000, privatePortEnd: 6002 },
    { vip: '198.51.100.30', protocol: 'TCP', vipPortStart: 2222, vipPortEnd: 2222, privateIp: '10.2.0.7', privatePortStart: 22, privatePortEnd: 22, allowedCidr: '198.51.100.0/24' },
    { vip: '198.51.100.10', protocol: 'TCP', vipPortStart: 8000, vipPortEnd: 8010, privateIp: '10.1.0.6', privatePortStart: 8000, privatePortEnd: 8010 },
  ],
  dns: { forwarders: ['198.51.100.1'], records: [{ name: 'web-1', ip: '10.1.0.5' }, { name: 'DB', ip: '10.2.0.7' }] },
  vipUuids: [
    { ip: '198.51.100.30', vipUuid: 'bbbbbbbb-0000-4000-8000-000000000030' },
    { ip: '198.51.100.10', vipUuid: 'aaaaaaaa-0000-4000-8000-000000000010' },
    { ip: '198.51.100.20', vipUuid: 'bbbbbbbb-0000-4000-8000-000000000020' },
  ],
};

const bad = (patch: (s: RouterSpecT) => void, field: RegExp): void => {
  const s = structuredClone(SPEC);
  patch(s);
  assert.throws(
    () => validateRouter(s),
    (e: unknown) => e instanceof TStackError && e.code === 'INVALID_ARGUMENT' && field.test(String(e.details?.field)),
  );
};

describe('VPC router (vrouteragent renderers and validation)', () => {
  it('names: one namespace per router, host veths ≤ 15 chars and distinct per interface', () => {
    const n = routerNames(R, { nsPrefix: 'tsflat', ifPrefix: 'tsf' });
    assert.equal(n.namespace, 'tsflat-r-7a1c2a9b0d4e4f008a000000000cafe'.replace('000cafe', '0000cafe'));
    assert.equal(routerFromNamespace(n.namespace), R);
    const vs = [n.hostVeth('public'), n.hostVeth(NET_A), n.hostVeth(NET_B)];
    for (const v of vs) assert.match(v, /^tsfr[0-9a-f]{11}$/);
    assert.equal(new Set(vs).size, 3);
    assert.equal(n.nsIf('public'), 'pub0');
    assert.equal(n.nsIf(NET_A), 'g11111111');
    assert.throws(() => routerNames('x; rm -rf /'), /not a uuid/);
  });

  it('interface plan: public first with the VIPs as /32, networks sorted, MACs lower case', () => {
    const p = planInterfaces(SPEC, routerNames(R));
    assert.deepEqual(p.map((x) => [x.nsIf, x.bridge, x.addrs.join(' ')]), [
      ['pub0', 'br-pub', '198.51.100.10/24 198.51.100.20/32 198.51.100.30/32'],
      ['g11111111', 'br-a', '10.1.0.1/24'],
      ['g66666666', 'br-b', '10.2.0.1/24'],
    ]);
    assert.equal(p[1]!.mac, '52:54:00:aa:00:01');
    assert.match(p[0]!.mac, /^02(:[0-9a-f]{2}){5}$/, 'derived MACs are locally administered');
    assert.equal(planInterfaces(SPEC, routerNames(R))[2]!.mac, p[2]!.mac, 'and stable');
  });

  it('netfilter: EIP 1:1 NAT before SNAT, port forwards (same and shifted ports), public side closed', () => {
    const nf = renderRouterNetfilter(SPEC);
    golden('router-iptables.rules', nf.text);
    const lines = nf.text.split('\n');
    const at = (re: RegExp): number => lines.findIndex((l) => re.test(l));
    assert.ok(at(/-s 10\.1\.0\.5\/32 -o pub0 -j SNAT --to-source 198\.51\.100\.20/) < at(/-s 10\.1\.0\.0\/24 -o pub0 -j SNAT --to-source 198\.51\.100\.10/));
    assert.ok(at(/-d 198\.51\.100\.20\/32 -i pub0 -j DNAT --to-destination 10\.1\.0\.5$/) > 0);
    assert.ok(at(/--dport 2222 -j DNAT --to-destination 10\.2\.0\.7:22$/) > 0);
    assert.ok(at(/-s 198\.51\.100\.0\/24 -p tcp -m tcp --dport 2222/) > 0);
    assert.ok(at(/--dport 8000:8010 -j DNAT --to-destination 10\.1\.0\.6$/) > 0);
    for (const p of [5000, 5001, 5002]) assert.ok(at(new RegExp(`-p udp -m udp --dport ${p} -j DNAT --to-destination 10\\.2\\.0\\.7:${p + 1000}$`)) > 0);
    assert.equal(nf.natRules, 1 + 1 + 1 + 3 + 1 + 2);
    assert.equal(lines[lines.indexOf('*mangle') - 2], '-A FORWARD -i pub0 -j DROP', 'the public side closed last');
  });

  it('netfilter: a network with snat off has no SNAT rule; no networks: empty tables still replace the old ones', () => {
    const nf = renderRouterNetfilter({ ...SPEC, networks: [{ ...SPEC.networks[0]!, snat: false }], eips: [], portForwards: [] });
    assert.doesNotMatch(nf.text, /SNAT/);
    assert.match(nf.text, /^\*nat$/m);
    assert.equal(nf.natRules, 0);
  });

  it('DNS forwarder: DNS only on the gateway interfaces, names of every network', () => {
    const p = dnsmasqPaths('/var/lib/tstack/vrouter/router/7a1c');
    const conf = renderRouterDnsmasqConf(R, ['g66666666', 'g11111111'], p);
    golden('router-dnsmasq.conf', conf);
    assert.doesNotMatch(conf, /dhcp/);
    assert.equal(renderRouterHosts(SPEC.dns!.records), '10.1.0.5 web-1\n10.2.0.7 db\n');
  });

  it('a valid spec passes, and the schema refuses names and addresses that are not', () => {
    validateRouter(SPEC);
    assert.ok(check(RouterSpec, { ...SPEC, public: { ...SPEC.public, bridge: 'br;x' } }).length > 0);
    assert.ok(check(RouterSpec, { ...SPEC, public: { ...SPEC.public, bridge: 'a-bridge-name-too-long' } }).length > 0);
    assert.ok(check(RouterSpec, { ...SPEC, vips: ['198.51.100.300'] }).length > 0);
    assert.ok(check(RouterSpec, { ...SPEC, networks: [{ ...SPEC.networks[0]!, cidr: '10.2.0.0/24 -j ACCEPT' }] }).length > 0);
    assert.ok(check(RouterSpec, { ...SPEC, portForwards: [{ ...SPEC.portForwards[0]!, protocol: 'ICMP' }] }).length > 0);
  });

  it('validation names the field of every semantic problem', () => {
    bad((s) => (s.public.ip = '198.51.100.255'), /^router\.public\.ip$/);
    bad((s) => (s.public.gateway = '198.51.100.10'), /^router\.public\.gateway$/);
    bad((s) => (s.networks[0]!.cidr = '10.2.0.1/24'), /^router\.networks\.0\.cidr$/);
    bad((s) => { s.networks[1]!.cidr = '10.0.0.0/14'; }, /^router\.networks\.1\.cidr$/); // overlaps networks.0
    bad((s) => Object.assign(s.networks[0]!, { cidr: '198.51.100.128/25', ip: '198.51.100.129' }), /^router\.networks\.0\.cidr$/); // overlaps public
    bad((s) => (s.networks[0]!.ip = '10.3.0.1'), /^router\.networks\.0\.ip$/);
    bad((s) => (s.networks[1]!.l3NetworkUuid = NET_B), /^router\.networks\.1\.l3NetworkUuid$/);
    bad((s) => (s.vips[0] = '203.0.113.5'), /^router\.vips\.0$/);
    bad((s) => (s.vips[0] = '198.51.100.10'), /^router\.vips\.0$/);
    bad((s) => (s.eips[0]!.eip = '198.51.100.10'), /^router\.eips\.0\.eip$/); // the system VIP serves no EIP
    bad((s) => (s.eips[0]!.privateIp = '10.9.0.5'), /^router\.eips\.0\.privateIp$/);
    bad((s) => (s.eips[0]!.privateIp = '10.1.0.1'), /^router\.eips\.0\.privateIp$/); // the gateway
    bad((s) => s.eips.push({ eip: '198.51.100.20', privateIp: '10.1.0.9' }), /^router\.eips\.1\.eip$/);
    bad((s) => (s.portForwards[0]!.vip = '198.51.100.20'), /^router\.portForwards\.0\.vip$/); // an EIP's VIP
    bad((s) => (s.portForwards[0]!.privatePortEnd = 6003), /^router\.portForwards\.0\.privatePortEnd$/);
    bad((s) => (s.portForwards[0]!.vipPortEnd = 4999), /^router\.portForwards\.0\.vipPortEnd$/);
    bad((s) => s.portForwards.push({ ...SPEC.portForwards[2]!, vipPortStart: 8010, vipPortEnd: 8011, privatePortStart: 8010, privatePortEnd: 8011 }), /^router\.portForwards\.3\.vipPortStart$/);
    bad((s) => (s.portForwards[1]!.allowedCidr = '198.51.100.7/24'), /^router\.portForwards\.1\.allowedCidr$/);
    bad((s) => s.portForwards.push({ vip: '198.51.100.30', protocol: 'TCP', vipPortStart: 10000, vipPortEnd: 12000, privateIp: '10.1.0.5', privatePortStart: 20000, privatePortEnd: 22000 }), /^router\.portForwards\.3\.vipPortEnd$/);
    bad((s) => s.dns!.records.push({ name: 'web-1', ip: '10.1.0.9' }), /^router\.dns\.records\.2\.name$/);
    bad((s) => (s.vipUuids![0]!.ip = '198.51.100.99'), /^router\.vipUuids\.0\.ip$/); // not an address of the router
    bad((s) => (s.vipUuids![1]!.ip = '198.51.100.30'), /^router\.vipUuids\.1\.ip$/); // twice
  });

  it('the same TCP and UDP ports on one VIP do not clash', () => {
    const s = structuredClone(SPEC);
    s.portForwards.push({ vip: '198.51.100.30', protocol: 'TCP', vipPortStart: 5000, vipPortEnd: 5002, privateIp: '10.2.0.7', privatePortStart: 5000, privatePortEnd: 5002 });
    validateRouter(s);
  });

  describe('per-VIP traffic accounting (ZStack/VIP metrics)', () => {
    const U10 = 'aaaaaaaa-0000-4000-8000-000000000010';
    const U20 = 'bbbbbbbb-0000-4000-8000-000000000020';

    it('counts in mangle on the public interface: inbound by pre-DNAT destination, outbound by the post-SNAT source from conntrack', () => {
      const text = renderRouterNetfilter(SPEC).text;
      const mangle = text.slice(text.indexOf('*mangle'));
      assert.match(mangle, /^-A PREROUTING -i pub0 -j VIP-IN$/m);
      assert.match(mangle, /^-A POSTROUTING -o pub0 -j VIP-OUT$/m);
      assert.match(mangle, new RegExp(`^-A VIP-IN -d 198\\.51\\.100\\.20/32 -m comment --comment vip-${U20} -j RETURN$`, 'm'));
      assert.match(mangle, new RegExp(`^-A VIP-OUT -m conntrack --ctdir ORIGINAL --ctrepldst 198\\.51\\.100\\.20/32 -m comment --comment vip-${U20} -j RETURN$`, 'm'));
      assert.match(mangle, new RegExp(`^-A VIP-OUT -m conntrack --ctdir REPLY --ctorigdst 198\\.51\\.100\\.20/32 -m comment --comment vip-${U20} -j RETURN$`, 'm'));
      assert.equal(mangle.split('\n').filter((l) => / -A VIP-|^-A VIP-/.test(l)).length, 9, 'three rules per VIP');
      const none = renderRouterNetfilter({ ...SPEC, vipUuids: undefined }).text;
      assert.doesNotMatch(none, /VIP-IN/);
      assert.match(none, /^\*mangle\n(:[A-Z]+ ACCEPT \[0:0\]\n){5}COMMIT$/m, 'no VIPs: an empty mangle table replaces old counters');
    });

    it('counters read back from iptables-save -c are carried into the next apply', () => {
      // iptables-save prints the conntrack options in its own order: the parser keys on chain and comment only
      const save = [
        '# Generated by iptables-save v1.8.9 (nf_tables)',
        '*mangle',
        ':PREROUTING ACCEPT [900:80000]',
        ':VIP-IN - [0:0]',
        '[5:300] -A PREROUTING -i pub0 -j VIP-IN',
        `[12:3456] -A VIP-IN -d 198.51.100.20/32 -m comment --comment vip-${U20} -j RETURN`,
        `[7:700] -A VIP-OUT -m conntrack --ctrepldst 198.51.100.20 --ctdir ORIGINAL -m comment --comment "vip-${U20}" -j RETURN`,
        `[3:300] -A VIP-OUT -m conntrack --ctorigdst 198.51.100.20 --ctdir REPLY -m comment --comment vip-${U20.toUpperCase()} -j RETURN`,
        `[0:0] -A VIP-IN -d 198.51.100.10/32 -m comment --comment vip-${U10} -j RETURN`,
        `[1:2] -A VIP-IN -d 198.51.100.99/32 -m comment --comment other-${U10} -j RETURN`,
        'COMMIT',
      ].join('\n');
      const c = parseVipCounters(save);
      assert.deepEqual(c.get(U20), { inPackets: 12, inBytes: 3456, outPackets: 10, outBytes: 1000 });
      assert.deepEqual(c.get(U10), { inPackets: 0, inBytes: 0, outPackets: 0, outBytes: 0 });
      assert.equal(c.size, 2);
      const text = renderRouterNetfilter(SPEC, c).text;
      assert.match(text, new RegExp(`^\\[12:3456\\] -A VIP-IN -d 198\\.51\\.100\\.20/32 .*vip-${U20}`, 'm'));
      assert.match(text, new RegExp(`^\\[10:1000\\] -A VIP-OUT -m conntrack --ctdir ORIGINAL --ctrepldst 198\\.51\\.100\\.20/32`, 'm'));
      assert.match(text, /^-A VIP-OUT -m conntrack --ctdir REPLY --ctorigdst 198\.51\.100\.20\/32/m);
      assert.deepEqual(parseVipCounters(text).get(U20), c.get(U20), 'what is restored reads back the same');
      assert.equal(text.replace(/^\[\d+:\d+\] /gm, ''), renderRouterNetfilter(SPEC).text, 'counters change nothing else');
    });

    it('rates between two samples; a counter that went down (re-created namespace) gives 0, not a negative rate', () => {
      const s = (at: number, inBytes: number, outBytes: number) => ({ at, vips: new Map([[U20, { inPackets: inBytes / 100, inBytes, outPackets: outBytes / 100, outBytes }]]) });
      assert.deepEqual([...vipRates(undefined, s(0, 0, 0)).values()].flat(), [], 'no rate from one sample');
      const r = vipRates(s(0, 1000, 500), s(2000, 5000, 2500));
      assert.deepEqual(r.get('VIPInBoundTrafficInBytes'), [{ VipUUID: U20, value: 2000 }]);
      assert.deepEqual(r.get('VIPInBoundTrafficInPackages'), [{ VipUUID: U20, value: 20 }]);
      assert.deepEqual(r.get('VIPOutBoundTrafficInBytes'), [{ VipUUID: U20, value: 1000 }]);
      assert.deepEqual(r.get('VIPOutBoundTrafficInPackages'), [{ VipUUID: U20, value: 10 }]);
      assert.deepEqual(vipRates(s(0, 5000, 500), s(1000, 100, 600)).get('VIPInBoundTrafficInBytes'), [{ VipUUID: U20, value: 0 }]);
    });
  });
});
