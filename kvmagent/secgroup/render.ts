// Pure rendering of a host's security-group firewall (no I/O): iptables-restore text for the
// filter table (applied with --noflush, so only tstack's chains change) and ipset-restore text
// for remote-group member sets. Golden files pin the output (test/unit/kvmagent/golden/secgroup-*).
//
// Layout (FORWARD sees bridged frames because br_netfilter is on):
//   FORWARD ─► tstack-sg ─┬─ physdev-in  <tap> ─► tsg-o-<tap>  (from the VM: egress)  RETURN | DROP
//                         └─ physdev-out <tap> ─► tsg-i-<tap>  (to the VM: ingress)   RETURN | DROP
// All egress jumps come before all ingress jumps: a frame between two guarded NICs of one host
// passes the sender's egress chain and then the receiver's ingress chain. Allowed traffic
// RETURNs (tstack never ACCEPTs, so the host's own FORWARD rules keep their say).
// Remote groups are ipsets (tsg4-<uuid prefix>): a member joining changes one set, not rules.
import { createHash } from 'node:crypto';
import type { FirewallRuleT, GuardedNicT, HostFirewallT } from '../../shared/protocol/secgroup.js';
import { TStackError } from '../../shared/errors.js';

export const ROOT_CHAIN = 'tstack-sg';
export const CHAIN_PREFIX = 'tsg-';
export const SET_PREFIX = 'tsg4-';
const TMP_SET_PREFIX = 'tsgt-';
export const METADATA_IP = '169.254.169.254';

const TAP_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
const IP_RE = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** What exists on the host now (from iptables-save / ipset list): what the apply must remove. */
export interface CurrentFirewall {
  /** FORWARD jumps to tstack-sg. */
  hooked: boolean;
  /** tstack-sg and every tsg-* chain in the filter table. */
  chains: string[];
  /** Every tsg4-* / tsgt-* ipset. */
  sets: string[];
}

export interface RenderedFirewall {
  /** For `iptables-restore --noflush`. */
  iptables: string;
  /** For `ipset -exist restore`; run BEFORE iptables (rules reference the sets). */
  ipset: string;
  /** Sets to destroy AFTER iptables no longer references them. */
  staleSets: string[];
  staleChains: string[];
  /** Number of -A rules (tstack-sg's dispatch and the NIC chains). */
  rules: number;
}

function bad(field: string, reason: string): TStackError {
  return new TStackError('INVALID_ARGUMENT', `${field}: ${reason}`, { field, reason });
}

