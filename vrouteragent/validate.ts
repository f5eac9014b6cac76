// Semantic validation of flat-network requests (the schema already checked shapes, formats
// and host-name syntax). Every check runs before anything is applied; the first problem
// becomes INVALID_ARGUMENT naming the field ("network.ipRanges.1", "entries.3.mac", …).
import { invalid } from '../shared/errors.js';
import type { Static } from '../shared/protocol/schema.js';
import type { DhcpEntry, DnsRecord, FlatApply, FlatNetwork, MetadataRecord } from '../shared/protocol/vrouter.js';
import { inSubnet, ipToInt, isHostAddress, parseCidr, type Subnet } from './ip.js';

export type FlatNetworkSpec = Static<typeof FlatNetwork>;
export type DhcpEntrySpec = Static<typeof DhcpEntry>;
export type DnsRecordSpec = Static<typeof DnsRecord>;
export type MetadataRecordSpec = Static<typeof MetadataRecord>;
/** A flat/apply request as sent: the DNS records whole or as a delta. */
export type FlatApplyRequest = Static<typeof FlatApply.request>;
/** A flat/apply with its DNS records whole: the complete desired state of one L3 on this host, each NIC once. */
export type FlatApplySpec = Omit<FlatApplyRequest, 'dns'> & { dns: { records: DnsRecordSpec[]; forwarders: string[] } };

export function validateNetwork(net: FlatNetworkSpec, field = 'network'): Subnet {
  const s = parseCidr(net.cidr);
  if (s.network !== net.cidr.split('/')[0]) throw invalid(`${field}.cidr`, `${net.cidr} has host bits set (the network is ${s.network}/${s.prefix})`);
  if (s.prefix > 30) throw invalid(`${field}.cidr`, `${net.cidr} is too small for DHCP (at most /30)`);
  if (!isHostAddress(s, net.dhcpServerIp)) throw invalid(`${field}.dhcpServerIp`, `${net.dhcpServerIp} is not a host address of ${net.cidr}`);
  if (net.gateway !== undefined) {
    if (!isHostAddress(s, net.gateway)) throw invalid(`${field}.gateway`, `${net.gateway} is not a host address of ${net.cidr}`);
    if (net.gateway === net.dhcpServerIp) throw invalid(`${field}.gateway`, `the gateway ${net.gateway} cannot be the DHCP server address`);
  }
  const ranges = net.ipRanges ?? [];
  ranges.forEach((r, i) => {
    const f = `${field}.ipRanges.${i}`;
    if (!inSubnet(s, r.startIp)) throw invalid(`${f}.startIp`, `${r.startIp} is outside ${net.cidr}`);
    if (!inSubnet(s, r.endIp)) throw invalid(`${f}.endIp`, `${r.endIp} is outside ${net.cidr}`);
    if (ipToInt(r.startIp) > ipToInt(r.endIp)) throw invalid(`${f}.endIp`, `${r.endIp} is before startIp ${r.startIp}`);
    for (let j = 0; j < i; j++) {
      const o = ranges[j]!;
      if (ipToInt(r.startIp) <= ipToInt(o.endIp) && ipToInt(o.startIp) <= ipToInt(r.endIp)) {
        throw invalid(f, `${r.startIp}-${r.endIp} overlaps ipRanges.${j} (${o.startIp}-${o.endIp})`);
      }
    }
  });
  return s;
}

/** A VM address must be a host address of the L3 that isn't taken by the network itself: what is wrong with it, if anything. */
function vmIpProblem(net: FlatNetworkSpec, s: Subnet, ip: string): string | undefined {
  const n = ipToInt(ip);
  if (n < s.first || n > s.last) return `${ip} is outside the network ${net.cidr}`;
  if (s.prefix < 31 && (n === s.first || n === s.last)) return `${ip} is the network or broadcast address of ${net.cidr}`;
  if (ip === net.dhcpServerIp) return `${ip} is the DHCP server address`;
  if (ip === net.gateway) return `${ip} is the gateway address`;
  return undefined;
}

function checkVmIp(net: FlatNetworkSpec, s: Subnet, ip: string, field: string): void {
  const p = vmIpProblem(net, s, ip);
  if (p !== undefined) throw invalid(field, p);
}

