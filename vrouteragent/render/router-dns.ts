// The VPC router's DNS forwarder: a DNS-only dnsmasq (no DHCP: the flat provider's namespaces
// hand out addresses, with the router's gateway address as DNS server) bound to the gateway
// interfaces. It answers the names of every VM on the router's networks (addn-hosts) and
// forwards the rest to the router's `dns` list (servers-file).
import type { DnsRecordSpec } from '../validate.js';
import { dnsmasqDns, dnsmasqHead, type DnsmasqPaths } from './dnsmasq.js';
import { sortByIp } from '../ip.js';

export function renderRouterDnsmasqConf(routerUuid: string, interfaces: string[], p: DnsmasqPaths): string {
  return [
    ...dnsmasqHead(`VPC router ${routerUuid} DNS forwarder`, [...interfaces].sort(), p),
    ...dnsmasqDns(p),
    '',
  ].join('\n');
}

/** addn-hosts: one `ip name` line per record, by address then name, names in lower case. */
export function renderRouterHosts(records: DnsRecordSpec[]): string {
  const rows = sortByIp([...records].map((r) => ({ ip: r.ip, name: r.name.toLowerCase() })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  return rows.map((r) => `${r.ip} ${r.name}\n`).join('');
}