/** The 128 bits of a uuid in 26 base32 characters (lossless: set names fit 31 chars). */
function uuid32(uuid: string): string {
  if (!UUID_RE.test(uuid)) throw bad('groupUuid', `not a uuid: ${uuid}`);
  const A = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = '';
  for (const h of uuid.replace(/-/g, '').toLowerCase()) bits += parseInt(h, 16).toString(2).padStart(4, '0');
  bits = bits.padEnd(130, '0');
  let out = '';
  for (let i = 0; i < 130; i += 5) out += A[parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

/** The ipset holding the IPv4 addresses of a group's member NICs (31 chars, ipset's limit). */
export function setName(groupUuid: string): string {
  return SET_PREFIX + uuid32(groupUuid);
}

const tmpSetName = (groupUuid: string): string => TMP_SET_PREFIX + uuid32(groupUuid);

/** Chain names from a tap name; an over-long tap name is hashed (chain names are ≤ 28 chars). */
export function nicChains(tap: string): { ingress: string; egress: string } {
  if (!TAP_RE.test(tap)) throw bad('tap', `not an interface name: ${tap}`);
  const key = tap.length <= 15 ? tap : createHash('sha1').update(tap).digest('hex').slice(0, 15);
  return { ingress: `${CHAIN_PREFIX}i-${key}`, egress: `${CHAIN_PREFIX}o-${key}` };
}

/** Normalise a CIDR (host bits cleared), validated. */
export function normCidr(cidr: string): string {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || !IP_RE.test(m[1]!) || Number(m[2]) > 32) throw bad('cidr', `not an IPv4 CIDR: ${cidr}`);
  const prefix = Number(m[2]);
  const n = m[1]!.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (n & mask) >>> 0;
  return `${[24, 16, 8, 0].map((s) => (net >>> s) & 255).join('.')}/${prefix}`;
}

/** The match part of one allow rule; `dir` says whether the peer is the source or destination. */
export function ruleMatch(r: FirewallRuleT, dir: 'ingress' | 'egress', knownSets: ReadonlySet<string>): string {
  const parts: string[] = [];
  const peer = dir === 'ingress' ? '-s' : '-d';
  if (r.cidr !== undefined) parts.push(peer, normCidr(r.cidr));
  switch (r.protocol) {
    case 'ALL':
      if (r.startPort !== undefined || r.endPort !== undefined) throw bad('startPort', 'protocol ALL takes no ports');
      break;
    case 'ICMP':
      if (r.startPort !== undefined || r.endPort !== undefined) throw bad('startPort', 'protocol ICMP takes no ports (all ICMP)');
      parts.push('-p', 'icmp');
      break;
    case 'TCP':
    case 'UDP': {
      const p = r.protocol.toLowerCase();
      parts.push('-p', p);
      if ((r.startPort === undefined) !== (r.endPort === undefined)) throw bad('endPort', 'give both startPort and endPort, or neither');
      if (r.startPort !== undefined && r.endPort !== undefined) {
        if (r.startPort > r.endPort) throw bad('endPort', 'endPort is below startPort');
        parts.push('-m', p, '--dport', r.startPort === r.endPort ? String(r.startPort) : `${r.startPort}:${r.endPort}`);
      }
      break;
    }
  }
  if (r.remoteGroupUuid !== undefined) {
    const s = setName(r.remoteGroupUuid);
    if (!knownSets.has(s)) throw bad('remoteGroupUuid', `no member set for group ${r.remoteGroupUuid}`);
    parts.push('-m', 'set', '--match-set', s, dir === 'ingress' ? 'src' : 'dst');
  }
  return parts.join(' ');
}

function nicRules(nic: GuardedNicT, knownSets: ReadonlySet<string>): { ingress: string[]; egress: string[] } {
  if (!IP_RE.test(nic.ip)) throw bad('ip', `not an IPv4 address: ${nic.ip}`);
  if (!MAC_RE.test(nic.mac)) throw bad('mac', `not a MAC address: ${nic.mac}`);
  const { ingress: ic, egress: oc } = nicChains(nic.tap);
  const uniq = (xs: string[]): string[] => [...new Set(xs)];
  const ingress = [
    `-A ${ic} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`,
    `-A ${ic} -m conntrack --ctstate INVALID -j DROP`,
    // DHCP offers/acks (often broadcast: conntrack does not pair them with the request)
    `-A ${ic} -p udp -m udp --sport 67 --dport 68 -j RETURN`,
    ...uniq(nic.ingress.map((r) => `-A ${ic} ${ruleMatch(r, 'ingress', knownSets)} -j RETURN`.replace(/ {2,}/g, ' '))),
    `-A ${ic} -j DROP`,
  ];
  const egress = [
    // DHCP first: a DISCOVER comes from 0.0.0.0, before the NIC has its address
    `-A ${oc} -p udp -m udp --sport 68 --dport 67 -j RETURN`,
  ];
  if (nic.antiSpoofing) {
    egress.push(`-A ${oc} -m mac ! --mac-source ${nic.mac.toLowerCase()} -j DROP`, `-A ${oc} ! -s ${nic.ip}/32 -j DROP`);
  }
  egress.push(`-A ${oc} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`, `-A ${oc} -m conntrack --ctstate INVALID -j DROP`);
  if (nic.egressWhitelist) {
    for (const s of uniq(nic.serviceIps)) {
      if (!IP_RE.test(s)) throw bad('serviceIps', `not an IPv4 address: ${s}`);
      egress.push(`-A ${oc} -d ${s}/32 -p udp -m udp --dport 53 -j RETURN`, `-A ${oc} -d ${s}/32 -p tcp -m tcp --dport 53 -j RETURN`);
    }
    egress.push(`-A ${oc} -d ${METADATA_IP}/32 -p tcp -m tcp --dport 80 -j RETURN`);
    egress.push(...uniq(nic.egress.map((r) => `-A ${oc} ${ruleMatch(r, 'egress', knownSets)} -j RETURN`.replace(/ {2,}/g, ' '))));
    egress.push(`-A ${oc} -j DROP`);
  } else {
    egress.push(`-A ${oc} -j RETURN`);
  }
  return { ingress, egress };
}

/**
 * Render the complete firewall. Deterministic: NICs sorted by tap, sets by name, so equal
 * desired states give byte-equal text (golden files, and a cheap "changed?" check).
 */
export function renderFirewall(fw: HostFirewallT, cur: CurrentFirewall): RenderedFirewall {
  const nics = [...fw.nics].sort((a, b) => (a.tap < b.tap ? -1 : a.tap > b.tap ? 1 : 0));
  const taps = new Set<string>();
  for (const n of nics) {
    if (taps.has(n.tap)) throw bad('nics.tap', `tap ${n.tap} appears twice`);
    taps.add(n.tap);
  }
  // ipsets first: the rules below reference them
  const sets = new Map<string, { tmp: string; ips: string[] }>();
  for (const s of fw.sets) {
    const name = setName(s.groupUuid);
    for (const ip of s.ips) if (!IP_RE.test(ip)) throw bad('sets.ips', `not an IPv4 address: ${ip}`);
    sets.set(name, { tmp: tmpSetName(s.groupUuid), ips: [...new Set([...(sets.get(name)?.ips ?? []), ...s.ips])].sort() });
  }
  const known = new Set(sets.keys());
  const setLines: string[] = [];
  for (const [name, s] of [...sets.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const opts = 'hash:ip family inet hashsize 1024 maxelem 65536';
    setLines.push(`create ${name} ${opts}`, `create ${s.tmp} ${opts}`, `flush ${s.tmp}`);
    for (const ip of s.ips) setLines.push(`add ${s.tmp} ${ip}`);
    setLines.push(`swap ${s.tmp} ${name}`, `destroy ${s.tmp}`);
  }
  const staleSets = cur.sets.filter((s) => !known.has(s)).sort();

  const chains: string[] = [];
  const dispatchOut: string[] = [];
  const dispatchIn: string[] = [];
  const body: string[] = [];
  for (const n of nics) {
    const c = nicChains(n.tap);
    chains.push(c.egress, c.ingress);
    dispatchOut.push(`-A ${ROOT_CHAIN} -m physdev --physdev-in ${n.tap} --physdev-is-bridged -j ${c.egress}`);
    dispatchIn.push(`-A ${ROOT_CHAIN} -m physdev --physdev-out ${n.tap} --physdev-is-bridged -j ${c.ingress}`);
    const r = nicRules(n, known);
    body.push(...r.egress, ...r.ingress);
  }
  const wanted = new Set([ROOT_CHAIN, ...chains]);
  const staleChains = cur.chains.filter((c) => !wanted.has(c) && c !== ROOT_CHAIN).sort();
  const empty = nics.length === 0;
  const lines = ['*filter'];
  if (empty) {
    // nothing guarded: remove the hook and every chain (nothing of tstack stays behind)
    const all = cur.chains.slice().sort();
    for (const c of all) lines.push(`:${c} - [0:0]`);
    if (cur.hooked) lines.push(`-D FORWARD -j ${ROOT_CHAIN}`);
    for (const c of all) lines.push(`-X ${c}`);
  } else {
    lines.push(`:${ROOT_CHAIN} - [0:0]`);
    for (const c of chains) lines.push(`:${c} - [0:0]`);
    for (const c of staleChains) lines.push(`:${c} - [0:0]`);
    // (re)hook at the top: -D fails if the hook is gone, which makes a caller that trusted a
    // remembered state re-read the real one (Firewall.apply)
    if (cur.hooked) lines.push(`-D FORWARD -j ${ROOT_CHAIN}`);
    lines.push(`-I FORWARD 1 -j ${ROOT_CHAIN}`);
    lines.push(...dispatchOut, ...dispatchIn, ...body);
    for (const c of staleChains) lines.push(`-X ${c}`);
  }
  lines.push('COMMIT', '');
  const rules = lines.filter((l) => l.startsWith('-A ')).length;
  return {
    iptables: lines.join('\n'),
    ipset: setLines.length ? `${setLines.join('\n')}\n` : '',
    staleSets,
    staleChains: empty ? cur.chains.slice().sort() : staleChains,
    rules,
  };
}

/** What the host has after `fw` was applied successfully (so the next apply need not read it). */
export function stateAfter(fw: HostFirewallT): CurrentFirewall {
  if (fw.nics.length === 0) return { hooked: false, chains: [], sets: [] };
  const chains = [ROOT_CHAIN, ...fw.nics.flatMap((n) => Object.values(nicChains(n.tap)))];
  return { hooked: true, chains, sets: [...new Set(fw.sets.map((s) => setName(s.groupUuid)))] };
}

/** Parse `iptables-save -t filter` output: tstack's chains and whether FORWARD jumps to them. */
export function parseCurrent(save: string, setList: string): CurrentFirewall {
  const chains: string[] = [];
  let hooked = false;
  for (const line of save.split('\n')) {
    const m = /^:(\S+) /.exec(line);
    if (m && (m[1] === ROOT_CHAIN || m[1]!.startsWith(CHAIN_PREFIX))) chains.push(m[1]!);
    if (/^-A FORWARD (.* )?-j tstack-sg\s*$/.test(line)) hooked = true;
  }
  const sets = setList
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s.startsWith(SET_PREFIX) || s.startsWith(TMP_SET_PREFIX));
  return { hooked, chains, sets };
}
