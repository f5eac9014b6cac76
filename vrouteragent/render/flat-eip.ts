// Pure renderers of a host's flat-network EIPs (no I/O): the EIP namespace's interfaces,
// routes and netfilter, and the host bridge's ebtables steering.
//
// namespace   p<pub>: the VIPs as /32s; g<priv>: no address, a /32 route + permanent neighbour
//             per EIP VM. The EIP VMs' traffic leaves through its public network's table
//             (ip rule from <private ip>); nat: VIP → private address (DNAT) on the way in, the
//             private address leaves as its VIP (SNAT); filter: only EIP VMs' traffic outbound,
//             only replies and DNATed traffic inbound.
// host bridge nat <P>-EIP: an EIP VM's ARP request for its gateway is answered with the
//             namespace's MAC, and its off-subnet IPv4 frames are re-addressed to that MAC (so
//             a real gateway on the L2 answering first changes nothing); on-subnet, link-local
//             (metadata), multicast and broadcast traffic is left alone.
//             filter <P>-EIPF: the namespace's private ports talk to the EIP VMs only.
import { createHash } from 'node:crypto';
import type { Static } from '../../shared/protocol/schema.js';
import type { FlatEipApply } from '../../shared/protocol/vrouter.js';
import type { FlatEipNames } from '../names.js';
import { parseCidr, sortByIp } from '../ip.js';

export type FlatEipSpec = Static<typeof FlatEipApply.request>;

export interface EipIf {
  side: 'p' | 'g';
  l3NetworkUuid: string;
  nsIf: string;
  hostVeth: string;
  bridge: string;
  mac: string;
  /** a.b.c.d/32 (the VIPs of a public interface). */
  addrs: string[];
}

export interface EipRoute {
  /** 'main' or a table number. */
  table: string;
  dst: string;
  dev: string;
  via?: string;
}

export interface FlatEipPlan {
  ifs: EipIf[];
  routes: EipRoute[];
  /** ip rules: from <private ip> lookup <table>, priority from 1000 on. */
  rules: Array<{ from: string; table: string; priority: number }>;
  neighbours: Array<{ ip: string; mac: string; dev: string }>;
  iptables: string;
  ebtables: string;
}

