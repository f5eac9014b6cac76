// Per-VIP traffic accounting of a VPC router (pure: rendering and parsing, no I/O).
//
// Counting rules live in the mangle table of the router's namespace, one chain per direction,
// hooked on the public interface only:
//   VIP-IN   (PREROUTING, before DNAT and de-SNAT): the packet's destination is still the VIP
//   VIP-OUT  (POSTROUTING, before SNAT and de-DNAT): the source the packet WILL leave with is
//            read from conntrack: an original-direction packet leaves as its reply tuple's
//            destination (SNAT), a reply-direction one as its original tuple's destination (DNAT)
// Each rule carries the VIP's uuid as a comment, so `iptables-save -c -t mangle` alone gives the
// counters per VIP. The counters are carried over a re-apply (iptables-restore -c): the rendered
// rules take the counts read just before.
import type { RouterSpecT } from '../../shared/protocol/vpc.js';
import { PUBLIC_IF } from '../names.js';
import { sortByIp } from '../ip.js';

export interface VipCounters {
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
}

const comment = (vipUuid: string): string => `-m comment --comment vip-${vipUuid}`;
const pre = (c: { packets: number; bytes: number } | undefined): string => (c && (c.packets > 0 || c.bytes > 0) ? `[${c.packets}:${c.bytes}] ` : '');

/** The mangle table (iptables-restore input) counting each VIP's traffic; `counters` are carried in. */
export function renderVipAccounting(r: RouterSpecT, counters?: ReadonlyMap<string, VipCounters>): string[] {
  const vips = sortByIp((r.vipUuids ?? []).map((v) => ({ ip: v.ip, uuid: v.vipUuid })));
  const lines = ['*mangle', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]'];
  if (vips.length > 0) {
    lines.push(':VIP-IN - [0:0]', ':VIP-OUT - [0:0]', `-A PREROUTING -i ${PUBLIC_IF} -j VIP-IN`, `-A POSTROUTING -o ${PUBLIC_IF} -j VIP-OUT`);
    for (const v of vips) {
      const c = counters?.get(v.uuid.toLowerCase());
      lines.push(`${pre(c && { packets: c.inPackets, bytes: c.inBytes })}-A VIP-IN -d ${v.ip}/32 ${comment(v.uuid)} -j RETURN`);
      // the whole outbound count goes on the first of the two rules: their sum is what is read back
      lines.push(`${pre(c && { packets: c.outPackets, bytes: c.outBytes })}-A VIP-OUT -m conntrack --ctdir ORIGINAL --ctrepldst ${v.ip}/32 ${comment(v.uuid)} -j RETURN`);
      lines.push(`-A VIP-OUT -m conntrack --ctdir REPLY --ctorigdst ${v.ip}/32 ${comment(v.uuid)} -j RETURN`);
    }
  }
  lines.push('COMMIT');
  return lines;
}

const RULE_RE = /^\[(\d+):(\d+)\] -A (VIP-IN|VIP-OUT) .*--comment "?vip-([0-9A-Fa-f-]{32,36})"?(?: |$)/;

/** The counters per VIP uuid (lower case) in `iptables-save -c -t mangle` output. */
export function parseVipCounters(save: string): Map<string, VipCounters> {
  const out = new Map<string, VipCounters>();
  for (const line of save.split('\n')) {
    const m = RULE_RE.exec(line.trim());
    if (!m) continue;
    const uuid = m[4]!.toLowerCase();
    const c = out.get(uuid) ?? { inPackets: 0, inBytes: 0, outPackets: 0, outBytes: 0 };
    const packets = Number(m[1]);
    const bytes = Number(m[2]);
    if (m[3] === 'VIP-IN') {
      c.inPackets += packets;
      c.inBytes += bytes;
    } else {
      c.outPackets += packets;
      c.outBytes += bytes;
    }
    out.set(uuid, c);
  }
  return out;
}
