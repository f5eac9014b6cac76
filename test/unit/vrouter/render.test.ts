// Golden-file tests of the vrouter renderers (dnsmasq files, metadata documents, config drive).
// Regenerate after an intended change: UPDATE_GOLDEN=1 npx mocha test/unit/vrouter/render.test.ts
import { strict as assert } from 'node:assert';
import { golden as goldenFile } from '../../harness/assert.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  dnsmasqPaths,
  forcedOptions,
  renderDhcpHosts,
  renderDhcpOpts,
  renderDnsmasqConf,
  renderHosts,
  renderServers,
} from '../../../vrouteragent/render/dnsmasq.js';
import { ec2MetaData, metadataReply, openstackMetaData } from '../../../vrouteragent/render/metadata.js';
import { renderMetaData, renderNetworkConfig, renderUserData, yamlScalar } from '../../../vrouteragent/render/configdrive.js';
import { filterLeases } from '../../../vrouteragent/render/leases.js';
import { expandFlat, partsOfSaved } from '../../../vrouteragent/render/flat-desired.js';
import { ENTRIES, KEY, MD, NET, NICS, OTHER_RECORDS, RECORDS } from './fixtures.js';

const GOLDEN = join(fileURLToPath(new URL('.', import.meta.url)), 'golden');

const golden = (name: string, actual: string): void => goldenFile(GOLDEN, name, actual);