/** Locally administered and unique per host: the private L2 may span hosts. */
export function eipMac(hostUuid: string, side: 'p' | 'g', l3NetworkUuid: string): string {
  const h = createHash('sha256').update(`eip/${hostUuid.toLowerCase()}/${side}/${l3NetworkUuid.toLowerCase()}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

const byUuid = <T extends { l3NetworkUuid: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.l3NetworkUuid < b.l3NetworkUuid ? -1 : a.l3NetworkUuid > b.l3NetworkUuid ? 1 : 0));

export function planFlatEips(s: FlatEipSpec, n: FlatEipNames): FlatEipPlan {
  const eips = sortByIp(s.eips.map((e) => ({ ...e, ip: e.privateIp })));
  const pubs = byUuid(s.publicNetworks).filter((p) => eips.some((e) => e.publicL3NetworkUuid === p.l3NetworkUuid));
  const privs = byUuid(s.privateNetworks).filter((p) => eips.some((e) => e.privateL3NetworkUuid === p.l3NetworkUuid));
  const mk = (side: 'p' | 'g', l3: string, bridge: string, addrs: string[]): EipIf => ({ side, l3NetworkUuid: l3, nsIf: n.nsIf(side, l3), hostVeth: n.hostVeth(side, l3), bridge, mac: eipMac(s.hostUuid, side, l3), addrs });
  const ifs = [
    ...pubs.map((p) => mk('p', p.l3NetworkUuid, p.bridge, sortByIp(eips.filter((e) => e.publicL3NetworkUuid === p.l3NetworkUuid).map((e) => ({ ip: e.eip }))).map((e) => `${e.ip}/32`))),
    ...privs.map((p) => mk('g', p.l3NetworkUuid, p.bridge, [])),
  ];
  const ifOf = (side: 'p' | 'g', l3: string): EipIf => ifs.find((i) => i.side === side && i.l3NetworkUuid === l3)!;
  const tableOf = new Map(pubs.map((p, i) => [p.l3NetworkUuid, String(100 + i)]));
  const routes: EipRoute[] = [];
  for (const p of pubs) {
    const c = parseCidr(p.cidr);
    const dev = ifOf('p', p.l3NetworkUuid).nsIf;
    routes.push({ table: tableOf.get(p.l3NetworkUuid)!, dst: `${c.network}/${c.prefix}`, dev });
    if (p.gateway) routes.push({ table: tableOf.get(p.l3NetworkUuid)!, dst: 'default', dev, via: p.gateway });
  }
  for (const e of eips) routes.push({ table: 'main', dst: `${e.privateIp}/32`, dev: ifOf('g', e.privateL3NetworkUuid).nsIf });
  const rules = eips.map((e, i) => ({ from: `${e.privateIp}/32`, table: tableOf.get(e.publicL3NetworkUuid)!, priority: 1000 + i }));
  const neighbours = eips.map((e) => ({ ip: e.privateIp, mac: e.mac.toLowerCase(), dev: ifOf('g', e.privateL3NetworkUuid).nsIf }));

  const nat = eips.map((e) => `-A PREROUTING -d ${e.eip}/32 -i ${ifOf('p', e.publicL3NetworkUuid).nsIf} -j DNAT --to-destination ${e.privateIp}`);
  const snat = eips.map((e) => `-A POSTROUTING -s ${e.privateIp}/32 -o ${ifOf('p', e.publicL3NetworkUuid).nsIf} -j SNAT --to-source ${e.eip}`);
  const out = eips.map((e) => `-A FORWARD -s ${e.privateIp}/32 -i ${ifOf('g', e.privateL3NetworkUuid).nsIf} -o ${ifOf('p', e.publicL3NetworkUuid).nsIf} -j ACCEPT`);
  const iptables = [
    `# tstack flat EIPs of host ${s.hostUuid}: generated, replaced whole on every apply`,
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ...nat,
    ...snat,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT',
    ...out,
    'COMMIT',
    '',
  ].join('\n');

  const steer: string[] = [];
  const ports: string[] = [];
  for (const p of privs) {
    const g = ifOf('g', p.l3NetworkUuid);
    const c = parseCidr(p.cidr);
    const mine = eips.filter((e) => e.privateL3NetworkUuid === p.l3NetworkUuid);
    for (const e of mine) {
      const m = e.mac.toLowerCase();
      const head = `-A ${n.natChain} -p IPv4 -s ${m} --ip-src ${e.privateIp}`;
      steer.push(
        `-A ${n.natChain} -p ARP -s ${m} --arp-op Request --arp-ip-dst ${p.gateway} -j arpreply --arpreply-mac ${g.mac}`,
        `${head} --ip-dst ${c.network}/${c.prefix} -j RETURN`,
        `${head} --ip-dst 169.254.0.0/16 -j RETURN`,
        `${head} --ip-dst 224.0.0.0/4 -j RETURN`,
        `${head} --ip-dst 255.255.255.255 -j RETURN`,
        `${head} -j dnat --to-destination ${g.mac} --dnat-target ACCEPT`,
      );
    }
    for (const e of mine) ports.push(`-A ${n.filterChain} -o ${g.hostVeth} -s ${e.mac.toLowerCase()} -j RETURN`);
    ports.push(`-A ${n.filterChain} -o ${g.hostVeth} -j DROP`);
    for (const e of mine) ports.push(`-A ${n.filterChain} -i ${g.hostVeth} -d ${e.mac.toLowerCase()} -j RETURN`);
    ports.push(`-A ${n.filterChain} -i ${g.hostVeth} -j DROP`);
  }
  // ebtables-restore --noflush: declaring a chain flushes it; the whole file is one transaction
  const ebtables = ['*nat', `:${n.natChain} RETURN`, ...steer, '*filter', `:${n.filterChain} RETURN`, ...ports, ''].join('\n');
  return { ifs, routes, rules, neighbours, iptables, ebtables };
}
