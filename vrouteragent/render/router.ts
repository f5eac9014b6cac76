// Pure renderers of a VPC router (no I/O): the interface plan (which veth, which bridge, which
// addresses) and the netfilter rules as iptables-restore input for the router's namespace.
// The namespace belongs to the router alone, so the nat and filter tables are replaced whole.
//
// nat:    PREROUTING  EIP → private address (1:1), port forwards (DNAT), from the public side only
//         POSTROUTING traffic between an IPsec connection's local and peer CIDRs is not NATed
//                     (it must enter the tunnel with its private addresses); EIP holders leave
//                     as their EIP; every other address of an SNAT network leaves as the
//                     router's public IP
// filter: FORWARD from the public side only for replies and DNATed traffic: private addresses
//         are unreachable from outside until an EIP or a port forward points at them.
// mangle: per-VIP traffic counters (render/vip-accounting.ts).
import { createHash } from 'node:crypto';
import type { RouterSpecT } from '../../shared/protocol/vpc.js';
import { PUBLIC_IF, type RouterNames } from '../names.js';
import { parseCidr, sortByIp } from '../ip.js';
import { renderVipAccounting, type VipCounters } from './vip-accounting.js';

export interface PlannedIf {
  /** 'public' or the L3 uuid. */
  key: string;
  nsIf: string;
  hostVeth: string;
  bridge: string;
  /** a.b.c.d/p, primary first. */
  addrs: string[];
  mac: string;
}

/**
 * A stable, locally administered MAC per router interface: a router re-created (after a deleted
 * namespace, or on another host) keeps its MACs, so neighbours' ARP caches stay valid.
 */
export function stableMac(routerUuid: string, iface: string): string {
  const h = createHash('sha256').update(`${routerUuid.toLowerCase()}/${iface.toLowerCase()}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function planInterfaces(r: RouterSpecT, n: RouterNames): PlannedIf[] {
  const pub: PlannedIf = {
    key: 'public',
    nsIf: PUBLIC_IF,
    hostVeth: n.hostVeth('public'),
    bridge: r.public.bridge,
    addrs: [`${r.public.ip}/${r.public.prefix}`, ...sortByIp(r.vips.map((ip) => ({ ip }))).map((v) => `${v.ip}/32`)],
    mac: r.public.mac?.toLowerCase() ?? stableMac(r.routerUuid, 'public'),
  };
  const nets = r.networks.map((x): PlannedIf => {
    return { key: x.l3NetworkUuid, nsIf: n.nsIf(x.l3NetworkUuid), hostVeth: n.hostVeth(x.l3NetworkUuid), bridge: x.bridge, addrs: [`${x.ip}/${parseCidr(x.cidr).prefix}`], mac: x.mac?.toLowerCase() ?? stableMac(r.routerUuid, x.l3NetworkUuid) };
  });
  nets.sort((a, b) => (a.nsIf < b.nsIf ? -1 : a.nsIf > b.nsIf ? 1 : 0));
  return [pub, ...nets];
}

const proto = (p: 'TCP' | 'UDP'): string => (p === 'TCP' ? 'tcp' : 'udp');

/** DNAT rules of the port forwards: one rule per range when the numbers match, else one per port. */
function portForwardRules(r: RouterSpecT): string[] {
  const out: string[] = [];
  const pfs = [...r.portForwards].sort((a, b) => (a.vip === b.vip ? (a.protocol === b.protocol ? a.vipPortStart - b.vipPortStart : a.protocol < b.protocol ? -1 : 1) : a.vip < b.vip ? -1 : 1));
  for (const p of pfs) {
    const pr = proto(p.protocol);
    const src = p.allowedCidr ? ` -s ${p.allowedCidr}` : '';
    const head = `-A PREROUTING -d ${p.vip}/32 -i ${PUBLIC_IF}${src} -p ${pr} -m ${pr}`;
    if (p.vipPortStart === p.privatePortStart) {
      const ports = p.vipPortStart === p.vipPortEnd ? `${p.vipPortStart}` : `${p.vipPortStart}:${p.vipPortEnd}`;
      out.push(`${head} --dport ${ports} -j DNAT --to-destination ${p.privateIp}`);
      continue;
    }
    for (let i = 0; i <= p.vipPortEnd - p.vipPortStart; i++) out.push(`${head} --dport ${p.vipPortStart + i} -j DNAT --to-destination ${p.privateIp}:${p.privatePortStart + i}`);
  }
  return out;
}

export interface RenderedNetfilter {
  text: string;
  natRules: number;
}

/** Local → peer CIDR pairs of the router's IPsec connections (sorted, no duplicates). */
function ipsecPairs(r: RouterSpecT): Array<{ local: string; peer: string }> {
  const seen = new Set<string>();
  const out: Array<{ local: string; peer: string }> = [];
  for (const c of r.ipsec ?? []) {
    for (const local of c.localCidrs) {
      for (const peer of c.peerCidrs) {
        if (seen.has(`${local} ${peer}`)) continue;
        seen.add(`${local} ${peer}`);
        out.push({ local, peer });
      }
    }
  }
  return out.sort((a, b) => (a.local === b.local ? (a.peer < b.peer ? -1 : 1) : a.local < b.local ? -1 : 1));
}

export interface NetfilterOptions {
  /**
   * IPsec by kernel XFRM: decrypted traffic from the peer arrives on the public interface, so it
   * is let through (only if it came through an IPsec policy). With kernel-libipsec it arrives on
   * ipsec0, which the public-side rules do not touch.
   */
  kernelEsp?: boolean;
}

/** `counters`: the VIP counters read before this apply, carried into the new rules (iptables-restore -c). */
export function renderRouterNetfilter(r: RouterSpecT, counters?: ReadonlyMap<string, VipCounters>, o: NetfilterOptions = {}): RenderedNetfilter {
  const eips = sortByIp(r.eips.map((e) => ({ ip: e.privateIp, eip: e.eip })));
  const pre = [...eips.map((e) => `-A PREROUTING -d ${e.eip}/32 -i ${PUBLIC_IF} -j DNAT --to-destination ${e.ip}`), ...portForwardRules(r)];
  const tunnels = ipsecPairs(r);
  const post = [
    ...tunnels.map((t) => `-A POSTROUTING -s ${t.local} -d ${t.peer} -j ACCEPT`),
    ...eips.map((e) => `-A POSTROUTING -s ${e.ip}/32 -o ${PUBLIC_IF} -j SNAT --to-source ${e.eip}`),
    ...r.networks
      .filter((n) => n.snat !== false)
      .map((n) => n.cidr)
      .sort()
      .map((c) => `-A POSTROUTING -s ${c} -o ${PUBLIC_IF} -j SNAT --to-source ${r.public.ip}`),
  ];
  const lines = [
    `# tstack VPC router ${r.routerUuid}: generated, replaced whole on every apply`,
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ...pre,
    ...post,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    `-A FORWARD -i ${PUBLIC_IF} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    `-A FORWARD -i ${PUBLIC_IF} -m conntrack --ctstate DNAT -j ACCEPT`,
    ...(o.kernelEsp ? tunnels.map((t) => `-A FORWARD -i ${PUBLIC_IF} -s ${t.peer} -d ${t.local} -m policy --dir in --pol ipsec -j ACCEPT`) : []),
    `-A FORWARD -i ${PUBLIC_IF} -j DROP`,
    'COMMIT',
    ...renderVipAccounting(r, counters),
    '',
  ];
  return { text: lines.join('\n'), natRules: pre.length + post.length };
}
