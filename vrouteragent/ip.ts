// IPv4 arithmetic for validation and rendering (ipaddr.js parses; we compare integers).
import ipaddr from 'ipaddr.js';

/** Plain dotted quad (1-3 digits, each ≤ 255) by hand: validation and rendering call this per address, thousands of times per apply. */
function dottedToInt(ip: string): number | undefined {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else if (c === 46 && digits > 0 && dots < 3) {
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else return undefined;
  }
  return dots === 3 && digits > 0 ? n * 256 + octet : undefined;
}

export const ipToInt = (ip: string): number => {
  const n = dottedToInt(ip);
  if (n !== undefined) return n;
  const b = ipaddr.IPv4.parse(ip).toByteArray(); // other spellings ipaddr.js accepts, or its error
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
};

/** Indexes below this pack with an address into one exact double: address × IDX + index < 2^53. */
const IDX = 2 ** 21;

/**
 * The indexes 0..n-1 in the order of their addresses (`ipAt(i)`), equal addresses in index
 * order (as a stable sort by address): one numeric sort of packed keys, no pair or row object
 * per item (the renderers order every NIC of an L3 on each apply).
 */
export function ipOrder(n: number, ipAt: (i: number) => string): number[] {
  const out = new Array<number>(n);
  if (n >= IDX) {
    const pairs = Array.from({ length: n }, (_, i) => ({ ip: ipAt(i), i }));
    sortByIp(pairs).forEach((p, j) => (out[j] = p.i));
    return out;
  }
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = ipToInt(ipAt(i)) * IDX + i;
  keys.sort();
  for (let i = 0; i < n; i++) out[i] = keys[i]! % IDX;
  return out;
}

/** Sorted by numeric address (keys computed once). */
export function sortByIp<T extends { ip: string }>(xs: readonly T[]): T[] {
  return xs
    .map((x) => [ipToInt(x.ip), x] as const)
    .sort((a, b) => a[0] - b[0])
    .map((p) => p[1]);
}

export const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

export interface Subnet {
  readonly network: string;
  readonly prefix: number;
  readonly netmask: string;
  readonly broadcast: string;
  readonly first: number;
  readonly last: number;
}

// ipaddr.js parses a CIDR in ~30 µs, and an apply parses the same few networks many times
const parsed = new Map<string, Subnet>();

export function parseCidr(cidr: string): Subnet {
  const known = parsed.get(cidr);
  if (known) return known;
  const [addr, prefix] = ipaddr.IPv4.parseCIDR(cidr);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (ipToInt(addr.toString()) & mask) >>> 0;
  const bcast = (net | (~mask >>> 0)) >>> 0;
  const s = Object.freeze({ network: intToIp(net), prefix, netmask: intToIp(mask), broadcast: intToIp(bcast), first: net, last: bcast });
  if (parsed.size >= 1024) parsed.clear();
  parsed.set(cidr, s);
  return s;
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
