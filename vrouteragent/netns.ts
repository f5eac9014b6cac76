// The per-L3 service namespace: netns + veth into the L3's bridge, the DHCP server address on
// the namespace side, 169.254.169.254 on lo (never answered in ARP: arp_ignore=1), and a
// default route via the L3 gateway (for DNS forwarders). Every step is idempotent.
import { existsSync } from 'node:fs';
import { TStackError } from '../shared/errors.js';
import { exec, execOk, execOut } from '../shared/exec.js';
import type { FlatNames } from './names.js';
import { parseCidr } from './ip.js';
import { METADATA_IP } from './render/dnsmasq.js';
import type { FlatNetworkSpec } from './validate.js';

export const netnsExists = (ns: string): boolean => existsSync(`/run/netns/${ns}`);
export const linkExists = (name: string): boolean => existsSync(`/sys/class/net/${name}`);

interface IpAddrJson {
  ifname: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

export async function addrsOf(ns: string, dev: string): Promise<string[]> {
  const out = await execOut('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', dev]);
  const j = JSON.parse(out || '[]') as IpAddrJson[];
  return (j[0]?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

export function checkBridge(bridge: string): void {
  if (!existsSync(`/sys/class/net/${bridge}/bridge`)) {
    throw new TStackError('NETWORK_ERROR', `bridge ${bridge} does not exist on this host (create the L2 network's bridge first)`, { field: 'network.bridge', bridge });
  }
}

/** An interface of a service namespace: a veth pair, one end in the namespace, the other on a bridge. */
export interface VethIf {
  nsIf: string;
  hostVeth: string;
  bridge: string;
  mac: string;
  /** a.b.c.d/p, primary first. */
  addrs: string[];
}

/** One veth pair: created when either end is missing, plugged, up, with exactly the planned MAC and addresses; true when anything changed. */
export async function ensureVeth(ns: string, p: VethIf, signal?: AbortSignal): Promise<boolean> {
  const o = { signal };
  let changed = false;
  const nsSide = await execOk('ip', ['-n', ns, 'link', 'show', 'dev', p.nsIf]);
  if (!nsSide || !linkExists(p.hostVeth)) {
    if (linkExists(p.hostVeth)) await exec('ip', ['link', 'del', p.hostVeth], o);
    if (nsSide) await exec('ip', ['-n', ns, 'link', 'del', p.nsIf], o);
    await exec('ip', ['link', 'add', p.hostVeth, 'type', 'veth', 'peer', 'name', p.nsIf, 'netns', ns], o);
    changed = true;
  }
  // only when it differs: setting a MAC flushes the interface's neighbours, permanent ones too
  const link = JSON.parse((await execOut('ip', ['-n', ns, '-j', 'link', 'show', 'dev', p.nsIf])) || '[]') as Array<{ address?: string }>;
  if (link[0]?.address?.toLowerCase() !== p.mac.toLowerCase()) {
    await exec('ip', ['-n', ns, 'link', 'set', p.nsIf, 'address', p.mac], o);
    changed = true;
  }
  await exec('ip', ['link', 'set', p.hostVeth, 'master', p.bridge, 'up'], o);
  await exec('ip', ['-n', ns, 'link', 'set', p.nsIf, 'up'], o);
  const have = await addrsOf(ns, p.nsIf);
  for (const a of have) if (!p.addrs.includes(a)) {
    await exec('ip', ['-n', ns, 'addr', 'del', a, 'dev', p.nsIf], o);
    changed = true;
  }
  for (const a of p.addrs) if (!have.includes(a)) {
    await exec('ip', ['-n', ns, 'addr', 'add', a, 'dev', p.nsIf], o);
    changed = true;
  }
  return changed;
}

/** Make the namespace match the network; returns true when anything had to change. */
export async function ensureNamespace(net: FlatNetworkSpec, n: FlatNames, signal?: AbortSignal): Promise<boolean> {
  const o = { signal };
  let changed = false;
  checkBridge(net.bridge);
  if (!netnsExists(n.namespace)) {
    await exec('ip', ['netns', 'add', n.namespace], o);
    changed = true;
  }
  await exec('ip', ['-n', n.namespace, 'link', 'set', 'lo', 'up'], o);
  // the veth pair: recreate if either end is missing
  const nsSide = await execOk('ip', ['-n', n.namespace, 'link', 'show', 'dev', n.nsVeth]);
  if (!nsSide || !linkExists(n.hostVeth)) {
    if (linkExists(n.hostVeth)) await exec('ip', ['link', 'del', n.hostVeth], o);
    if (nsSide) await exec('ip', ['-n', n.namespace, 'link', 'del', n.nsVeth], o);
    await exec('ip', ['link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', n.nsVeth, 'netns', n.namespace], o);
    changed = true;
  }
  const mtu = net.mtu ? ['mtu', String(net.mtu)] : [];
  await exec('ip', ['link', 'set', n.hostVeth, 'master', net.bridge, ...mtu, 'up'], o);
  await exec('ip', ['-n', n.namespace, 'link', 'set', n.nsVeth, ...mtu, 'up'], o);
  // no ARP answers for addresses that aren't on the asking interface (169.254.169.254 on lo),
  // no IPv6 chatter on the L2
  await exec('sysctl', ['-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ...o, netns: n.namespace });
  // the DHCP server address, and nothing else, on the veth
  const s = parseCidr(net.cidr);
  const want = `${net.dhcpServerIp}/${s.prefix}`;
  const have = await addrsOf(n.namespace, n.nsVeth);
  for (const a of have) if (a !== want) {
    await exec('ip', ['-n', n.namespace, 'addr', 'del', a, 'dev', n.nsVeth], o);
    changed = true;
  }
  if (!have.includes(want)) {
    await exec('ip', ['-n', n.namespace, 'addr', 'add', want, 'dev', n.nsVeth], o);
    changed = true;
  }
  const lo = await addrsOf(n.namespace, 'lo');
  const md = `${METADATA_IP}/32`;
  if (net.metadata !== false && !lo.includes(md)) {
    await exec('ip', ['-n', n.namespace, 'addr', 'add', md, 'dev', 'lo'], o);
    changed = true;
  } else if (net.metadata === false && lo.includes(md)) {
    await exec('ip', ['-n', n.namespace, 'addr', 'del', md, 'dev', 'lo'], o);
    changed = true;
  }
  if (net.gateway) await exec('ip', ['-n', n.namespace, 'route', 'replace', 'default', 'via', net.gateway, 'dev', n.nsVeth], o);
  else await execOk('ip', ['-n', n.namespace, 'route', 'del', 'default']);
  return changed;
}

export async function deleteNamespace(n: FlatNames): Promise<boolean> {
  let deleted = false;
  if (netnsExists(n.namespace)) {
    await exec('ip', ['netns', 'del', n.namespace]);
    deleted = true;
  }
  if (linkExists(n.hostVeth)) {
    await execOk('ip', ['link', 'del', n.hostVeth]);
    deleted = true;
  }
  return deleted;
}
