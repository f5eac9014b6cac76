// dnsmasq's lease database, filtered to the desired DHCP entries. dnsmasq refuses to hand a
// configured address to a new MAC while an old MAC still holds a lease on it ("not using
// configured address … because it is leased to …"), so before an address can be reused the
// old lease must go. The agent rewrites the file while dnsmasq is stopped (dnsmasq reads it
// only at start; SIGHUP does not re-read it).
//
// Line format (IPv4): "<expiry> <mac> <ip> <hostname|*> <client-id|*>"; other lines (the
// "duid" line of DHCPv6) are kept as they are.
import type { DhcpEntrySpec } from '../validate.js';

export interface LeaseFilter {
  /** The file content to keep. */
  kept: string;
  /** "mac ip" of every dropped lease. */
  released: string[];
}

/** Keep only leases whose MAC is desired with exactly that address. */
export function filterLeases(text: string, desired: DhcpEntrySpec[]): LeaseFilter {
  let want: Map<string, string> | undefined; // built at the first lease (none in a new L3's file)
  const kept: string[] = [];
  const released: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const isV4Lease = f.length >= 3 && /^\d+$/.test(f[0]!) && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(f[1]!) && /^\d+\.\d+\.\d+\.\d+$/.test(f[2]!);
    if (isV4Lease && (want ??= new Map(desired.map((e) => [e.mac.toLowerCase(), e.ip]))).get(f[1]!.toLowerCase()) !== f[2]) {
      released.push(`${f[1]!.toLowerCase()} ${f[2]!}`);
      continue;
    }
    kept.push(line);
  }
  return { kept: kept.map((l) => l + '\n').join(''), released };
}
