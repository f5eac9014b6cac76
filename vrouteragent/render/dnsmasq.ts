// Pure renderers of everything one flat-L3 dnsmasq reads. Only dnsmasq.conf needs a restart
// when it changes; the other files are re-read on SIGHUP (dhcp-hostsfile, dhcp-optsfile,
// addn-hosts, servers-file), which keeps the lease database and other clients untouched.
import type { DhcpEntrySpec, DnsRecordSpec, FlatNetworkSpec } from '../validate.js';
import { shortName } from '../validate.js';
import { ipOrder, ipToInt, parseCidr } from '../ip.js';

export const METADATA_IP = '169.254.169.254';
export const DEFAULT_LEASE_SEC = 86_400;

export interface DnsmasqPaths {
  dir: string;
  conf: string;
  dhcpHosts: string;
  dhcpOpts: string;
  hosts: string;
  servers: string;
  leases: string;
  pid: string;
  log: string;
}

export function dnsmasqPaths(dir: string): DnsmasqPaths {
  return {
    dir,
    conf: `${dir}/dnsmasq.conf`,
    dhcpHosts: `${dir}/dhcp-hosts`,
    dhcpOpts: `${dir}/dhcp-opts`,
    hosts: `${dir}/hosts`,
    servers: `${dir}/servers`,
    leases: `${dir}/leases`,
    pid: `${dir}/dnsmasq.pid`,
    log: `${dir}/dnsmasq.log`,
  };
}

/**
 * The lines every dnsmasq of the agent starts with (flat L3, VPC router DNS, PXE): what it
 * serves, the interfaces it binds in its namespace, root (the namespace is its sandbox), its
 * pid and log files.
 */
export function dnsmasqHead(what: string, interfaces: string[], p: { pid: string; log: string }): string[] {
  return [
    `# tstack-vrouteragent: ${what} (generated; do not edit)`,
    ...interfaces.map((i) => `interface=${i}`),
    'bind-interfaces',
    'except-interface=lo',
    'user=root',
    'group=root',
    `pid-file=${p.pid}`,
    `log-facility=${p.log}`,
  ];
}

/** DNS from the agent's files only: names in addn-hosts, forwarders in servers-file (never the host's). */
export function dnsmasqDns(p: { hosts: string; servers: string }): string[] {
  return ['no-resolv', 'no-hosts', 'no-poll', 'domain-needed', 'cache-size=1000', `addn-hosts=${p.hosts}`, `servers-file=${p.servers}`];
}

/** dnsmasq.conf: static-only DHCP (unknown MACs ignored) and DNS on the namespace's veth. */
export function renderDnsmasqConf(net: FlatNetworkSpec, iface: string, p: DnsmasqPaths): string {
  const s = parseCidr(net.cidr);
  const lines = [
    ...dnsmasqHead(`flat L3 ${net.l3NetworkUuid}`, [iface], p),
    '# DNS: local names from addn-hosts, everything else to the forwarders in servers-file',
    ...dnsmasqDns(p),
  ];
  if (net.dnsDomain) lines.push(`domain=${net.dnsDomain}`, `local=/${net.dnsDomain}/`);
  lines.push(
    '# DHCP: static leases only (the controller owns addresses); unknown MACs get no answer,',
    '# so the hosts that do not own a VM never answer for it',
    `dhcp-range=set:l3,${s.network},static,${s.netmask}`,
    'dhcp-ignore=tag:!known',
    'no-ping',
    `dhcp-hostsfile=${p.dhcpHosts}`,
    `dhcp-optsfile=${p.dhcpOpts}`,
    `dhcp-leasefile=${p.leases}`,
    ...forcedOptions(net).map((o) => `dhcp-option-force=${o}`),
    '',
  );
  return lines.join('\n');
}

