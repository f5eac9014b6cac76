// The VPC router's DNS forwarder: a DNS-only dnsmasq (no DHCP: the flat provider's namespaces
// hand out addresses, with the router's gateway address as DNS server) bound to the gateway
// interfaces. It answers the names of every VM on the router's networks (addn-hosts) and
// forwards the rest to the router's `dns` list (servers-file).
import type { DnsRecordSpec } from '../validate.js';
import type { DnsmasqPaths } from './dnsmasq.js';
import { sortByIp } from '../ip.js';

export function renderRouterDnsmasqConf(routerUuid: string, interfaces: string[], p: DnsmasqPaths): string {
  return [
    `# tstack-vrouteragent: VPC router ${routerUuid} DNS forwarder (generated; do not edit)`,
    ...[...interfaces].sort().map((i) => `interface=${i}`),
    'bind-interfaces',
    'except-interface=lo',
    'user=root',
    'group=root',
    `pid-file=${p.pid}`,
    `log-facility=${p.log}`,
    'no-resolv',
    'no-hosts',
    'no-poll',
    'domain-needed',
    'cache-size=1000',
    `addn-hosts=${p.hosts}`,
    `servers-file=${p.servers}`,
    '',
  ].join('\n');
}

/** addn-hosts: one `ip name` line per record, by address then name, names in lower case. */
export function renderRouterHosts(records: DnsRecordSpec[]): string {
  const rows = sortByIp([...records].map((r) => ({ ip: r.ip, name: r.name.toLowerCase() })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  return rows.map((r) => `${r.ip} ${r.name}\n`).join('');
}