describe('vrouter renderers (golden files)', () => {
  const p = dnsmasqPaths('/var/lib/tstack/vrouter/flat/6f1c2a9b0d4e4f008a0000000000abcd');

  it('dnsmasq.conf: static-only DHCP, unknown MACs ignored, no ping, forced 121/MTU', () => {
    const conf = renderDnsmasqConf(NET, 'tsfn6f1c2a9b0d4', p);
    golden('dnsmasq.conf', conf);
    assert.match(conf, /^dhcp-ignore=tag:!known$/m);
    assert.match(conf, /^no-ping$/m);
    assert.match(conf, /^dhcp-range=set:l3,10\.20\.0\.0,static,255\.255\.255\.0$/m);
    assert.match(conf, /^dhcp-option-force=option:classless-static-route,169\.254\.169\.254\/32,10\.20\.0\.2,0\.0\.0\.0\/0,10\.20\.0\.1$/m);
    assert.doesNotMatch(conf, /^dhcp-authoritative/m);
  });

  it('dhcp-hosts: sorted by IP, MACs lower case, short hostnames, lease time', () => {
    const s = renderDhcpHosts(NET, ENTRIES);
    golden('dhcp-hosts', s);
    assert.equal(s.split('\n')[0], '52:54:00:aa:00:11,10.20.0.11,web-1,3600');
    assert.equal(s.split('\n')[1], '52:54:00:aa:00:12,10.20.0.12,web-2,3600');
    assert.equal(s.split('\n')[2], '52:54:00:aa:00:20,10.20.0.150,3600');
  });

  it('dhcp-opts: router, DNS, domain', () => {
    golden('dhcp-opts', renderDhcpOpts(NET));
    assert.equal(renderDhcpOpts({ ...NET, dnsServers: undefined, gateway: undefined, dnsDomain: undefined }), 'option:dns-server,10.20.0.2\n');
  });

  it('forced options: the metadata route only without a gateway; none with metadata off', () => {
    assert.deepEqual(forcedOptions({ ...NET, gateway: undefined, mtu: undefined }), ['option:classless-static-route,169.254.169.254/32,10.20.0.2']);
    assert.deepEqual(forcedOptions({ ...NET, metadata: false, mtu: undefined }), []);
  });

  it('hosts: explicit records win, DHCP hostnames fill in, FQDN + short with a domain', () => {
    const s = renderHosts(NET, RECORDS, ENTRIES);
    golden('hosts', s);
    assert.match(s, /^10\.20\.0\.11 web-1\.flat\.example web-1$/m);
    assert.match(s, /^10\.20\.0\.12 web-2\.flat\.example web-2$/m);
    assert.equal(s.match(/web-1/g)!.length, 2, 'web-1 appears once as a row');
  });

  it('hosts: rows by address, then name where addresses are equal (as a sort by name, then a stable sort by address)', () => {
    // the order before the ties-only sort: every name sorted first
    const reference = (records: Array<{ name: string; ip: string }>, entries: Array<{ mac: string; ip: string; hostname?: string }>, d: string | undefined): string => {
      const byName = new Map<string, string>();
      for (const r of records) byName.set(r.name.toLowerCase(), r.ip);
      for (const e of entries) if (e.hostname && !byName.has(e.hostname.toLowerCase())) byName.set(e.hostname.toLowerCase(), e.ip);
      const ipInt = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
      const rows = [...byName.keys()].sort().map((n) => [n, byName.get(n)!] as const);
      rows.sort((a, b) => ipInt(a[1]) - ipInt(b[1]));
      return rows.map(([n, ip]) => (d && !n.includes('.') ? `${ip} ${n}.${d} ${n}\n` : d && n.endsWith(`.${d}`) ? `${ip} ${n} ${n.slice(0, -d.length - 1)}\n` : `${ip} ${n}\n`)).join('');
    };
    let seed = 11;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const records: Array<{ name: string; ip: string }> = [];
      const entries: Array<{ mac: string; ip: string; hostname?: string }> = [];
      // few addresses and names: equal addresses, names given twice (in other cases), FQDNs
      const ip = (): string => `10.20.${next(2)}.${next(6) * 50}`;
      const name = (): string => ['web', 'DB', 'db', 'a', 'b.flat.example', 'c.other', 'Zed', 'x-1'][next(8)]! + (next(3) === 0 ? '' : String(next(12)));
      for (let i = next(30); i > 0; i--) records.push({ name: name(), ip: ip() });
      for (let i = next(30); i > 0; i--) entries.push(next(4) === 0 ? { mac: '52:54:00:00:00:01', ip: ip() } : { mac: '52:54:00:00:00:01', ip: ip(), hostname: name() });
      const dom = next(3) === 0 ? undefined : 'flat.example';
      assert.equal(renderHosts({ ...NET, dnsDomain: dom }, records, entries), reference(records, entries, dom), `round ${round}`);
    }
  });

  it('flat/apply sends each NIC once: the same dhcp-hosts and hosts as the parts, and the metadata records', () => {
    const parts = expandFlat({ network: NET, nics: NICS, dns: { records: OTHER_RECORDS, forwarders: ['192.0.2.53'] } });
    golden('dhcp-hosts', renderDhcpHosts(NET, parts.dhcp));
    golden('hosts', renderHosts(NET, parts.dns.records, parts.dhcp));
    assert.deepEqual(parts.dns.forwarders, ['192.0.2.53']);
    assert.deepEqual(
      parts.metadata.map((r) => [r.ip, r.instanceId, r.hostname]),
      NICS.map((n) => [n.ip, n.vmUuid, n.hostname]),
      'a metadata record per NIC, named or not',
    );
    assert.deepEqual(parts.metadata[1], MD);
    // the DNS names come from the NICs even where the L3 has no DHCP; no metadata where it serves none
    const noDhcp = expandFlat({ network: { ...NET, metadata: false }, dhcp: false, nics: NICS, dns: { records: OTHER_RECORDS, forwarders: [] } });
    assert.deepEqual(noDhcp.dhcp, []);
    assert.deepEqual(noDhcp.metadata, []);
    golden('hosts', renderHosts(NET, noDhcp.dns.records, noDhcp.dhcp));
  });

  it('a saved desired.json of either form: the last flat/apply, or the parts (per-part commands, protocol 1 agents)', () => {
    const apply = { network: NET, nics: NICS, dns: { records: OTHER_RECORDS, forwarders: [] } };
    assert.deepEqual(partsOfSaved(JSON.parse(JSON.stringify(apply))), expandFlat(apply));
    const v1 = { network: NET, dhcp: ENTRIES, dns: { records: RECORDS, forwarders: [] }, metadata: [MD] };
    const parts = partsOfSaved(JSON.parse(JSON.stringify(v1)));
    golden('dhcp-hosts', renderDhcpHosts(NET, parts.dhcp));
    assert.ok(parts.dhcp.every((e) => e.mac === e.mac.toLowerCase()), 'MACs in lower case (as the leases compare them)');
    assert.deepEqual(parts.metadata, [MD]);
  });

  it('servers', () => {
    golden('servers', renderServers(['192.0.2.53', '198.51.100.53']));
    assert.equal(renderServers([]), '');
  });

  it('EC2 metadata tree and replies', () => {
    const tree = [...ec2MetaData(MD).entries()].map(([k, v]) => `== ${k || '(index)'}\n${v}`).join('\n');
    golden('ec2-meta-data.txt', tree + '\n');
    assert.equal(metadataReply(MD, '/latest/meta-data/public-keys/0/openssh-key').body, KEY + '\n');
    assert.equal(metadataReply(MD, '/latest/meta-data/local-hostname').body, 'web-1');
    assert.equal(metadataReply(MD, '/latest/meta-data/local-ipv4').body, '10.20.0.11');
    assert.equal(metadataReply(MD, '/2009-04-04/meta-data/instance-id').body, MD.instanceId);
    assert.equal(metadataReply(MD, '/latest/user-data').body, MD.userData);
    assert.equal(metadataReply(MD, '/latest/meta-data/nope').status, 404);
    assert.equal(metadataReply(MD, '/../etc/passwd').status, 404);
    assert.equal(metadataReply({ ...MD, userData: undefined }, '/latest/user-data').status, 404);
    assert.equal(metadataReply(MD, '/latest/meta-data/').body.split('\n').includes('public-keys/'), true);
  });

  it('OpenStack meta_data.json and user_data', () => {
    const r = metadataReply(MD, '/openstack/latest/meta_data.json');
    golden('openstack-meta_data.json', r.body);
    assert.equal(r.contentType, 'application/json');
    assert.deepEqual(JSON.parse(r.body), openstackMetaData(MD));
    assert.equal(metadataReply(MD, '/openstack/latest/user_data').body, MD.userData);
    assert.equal(metadataReply(MD, '/openstack/2012-08-10/meta_data.json').status, 200);
  });

  it('config drive: meta-data, user-data, network-config', () => {
    const spec = {
      instanceId: MD.instanceId,
      hostname: 'web-1',
      userData: '#cloud-config\nruncmd:\n  - echo hi\n',
      sshKeys: [KEY, 'ssh-rsa AAAAB3Nza: tricky#comment'],
      networks: [{ mac: '52:54:00:AA:00:11', ip: '10.20.0.11', netmask: '255.255.255.0', gateway: '10.20.0.1', dnsServers: ['10.20.0.2'], dnsDomain: 'flat.example', mtu: 1450 }],
    };
    golden('cidata-meta-data', renderMetaData(spec));
    golden('cidata-network-config', renderNetworkConfig(spec));
    assert.equal(renderUserData(spec), spec.userData);
    assert.match(renderMetaData(spec), /^ {2}- "ssh-rsa AAAAB3Nza: tricky#comment"$/m);
    assert.match(renderNetworkConfig({ instanceId: 'i', hostname: 'h' }), /dhcp4: true/);
    assert.equal(yamlScalar('yes'), '"yes"');
    assert.equal(yamlScalar('web-1'), 'web-1');
  });

  it('leases: only desired MAC/IP pairs stay (a reused address loses its old lease); other lines kept', () => {
    const text = [
      'duid 00:01:00:01:2c:aa:bb:cc:52:54:00:00:00:01',
      '1764900000 52:54:00:aa:00:11 10.20.0.11 web-1 01:52:54:00:aa:00:11', // desired: kept
      '1764900000 52:54:00:aa:00:99 10.20.0.12 old-vm *', // 10.20.0.12 now belongs to 52:54:00:aa:00:12
      '1764900000 52:54:00:AA:00:12 10.20.0.13 web-2 *', // desired MAC, other address
      '1764900000 52:54:00:aa:00:20 10.20.0.150 * *', // desired: kept
      '',
    ].join('\n');
    const f = filterLeases(text, ENTRIES);
    golden('leases-filtered', f.kept);
    assert.deepEqual(f.released, ['52:54:00:aa:00:99 10.20.0.12', '52:54:00:aa:00:12 10.20.0.13']);
    assert.deepEqual(filterLeases(f.kept, ENTRIES).released, [], 'idempotent');
    assert.equal(filterLeases('', ENTRIES).kept, '');
  });
});
