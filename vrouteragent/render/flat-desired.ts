// flat/apply carries each NIC once; this pure function derives from it what the dnsmasq and
// metadata renderers read: the DHCP entries (when the L3 has DHCP), the DNS records (other
// hosts' names as sent, then this host's named NICs) and the metadata records (when the L3
// serves metadata). The request is validated first (validateFlatApply). wholeFlat makes a
// request whose DNS records came as a delta whole first.
import { invalid, TStackError } from '../../shared/errors.js';
import { DNS_BASE_MISMATCH, DnsSet } from '../../shared/dns-set.js';
import type { DhcpEntrySpec, DnsRecordSpec, FlatApplyRequest, FlatApplySpec, MetadataRecordSpec } from '../validate.js';

export interface FlatParts {
  dhcp: DhcpEntrySpec[];
  dns: { records: DnsRecordSpec[]; forwarders: string[] };
  metadata: MetadataRecordSpec[];
}

export function expandFlat(want: FlatApplySpec): FlatParts {
  const dhcpOn = want.dhcp !== false;
  const metadataOn = want.network.metadata !== false;
  const dhcp: DhcpEntrySpec[] = [];
  const records = want.dns.records.slice();
  const metadata: MetadataRecordSpec[] = [];
  for (const x of want.nics) {
    const named = x.named !== false;
    if (dhcpOn) dhcp.push(named ? { mac: x.mac.toLowerCase(), ip: x.ip, hostname: x.hostname } : { mac: x.mac.toLowerCase(), ip: x.ip });
    if (named) records.push({ name: x.hostname, ip: x.ip });
    if (metadataOn) {
      const r: MetadataRecordSpec = { ip: x.ip, instanceId: x.vmUuid, hostname: x.hostname, mac: x.mac };
      if (x.userData !== undefined) r.userData = x.userData;
      if (x.sshKeys !== undefined) r.sshKeys = x.sshKeys;
      metadata.push(r);
    }
  }
  return { dhcp, dns: { records, forwarders: want.dns.forwarders }, metadata };
}

/**
 * What a saved desired.json holds: the last flat/apply request as received, or the parts
 * (written after a per-part command, and by agents of protocol 1, as sent: MACs in any case).
 */
export type SavedFlat = FlatApplySpec | (FlatParts & { network: FlatApplySpec['network'] });

export function partsOfSaved(saved: SavedFlat): FlatParts {
  if ('nics' in saved) return expandFlat(saved);
  return { dhcp: saved.dhcp.map((e) => ({ ...e, mac: e.mac.toLowerCase() })), dns: saved.dns, metadata: saved.metadata };
}

/**
 * The request with its DNS records whole: as sent, or the set `held` (the records of the last
 * apply) with the delta applied — then also that set, `held` untouched. A delta with nothing
 * held, or whose base or result is not what the digests say, is DNS_BASE_MISMATCH: the
 * controller sends the whole set.
 */
export function wholeFlat(req: FlatApplyRequest, held: DnsSet | undefined): { want: FlatApplySpec; set?: DnsSet } {
  const { records, delta, forwarders } = req.dns;
  if (delta === undefined) {
    if (records === undefined) throw invalid('dns.records', 'the DNS records are required (whole, or as a delta)');
    return { want: req as FlatApplySpec };
  }
  if (records !== undefined) throw invalid('dns.delta', 'the DNS records come whole or as a delta, not both');
  if (!held) throw new TStackError(DNS_BASE_MISMATCH, `no DNS records are held for L3 ${req.network.l3NetworkUuid}: the delta's base ${delta.base} is unknown`, { field: 'dns.delta.base' });
  const set = held.clone();
  set.applyDelta(delta);
  const { delta: _, ...dns } = req.dns;
  return { want: { ...req, dns: { ...dns, records: set.records(), forwarders } }, set };
}
