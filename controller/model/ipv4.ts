// IPv4 arithmetic for ranges, netmasks and CIDRs (pure; addresses as unsigned 32-bit ints).
import { invalid } from '../../shared/errors.js';

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function isIpv4(s: string): boolean {
  const p = s.split('.');
  return p.length === 4 && p.every((o) => OCTET.test(o));
}

export function ipToInt(ip: string, field = 'ip'): number {
  if (!isIpv4(ip)) throw invalid(field, `'${ip}' is not an IPv4 address`);
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Prefix length of a dotted netmask; throws if the mask is not contiguous. */
export function netmaskToPrefix(mask: string, field = 'netmask'): number {
  const n = ipToInt(mask, field);
  let prefix = 0;
  while (prefix < 32 && (n & (0x80000000 >>> prefix)) !== 0) prefix++;
  const rebuilt = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if (rebuilt !== n) throw invalid(field, `'${mask}' is not a contiguous netmask`);
  return prefix;
}

export function prefixToNetmask(prefix: number): string {
  return intToIp(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
}

export interface Subnet {
  network: number;
  broadcast: number;
  prefix: number;
  netmask: string;
}

export function subnetOf(ip: string, netmask: string, ipField = 'ip', maskField = 'netmask'): Subnet {
  const prefix = netmaskToPrefix(netmask, maskField);
  const maskInt = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(ip, ipField) & maskInt) >>> 0;
  const broadcast = (network | (~maskInt >>> 0)) >>> 0;
  return { network, broadcast, prefix, netmask: prefixToNetmask(prefix) };
}

export function parseCidr(cidr: string, field = 'networkCidr'): Subnet & { address: number } {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || Number(m[2]) > 32) throw invalid(field, `'${cidr}' is not an IPv4 CIDR like 192.168.10.0/24`);
  const s = subnetOf(m[1]!, prefixToNetmask(Number(m[2])), field, field);
  return { ...s, address: ipToInt(m[1]!, field) };
}

export function inSubnet(ip: number, s: Subnet): boolean {
  return ip >= s.network && ip <= s.broadcast;
}