export function validateDhcpEntries(net: FlatNetworkSpec, entries: DhcpEntrySpec[], field = 'entries'): void {
  const s = parseCidr(net.cidr);
  const macs = new Map<string, number>();
  const ips = new Map<string, number>();
  const names = new Map<string, number>();
  entries.forEach((e, i) => {
    const f = `${field}.${i}`;
    checkVmIp(net, s, e.ip, `${f}.ip`);
    const mac = e.mac.toLowerCase();
    if (macs.has(mac)) throw invalid(`${f}.mac`, `duplicate MAC ${e.mac} (also ${field}.${macs.get(mac)})`);
    macs.set(mac, i);
    if (ips.has(e.ip)) throw invalid(`${f}.ip`, `duplicate IP ${e.ip} (also ${field}.${ips.get(e.ip)})`);
    ips.set(e.ip, i);
    if (e.hostname !== undefined) {
      const h = shortName(e.hostname);
      if (names.has(h)) throw invalid(`${f}.hostname`, `duplicate hostname ${e.hostname} (also ${field}.${names.get(h)})`);
      names.set(h, i);
    }
  });
}

export function validateDnsRecords(records: DnsRecordSpec[], field = 'records'): void {
  const seen = new Map<string, number>();
  records.forEach((r, i) => {
    const n = r.name.toLowerCase();
    if (seen.has(n)) throw invalid(`${field}.${i}.name`, `duplicate name ${r.name} (also ${field}.${seen.get(n)})`);
    seen.set(n, i);
  });
}

export function validateMetadataRecords(net: FlatNetworkSpec, records: MetadataRecordSpec[], field = 'records'): void {
  const s = parseCidr(net.cidr);
  const ips = new Map<string, number>();
  const ids = new Map<string, number>();
  records.forEach((r, i) => {
    const f = `${field}.${i}`;
    checkVmIp(net, s, r.ip, `${f}.ip`);
    if (ips.has(r.ip)) throw invalid(`${f}.ip`, `duplicate IP ${r.ip} (also ${field}.${ips.get(r.ip)})`);
    ips.set(r.ip, i);
    if (ids.has(r.instanceId)) throw invalid(`${f}.instanceId`, `duplicate instanceId ${r.instanceId} (also ${field}.${ids.get(r.instanceId)})`);
    ids.set(r.instanceId, i);
  });
}

/**
 * flat/apply as a whole: what the NICs' derived DHCP entries, DNS names and metadata records
 * must satisfy (as the per-part checks above), named after the field the controller sent
 * ("nics.3.mac"). One pass with maps: linear in the request.
 */
export function validateFlatApply(want: FlatApplySpec): void {
  const net = want.network;
  const s = validateNetwork(net);
  const metadata = net.metadata !== false;
  const records = new Map<string, number>();
  want.dns.records.forEach((r, i) => {
    const n = r.name.toLowerCase();
    if (records.has(n)) throw invalid(`dns.records.${i}.name`, `duplicate name ${r.name} (also dns.records.${records.get(n)})`);
    records.set(n, i);
  });
  const macs = new Map<string, number>();
  const ips = new Map<string, number>();
  const names = new Map<string, number>();
  const vms = new Map<string, number>();
  // field names are built only for an error: a string per NIC and check was most of this pass
  const nics = want.nics;
  for (let i = 0; i < nics.length; i++) {
    const x = nics[i]!;
    const bad = vmIpProblem(net, s, x.ip);
    if (bad !== undefined) throw invalid(`nics.${i}.ip`, bad);
    const mac = x.mac.toLowerCase();
    if (macs.has(mac)) throw invalid(`nics.${i}.mac`, `duplicate MAC ${x.mac} (also nics.${macs.get(mac)})`);
    macs.set(mac, i);
    if (ips.has(x.ip)) throw invalid(`nics.${i}.ip`, `duplicate IP ${x.ip} (also nics.${ips.get(x.ip)})`);
    ips.set(x.ip, i);
    if (x.named !== false) {
      const h = shortName(x.hostname);
      if (names.has(h)) throw invalid(`nics.${i}.hostname`, `duplicate hostname ${x.hostname} (also nics.${names.get(h)})`);
      names.set(h, i);
      if (records.size > 0) {
        const r = records.get(x.hostname.toLowerCase());
        if (r !== undefined) throw invalid(`nics.${i}.hostname`, `the name ${x.hostname} is also dns.records.${r} (records name other hosts' VMs)`);
      }
    }
    if (metadata) {
      if (vms.has(x.vmUuid)) throw invalid(`nics.${i}.vmUuid`, `duplicate vmUuid ${x.vmUuid} (also nics.${vms.get(x.vmUuid)}): one metadata record per VM`);
      vms.set(x.vmUuid, i);
    }
  }
}

/** Host part of a name (what DHCP hands out as option 12); no array per call (validation and rendering call it per NIC). */
export const shortName = (h: string): string => {
  const dot = h.indexOf('.');
  return (dot < 0 ? h : h.slice(0, dot)).toLowerCase();
};
