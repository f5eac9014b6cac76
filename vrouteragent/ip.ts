// IPv4 arithmetic for validation and rendering (ipaddr.js parses; we compare integers).
import ipaddr from 'ipaddr.js';

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export const ipToInt = (ip: string): number => {
  const m = DOTTED.exec(ip);
  if (m && m.slice(1).every((o) => Number(o) <= 255)) return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const b = ipaddr.IPv4.parse(ip).toByteArray(); // other spellings ipaddr.js accepts, or its error
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
};

/** Sorted by numeric address (keys computed once). */
export function sortByIp<T extends { ip: string }>(xs: readonly T[]): T[] {
  return xs
    .map((x) => [ipToInt(x.ip), x] as const)
    .sort((a, b) => a[0] - b[0])
    .map((p) => p[1]);
}

export const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

export interface Subnet {
  network: string;
  prefix: number;
  netmask: string;
  broadcast: string;
  first: number;
  last: number;
}

export function parseCidr(cidr: string): Subnet {
  const [addr, prefix] = ipaddr.IPv4.parseCIDR(cidr);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (ipToInt(addr.toString()) & mask) >>> 0;
  const bcast = (net | (~mask >>> 0)) >>> 0;
  return { network: intToIp(net), prefix, netmask: intToIp(mask), broadcast: intToIp(bcast), first: net, last: bcast };
}

export const inSubnet = (s: Subnet, ip: string): boolean => {
  const n = ipToInt(ip);
  return n >= s.first && n <= s.last;
};

/** Host addresses only: not the network or broadcast address (except /31, /32). */
export const isHostAddress = (s: Subnet, ip: string): boolean => {
  const n = ipToInt(ip);
  if (n < s.first || n > s.last) return false;
  if (s.prefix >= 31) return true;
  return n !== s.first && n !== s.last;
};

export function netmaskToPrefix(mask: string): number {
  const n = ipToInt(mask);
  let p = 0;
  while (p < 32 && n & (0x80000000 >>> p)) p++;
  return p;
}

export const compareIp = (a: string, b: string): number => ipToInt(a) - ipToInt(b);
