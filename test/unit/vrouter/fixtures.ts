// Shared inputs of the vrouter unit tests.
import type { DhcpEntrySpec, DnsRecordSpec, FlatApplySpec, FlatNetworkSpec, MetadataRecordSpec } from '../../../vrouteragent/validate.js';

export const L3 = '6f1c2a9b-0d4e-4f00-8a00-00000000abcd';

export const NET: FlatNetworkSpec = {
  l3NetworkUuid: L3,
  bridge: 'br-flat0',
  cidr: '10.20.0.0/24',
  dhcpServerIp: '10.20.0.2',
  gateway: '10.20.0.1',
  ipRanges: [
    { startIp: '10.20.0.10', endIp: '10.20.0.99' },
    { startIp: '10.20.0.150', endIp: '10.20.0.200' },
  ],
  dnsServers: ['10.20.0.2', '192.0.2.53'],
  dnsDomain: 'flat.example',
  mtu: 1450,
  leaseTimeSec: 3600,
};

export const ENTRIES: DhcpEntrySpec[] = [
  { mac: '52:54:00:AA:00:12', ip: '10.20.0.12', hostname: 'web-2.flat.example' },
  { mac: '52:54:00:aa:00:11', ip: '10.20.0.11', hostname: 'web-1', vmUuid: '11111111-2222-3333-4444-555555555555' },
  { mac: '52:54:00:aa:00:20', ip: '10.20.0.150' },
];

export const RECORDS: DnsRecordSpec[] = [
  { name: 'db', ip: '10.20.0.30' },
  { name: 'web-1', ip: '10.20.0.11' },
];

export const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbZ0u7xkD2rXg0vN3k1p6Q0y5b7u1xv8tJ6m0q1w2e3 alice@laptop';

export const MD: MetadataRecordSpec = {
  ip: '10.20.0.11',
  instanceId: '11111111-2222-3333-4444-555555555555',
  hostname: 'web-1',
  userData: '#!/bin/sh\necho hello from user-data\n',
  sshKeys: [KEY],
  mac: '52:54:00:AA:00:11',
};

/**
 * The same host's state in flat/apply's form (each NIC once): ENTRIES' NICs, web-1 with MD's
 * metadata, the third NIC without a name; OTHER_RECORDS: the names other hosts serve.
 */
export const NICS: FlatApplySpec['nics'] = [
  { mac: '52:54:00:AA:00:12', ip: '10.20.0.12', vmUuid: '22222222-2222-3333-4444-555555555555', hostname: 'web-2.flat.example' },
  { mac: MD.mac!, ip: '10.20.0.11', vmUuid: MD.instanceId, hostname: 'web-1', userData: MD.userData!, sshKeys: MD.sshKeys! },
  { mac: '52:54:00:aa:00:20', ip: '10.20.0.150', vmUuid: '33333333-2222-3333-4444-555555555555', hostname: 'web-1', named: false },
];
export const OTHER_RECORDS: DnsRecordSpec[] = [{ name: 'db', ip: '10.20.0.30' }];
