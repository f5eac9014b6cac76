// Semantic validation of a VPC router's desired state (the schema already checked shapes and
// address syntax). Every address that reaches `ip` or iptables-restore is checked here against
// the router's own subnets before anything is applied; the first problem becomes
// INVALID_ARGUMENT naming the field ("router.eips.2.privateIp", …).
import { invalid } from '../shared/errors.js';
import type { RouterSpecT } from '../shared/protocol/vpc.js';
import { inSubnet, intToIp, ipToInt, isHostAddress, parseCidr, type Subnet } from './ip.js';
import { validateDnsRecords } from './validate.js';
import { uuidHex } from './names.js';

/** Port ranges whose numbers differ are rendered one rule per port: at most this many ports. */
export const MAX_SHIFTED_PORTS = 1024;

const overlaps = (a: Subnet, b: Subnet): boolean => a.first <= b.last && b.first <= a.last;

export function validateRouter(r: RouterSpecT, field = 'router'): void {
  uuidHex(r.routerUuid);
  const pub = parseCidr(`${r.public.ip}/${r.public.prefix}`);
  if (!isHostAddress(pub, r.public.ip)) throw invalid(`${field}.public.ip`, `${r.public.ip} is not a host address of ${pub.network}/${pub.prefix}`);
  if (r.public.gateway !== undefined) {
    if (!isHostAddress(pub, r.public.gateway)) throw invalid(`${field}.public.gateway`, `${r.public.gateway} is not a host address of ${pub.network}/${pub.prefix}`);
    if (r.public.gateway === r.public.ip) throw invalid(`${field}.public.gateway`, 'the gateway cannot be the router\'s own public address');
  }
  const nets: Array<{ s: Subnet; ip: string }> = [];
  const l3s = new Set<string>();
  r.networks.forEach((n, i) => {
    const f = `${field}.networks.${i}`;
    const s = parseCidr(n.cidr);
    if (s.network !== n.cidr.split('/')[0]) throw invalid(`${f}.cidr`, `${n.cidr} has host bits set (the network is ${s.network}/${s.prefix})`);
    if (s.prefix > 30) throw invalid(`${f}.cidr`, `${n.cidr} is too small (at most /30)`);
    if (!isHostAddress(s, n.ip)) throw invalid(`${f}.ip`, `${n.ip} is not a host address of ${n.cidr}`);
    const k = uuidHex(n.l3NetworkUuid);
    if (l3s.has(k)) throw invalid(`${f}.l3NetworkUuid`, `network ${n.l3NetworkUuid} is given twice`);
    l3s.add(k);
    if (overlaps(s, pub)) throw invalid(`${f}.cidr`, `${n.cidr} overlaps the public network ${pub.network}/${pub.prefix}`);
    nets.forEach((o, j) => {
      if (overlaps(s, o.s)) throw invalid(`${f}.cidr`, `${n.cidr} overlaps networks.${j} (${o.s.network}/${o.s.prefix}): CIDRs under one router must not overlap`);
    });
    nets.push({ s, ip: n.ip });
  });
  const privateField = (ip: string, f: string): void => {
    const n = nets.find((x) => inSubnet(x.s, ip));
    if (!n) throw invalid(f, `${ip} is in none of the router's networks`);
    if (!isHostAddress(n.s, ip)) throw invalid(f, `${ip} is the network or broadcast address of ${n.s.network}/${n.s.prefix}`);
    if (ip === n.ip) throw invalid(f, `${ip} is the router's own gateway address`);
  };
  const vips = new Set<string>();
  r.vips.forEach((v, i) => {
    const f = `${field}.vips.${i}`;
    if (!isHostAddress(pub, v)) throw invalid(f, `${v} is not a host address of the public network ${pub.network}/${pub.prefix}`);
    if (v === r.public.ip) throw invalid(f, `${v} is the router's system VIP (its public address)`);
    if (v === r.public.gateway) throw invalid(f, `${v} is the public gateway`);
    if (vips.has(v)) throw invalid(f, `duplicate VIP ${v}`);
    vips.add(v);
  });
  const eipOf = new Map<string, number>();
  const eipPrivate = new Map<string, number>();
  r.eips.forEach((e, i) => {
    const f = `${field}.eips.${i}`;
    if (!vips.has(e.eip)) throw invalid(`${f}.eip`, `${e.eip} is not one of the router's VIPs (the system VIP serves no EIP)`);
    if (eipOf.has(e.eip)) throw invalid(`${f}.eip`, `${e.eip} already serves eips.${eipOf.get(e.eip)}: a VIP serves one EIP`);
    eipOf.set(e.eip, i);
    privateField(e.privateIp, `${f}.privateIp`);
    if (eipPrivate.has(e.privateIp)) throw invalid(`${f}.privateIp`, `${e.privateIp} already has eips.${eipPrivate.get(e.privateIp)}`);
    eipPrivate.set(e.privateIp, i);
  });
  r.portForwards.forEach((p, i) => {
    const f = `${field}.portForwards.${i}`;
    if (p.vip !== r.public.ip && !vips.has(p.vip)) throw invalid(`${f}.vip`, `${p.vip} is not an address of the router`);
    if (eipOf.has(p.vip)) throw invalid(`${f}.vip`, `${p.vip} serves an EIP (eips.${eipOf.get(p.vip)}); an EIP's VIP serves nothing else`);
    if (p.vipPortStart > p.vipPortEnd) throw invalid(`${f}.vipPortEnd`, `${p.vipPortEnd} is below vipPortStart ${p.vipPortStart}`);
    if (p.privatePortStart > p.privatePortEnd) throw invalid(`${f}.privatePortEnd`, `${p.privatePortEnd} is below privatePortStart ${p.privatePortStart}`);
    const len = p.vipPortEnd - p.vipPortStart;
    if (p.privatePortEnd - p.privatePortStart !== len) throw invalid(`${f}.privatePortEnd`, 'the VIP and private port ranges must have the same length');
    if (p.vipPortStart !== p.privatePortStart && len + 1 > MAX_SHIFTED_PORTS) throw invalid(`${f}.vipPortEnd`, `a range mapped to other port numbers has at most ${MAX_SHIFTED_PORTS} ports`);
    privateField(p.privateIp, `${f}.privateIp`);
    if (p.allowedCidr !== undefined) {
      const c = parseCidr(p.allowedCidr);
      if (c.network !== p.allowedCidr.split('/')[0]) throw invalid(`${f}.allowedCidr`, `${p.allowedCidr} has host bits set (the network is ${c.network}/${c.prefix})`);
    }
    for (let j = 0; j < i; j++) {
      const o = r.portForwards[j]!;
      if (o.vip === p.vip && o.protocol === p.protocol && p.vipPortStart <= o.vipPortEnd && o.vipPortStart <= p.vipPortEnd) {
        throw invalid(`${f}.vipPortStart`, `${p.protocol} ${p.vipPortStart}-${p.vipPortEnd} on ${p.vip} overlaps portForwards.${j} (${o.vipPortStart}-${o.vipPortEnd})`);
      }
    }
  });
  const counted = new Set<string>();
  (r.vipUuids ?? []).forEach((v, i) => {
    const f = `${field}.vipUuids.${i}`;
    if (!/^[0-9a-fA-F-]{32,36}$/.test(v.vipUuid)) throw invalid(`${f}.vipUuid`, 'not a uuid');
    if (v.ip !== r.public.ip && !vips.has(v.ip)) throw invalid(`${f}.ip`, `${v.ip} is not an address of the router`);
    if (counted.has(v.ip)) throw invalid(`${f}.ip`, `${v.ip} is given twice`);
    counted.add(v.ip);
  });
  if (r.dns) validateDnsRecords(r.dns.records, `${field}.dns.records`);
  // route table: network-aligned destinations outside the router's own subnets; a static route's
  // next hop is a neighbour on one of them (never the router itself)
  const own = [pub, ...nets.map((n) => n.s)];
  const dests = new Set<string>();
  (r.routes ?? []).forEach((rt, i) => {
    const f = `${field}.routes.${i}`;
    const d = parseCidr(rt.destination);
    if (d.network !== rt.destination.split('/')[0]) throw invalid(`${f}.destination`, `${rt.destination} has host bits set (the network is ${d.network}/${d.prefix})`);
    if (d.prefix === 0) throw invalid(`${f}.destination`, 'the default route is the public gateway\'s');
    const mine = own.find((s) => overlaps(s, d));
    if (mine) throw invalid(`${f}.destination`, `${rt.destination} overlaps the router's own network ${mine.network}/${mine.prefix}`);
    const key = `${d.network}/${d.prefix}`;
    if (dests.has(key)) throw invalid(`${f}.destination`, `${key} is given twice`);
    dests.add(key);
    if (rt.type === 'Blackhole') {
      if (rt.nextHop !== undefined) throw invalid(`${f}.nextHop`, 'a blackhole route has no next hop');
      return;
    }
    if (rt.nextHop === undefined) throw invalid(`${f}.nextHop`, 'a static route needs a next hop');
    const on = own.find((s) => inSubnet(s, rt.nextHop!));
    if (!on || !isHostAddress(on, rt.nextHop)) throw invalid(`${f}.nextHop`, `${rt.nextHop} is not a host address on any of the router's networks`);
    if (rt.nextHop === r.public.ip || nets.some((n) => n.ip === rt.nextHop)) throw invalid(`${f}.nextHop`, `${rt.nextHop} is the router's own address`);
  });
}

/** The public subnet's prefix length as a dotted mask (for messages and tests). */
export const publicNetmask = (r: RouterSpecT): string => intToIp(r.public.prefix === 0 ? 0 : (0xffffffff << (32 - r.public.prefix)) >>> 0);
export { ipToInt };
