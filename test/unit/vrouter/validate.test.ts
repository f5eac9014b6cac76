// Validation of flat-network requests: schema (field named) + semantic checks, and names.
import { strict as assert } from 'node:assert';
import { TStackError } from '../../../shared/errors.js';
import { validate } from '../../../shared/protocol/schema.js';
import { vrouter } from '../../../shared/protocol/index.js';
import { validateDhcpEntries, validateDnsRecords, validateFlatApply, validateMetadataRecords, validateNetwork } from '../../../vrouteragent/validate.js';
import { checkScheme, flatNames, l3FromNamespace } from '../../../vrouteragent/names.js';
import { ENTRIES, L3, MD, NET, NICS, OTHER_RECORDS } from './fixtures.js';

function invalidField(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TStackError, `expected TStackError, got ${String(e)}`);
    assert.equal(e.code, 'INVALID_ARGUMENT', e.message);
    return String(e.details?.field);
  }
  assert.fail('expected INVALID_ARGUMENT');
}

describe('vrouter validation', () => {
  it('accepts the fixture network and entries', () => {
    validateNetwork(NET);
    validateDhcpEntries(NET, ENTRIES);
    validateMetadataRecords(NET, [MD]);
  });

  describe('network', () => {
    const cases: Array<[string, Partial<typeof NET>, string]> = [
      ['overlapping ranges', { ipRanges: [{ startIp: '10.20.0.10', endIp: '10.20.0.50' }, { startIp: '10.20.0.40', endIp: '10.20.0.60' }] }, 'network.ipRanges.1'],
      ['range end before start', { ipRanges: [{ startIp: '10.20.0.50', endIp: '10.20.0.10' }] }, 'network.ipRanges.0.endIp'],
      ['range outside the CIDR', { ipRanges: [{ startIp: '10.20.1.10', endIp: '10.20.1.50' }] }, 'network.ipRanges.0.startIp'],
      ['DHCP server outside the CIDR', { dhcpServerIp: '10.21.0.2' }, 'network.dhcpServerIp'],
      ['DHCP server = network address', { dhcpServerIp: '10.20.0.0' }, 'network.dhcpServerIp'],
      ['gateway outside', { gateway: '10.30.0.1' }, 'network.gateway'],
      ['gateway = DHCP server', { gateway: '10.20.0.2' }, 'network.gateway'],
      ['host bits in the CIDR', { cidr: '10.20.0.5/24' }, 'network.cidr'],
    ];
    for (const [what, patch, field] of cases) it(`${what} → ${field}`, () => assert.equal(invalidField(() => validateNetwork({ ...NET, ...patch })), field));
  });

  describe('DHCP entries', () => {
    const e = (over: Partial<(typeof ENTRIES)[0]>, i = 1) => ENTRIES.map((x, j) => (j === i ? { ...x, ...over } : x));
    it('IP outside the CIDR', () => assert.equal(invalidField(() => validateDhcpEntries(NET, e({ ip: '10.99.0.5' }))), 'entries.1.ip'));
    it('duplicate MAC (case-insensitive)', () => assert.equal(invalidField(() => validateDhcpEntries(NET, e({ mac: '52:54:00:aa:00:12' }))), 'entries.1.mac'));
    it('duplicate IP', () => assert.equal(invalidField(() => validateDhcpEntries(NET, e({ ip: '10.20.0.12' }))), 'entries.1.ip'));
    it('duplicate hostname', () => assert.equal(invalidField(() => validateDhcpEntries(NET, e({ hostname: 'WEB-2' }))), 'entries.1.hostname'));
    it('the DHCP server / gateway / broadcast address', () => {
      assert.equal(invalidField(() => validateDhcpEntries(NET, e({ ip: '10.20.0.2' }))), 'entries.1.ip');
      assert.equal(invalidField(() => validateDhcpEntries(NET, e({ ip: '10.20.0.1' }))), 'entries.1.ip');
      assert.equal(invalidField(() => validateDhcpEntries(NET, e({ ip: '10.20.0.255' }))), 'entries.1.ip');
    });
  });

  describe('request schemas (field named)', () => {
    const apply = (entries: unknown[]) => validate(vrouter.DhcpApply.request, { l3NetworkUuid: L3, entries }, 'flat/dhcp/apply');
    it('hostname with a space', () => assert.equal(invalidField(() => apply([{ mac: '52:54:00:00:00:01', ip: '10.20.0.5', hostname: 'my vm' }])), 'entries.0.hostname'));
    it('hostname with bad chars / leading dash / too long label', () => {
      for (const h of ['vm_1', 'vm;rm', '-vm', 'a'.repeat(64), 'vm\nx', 'vm.']) {
        assert.equal(invalidField(() => apply([{ mac: '52:54:00:00:00:01', ip: '10.20.0.5', hostname: h }])), 'entries.0.hostname', h);
      }
    });
    it('bad MAC, bad IP, unknown field', () => {
      assert.equal(invalidField(() => apply([{ mac: '52:54:00:00:00', ip: '10.20.0.5' }])), 'entries.0.mac');
      assert.equal(invalidField(() => apply([{ mac: '52:54:00:00:00:01', ip: '10.20.0.256' }])), 'entries.0.ip');
      assert.equal(invalidField(() => apply([{ mac: '52:54:00:00:00:01', ip: '10.20.0.5', extra: 1 }])), 'entries.0.extra');
    });
    it('bridge name longer than 15 chars, bad CIDR', () => {
      assert.equal(invalidField(() => validate(vrouter.NamespaceEnsure.request, { network: { ...NET, bridge: 'b'.repeat(16) } })), 'network.bridge');
      assert.equal(invalidField(() => validate(vrouter.NamespaceEnsure.request, { network: { ...NET, cidr: '10.20.0.0/33' } })), 'network.cidr');
    });
    it('config drive path must be an absolute .iso path without ..', () => {
      const req = { path: '/tmp/x/../../etc/passwd.iso', instanceId: 'i-1', hostname: 'vm' };
      assert.equal(invalidField(() => validate(vrouter.ConfigDriveBuild.request, req)), 'path');
      validate(vrouter.ConfigDriveBuild.request, { ...req, path: '/var/lib/tstack/cd/vm1.iso' });
    });
    it('ssh keys must be one line', () => {
      assert.equal(invalidField(() => validate(vrouter.MetadataApply.request, { l3NetworkUuid: L3, records: [{ ...MD, sshKeys: ['ssh-ed25519 AAAA x\nssh-rsa BBBB'] }] })), 'records.0.sshKeys.0');
    });
    it('flat/apply: the whole state is checked by the schema (unknown fields, bad MACs, protocol 1 lists)', () => {
      const req = { network: NET, nics: NICS, dns: { records: OTHER_RECORDS, forwarders: [] } };
      validate(vrouter.FlatApply.request, req);
      const nic = (over: Record<string, unknown>) => ({ ...req, nics: [{ ...NICS[0]!, ...over }] });
      assert.equal(invalidField(() => validate(vrouter.FlatApply.request, nic({ mac: 'nope' }))), 'nics.0.mac');
      assert.equal(invalidField(() => validate(vrouter.FlatApply.request, nic({ hostname: 'my vm' }))), 'nics.0.hostname');
      assert.equal(invalidField(() => validate(vrouter.FlatApply.request, nic({ vmUuid: '../etc' }))), 'nics.0.vmUuid');
      assert.equal(invalidField(() => validate(vrouter.FlatApply.request, nic({ sshKeys: ['ssh-ed25519 AAAA x\nssh-rsa BBBB'] }))), 'nics.0.sshKeys.0');
      assert.equal(invalidField(() => validate(vrouter.FlatApply.request, { ...req, extra: 1 })), 'extra');
      assert.equal(invalidField(() => validate(vrouter.FlatApply.request, { ...req, metadata: [MD] })), 'metadata', 'a protocol-1 body is refused');
    });
  });

  describe('flat/apply as a whole (each NIC once)', () => {
    const want = { network: NET, nics: NICS, dns: { records: OTHER_RECORDS, forwarders: [] } };
    const nics = (i: number, over: Record<string, unknown>) => ({ ...want, nics: NICS.map((x, j) => (j === i ? { ...x, ...over } : x)) });
    it('accepts the fixture', () => validateFlatApply(want));
    it('IP outside the CIDR, or the DHCP server / gateway / broadcast address', () => {
      for (const ip of ['10.99.0.5', '10.20.0.2', '10.20.0.1', '10.20.0.255']) assert.equal(invalidField(() => validateFlatApply(nics(1, { ip }))), 'nics.1.ip', ip);
    });
    it('duplicate MAC (case-insensitive), duplicate IP', () => {
      assert.equal(invalidField(() => validateFlatApply(nics(1, { mac: '52:54:00:aa:00:12' }))), 'nics.1.mac');
      assert.equal(invalidField(() => validateFlatApply(nics(1, { ip: '10.20.0.12' }))), 'nics.1.ip');
    });
    it('a name given twice: two named NICs, or a named NIC and a record of another host', () => {
      assert.equal(invalidField(() => validateFlatApply(nics(1, { hostname: 'WEB-2' }))), 'nics.1.hostname');
      assert.equal(invalidField(() => validateFlatApply({ ...want, dns: { records: [{ name: 'Web-1', ip: '10.20.0.40' }], forwarders: [] } })), 'nics.1.hostname');
      assert.equal(invalidField(() => validateFlatApply({ ...want, dns: { records: [...OTHER_RECORDS, { name: 'DB', ip: '10.20.0.40' }], forwarders: [] } })), 'dns.records.1.name');
    });
    it('one metadata record per VM: a VM twice only where the L3 serves no metadata', () => {
      assert.equal(invalidField(() => validateFlatApply(nics(2, { vmUuid: NICS[0]!.vmUuid }))), 'nics.2.vmUuid');
      validateFlatApply({ ...nics(2, { vmUuid: NICS[0]!.vmUuid }), network: { ...NET, metadata: false } });
    });
  });

  it('DNS records: duplicate names', () => assert.equal(invalidField(() => validateDnsRecords([{ name: 'a', ip: '10.0.0.1' }, { name: 'A', ip: '10.0.0.2' }])), 'records.1.name'));
  it('metadata records: duplicate IP / instance id, IP outside', () => {
    assert.equal(invalidField(() => validateMetadataRecords(NET, [MD, { ...MD, instanceId: 'other' }])), 'records.1.ip');
    assert.equal(invalidField(() => validateMetadataRecords(NET, [MD, { ...MD, ip: '10.20.0.12' }])), 'records.1.instanceId');
    assert.equal(invalidField(() => validateMetadataRecords(NET, [{ ...MD, ip: '192.168.1.1' }])), 'records.0.ip');
  });

  describe('names', () => {
    it('derives ≤15-char interface names and a reversible namespace name', () => {
      const n = flatNames(L3);
      assert.equal(n.namespace, 'tsflat-6f1c2a9b0d4e4f008a0000000000abcd');
      assert.equal(n.hostVeth, 'tsfh6f1c2a9b0d4');
      assert.equal(n.nsVeth, 'tsfn6f1c2a9b0d4');
      assert.equal(l3FromNamespace(n.namespace), L3);
      const long = flatNames(L3, { nsPrefix: 't1a2b3a', ifPrefix: 't1a2b3a' });
      assert.ok(long.hostVeth.length <= 15 && long.nsVeth.length <= 15, long.hostVeth);
      assert.notEqual(long.hostVeth, long.nsVeth);
    });
    it('rejects bad prefixes and non-uuids', () => {
      assert.throws(() => checkScheme({ nsPrefix: 'Bad/ns', ifPrefix: 'x' }), /namespace prefix/);
      assert.throws(() => checkScheme({ nsPrefix: 'ok', ifPrefix: 'toolong1' }), /interface prefix/);
      assert.throws(() => flatNames('not-a-uuid'), /not a uuid/);
    });
  });
});