/** dhcp-hostsfile: one `mac,ip[,hostname],leasetime` line per entry, sorted by IP. */
export function renderDhcpHosts(net: FlatNetworkSpec, entries: DhcpEntrySpec[]): string {
  const lease = net.leaseTimeSec ?? DEFAULT_LEASE_SEC;
  let out = '';
  for (const i of ipOrder(entries.length, (j) => entries[j]!.ip)) {
    const e = entries[i]!;
    out += e.hostname ? `${e.mac.toLowerCase()},${e.ip},${shortName(e.hostname)},${lease}\n` : `${e.mac.toLowerCase()},${e.ip},${lease}\n`;
  }
  return out;
}

/** dhcp-optsfile (re-read on SIGHUP): router, DNS servers, domain. */
export function renderDhcpOpts(net: FlatNetworkSpec): string {
  const out: string[] = [];
  if (net.gateway) out.push(`option:router,${net.gateway}`);
  const dns = net.dnsServers && net.dnsServers.length > 0 ? net.dnsServers : [net.dhcpServerIp];
  out.push(`option:dns-server,${dns.join(',')}`);
  if (net.dnsDomain) out.push(`option:domain-name,${net.dnsDomain}`);
  return out.map((l) => l + '\n').join('');
}

/**
 * Options sent even to clients that don't ask for them (busybox udhcpc doesn't request 121 or
 * 26 by default): MTU and the option-121 routes to the metadata service (via this host's DHCP
 * server address) and, because a client that gets 121 ignores option 3 (RFC 3442), the default route.
 */
export function forcedOptions(net: FlatNetworkSpec): string[] {
  const out: string[] = [];
  if (net.mtu) out.push(`option:mtu,${net.mtu}`);
  if (net.metadata !== false) {
    const routes = [`${METADATA_IP}/32,${net.dhcpServerIp}`];
    if (net.gateway) routes.push(`0.0.0.0/0,${net.gateway}`);
    out.push(`option:classless-static-route,${routes.join(',')}`);
  }
  return out;
}

/**
 * addn-hosts: the L3's names. Explicit DNS records first; DHCP hostnames of this host fill in
 * names that no record gives. With a domain, each name answers as name.domain and name.
 */
export function renderHosts(net: FlatNetworkSpec, records: DnsRecordSpec[], entries: DhcpEntrySpec[]): string {
  const byName = new Map<string, string>(); // name (lower case) → ip
  for (const r of records) byName.set(r.name.toLowerCase(), r.ip);
  for (const e of entries) {
    if (!e.hostname) continue;
    const n = e.hostname.toLowerCase();
    if (!byName.has(n)) byName.set(n, e.ip);
  }
  // by address, then name: a sort by address (ipOrder, no row object per name), then names in
  // order only where addresses are equal (rare: sorting every name first was ~20-30 % of this)
  const names = [...byName.keys()];
  const ips = [...byName.values()];
  const order = ipOrder(names.length, (j) => ips[j]!);
  for (let a = 0; a < order.length; ) {
    const at = ipToInt(ips[order[a]!]!);
    let b = a + 1;
    while (b < order.length && ipToInt(ips[order[b]!]!) === at) b++;
    if (b - a > 1) {
      const run = order.slice(a, b).sort((x, y) => (names[x]! < names[y]! ? -1 : 1));
      for (let k = 0; k < run.length; k++) order[a + k] = run[k]!;
    }
    a = b;
  }
  const d = net.dnsDomain?.toLowerCase();
  let out = '';
  for (const i of order) {
    const name = names[i]!;
    const ip = ips[i]!;
    if (d && !name.includes('.')) out += `${ip} ${name}.${d} ${name}\n`;
    else if (d && name.endsWith(`.${d}`)) out += `${ip} ${name} ${name.slice(0, -d.length - 1)}\n`;
    else out += `${ip} ${name}\n`;
  }
  return out;
}

/** servers-file: upstream forwarders. */
export function renderServers(forwarders: string[]): string {
  return forwarders.map((f) => `server=${f}\n`).join('');
}
