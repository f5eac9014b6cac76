// A host's complete desired security-group firewall, computed from the inventory. The pure part
// (hostFirewall) turns a snapshot into the kvmagent's HostFirewall; loadSnapshot reads the
// snapshot from the store.
//
// Semantics (manual 7.5.1, issue 12):
//  - a NIC in no group is not filtered (not in the result);
//  - ingress: only what an Ingress rule of one of its groups allows;
//  - egress: open until one of its groups has an Egress rule, then a whitelist. The default
//    "ALL to my own group" rule does not close egress (the manual: a new group's members reach
//    the outside freely); any other Egress rule does;
//  - a rule with a remote group matches that group's member addresses (an ipset); with a CIDR as
//    well, both must match;
//  - DHCP, DNS to the network's own server(s) on the host, and metadata always pass.
import type { FirewallRuleT, GuardedNicT, HostFirewallT } from '../../shared/protocol/secgroup.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { ipNamespace } from '../allocator/ip.js';
import type { SecurityGroup, SecurityGroupRule } from './model.js';

export interface NicInfo {
  uuid: string;
  ip: string;
  mac: string;
  l3NetworkUuid: string;
  /** Host tap name (vm-nic internalName). */
  tap: string;
  /** Where its VM runs or is placed (undefined: stopped without a host). */
  hostUuid?: string;
}

export interface Snapshot {
  groups: SecurityGroup[];
  nics: Map<string, NicInfo>;
  /** L3 uuid → addresses of its DHCP/DNS server on the host being computed. */
  serviceIps: Map<string, string[]>;
  /** L3 networks with anti-spoofing on. */
  antiSpoofing: Set<string>;
}

/** Does this rule make its group's egress a whitelist? (not the default "ALL to my members") */
export function closesEgress(g: SecurityGroup, r: SecurityGroupRule): boolean {
  return r.type === 'Egress' && !(r.protocol === 'ALL' && r.remoteSecurityGroupUuid === g.uuid && r.allowedCidr === undefined);
}

function toFirewallRule(r: SecurityGroupRule): FirewallRuleT {
  const out: FirewallRuleT = { protocol: r.protocol };
  if ((r.protocol === 'TCP' || r.protocol === 'UDP') && r.startPort > 0) {
    out.startPort = r.startPort;
    out.endPort = r.endPort;
  }
  if (r.allowedCidr) out.cidr = r.allowedCidr;
  if (r.remoteSecurityGroupUuid) out.remoteGroupUuid = r.remoteSecurityGroupUuid;
  return out;
}

/** The groups each NIC belongs to (only NICs that exist). */
export function membership(s: Snapshot): Map<string, SecurityGroup[]> {
  const m = new Map<string, SecurityGroup[]>();
  for (const g of s.groups) {
    if (g.state === 'Disabled') continue;
    for (const n of g.vmNicUuids ?? []) {
      if (!s.nics.has(n)) continue;
      m.set(n, [...(m.get(n) ?? []), g]);
    }
  }
  return m;
}

/** The complete firewall of one host. */
export function hostFirewall(hostUuid: string, s: Snapshot): HostFirewallT {
  const groupsOf = membership(s);
  const byUuid = new Map(s.groups.map((g) => [g.uuid, g]));
  const nics: GuardedNicT[] = [];
  const remotes = new Set<string>();
  for (const [nicUuid, groups] of groupsOf) {
    const nic = s.nics.get(nicUuid)!;
    if (nic.hostUuid !== hostUuid) continue;
    const ingress: FirewallRuleT[] = [];
    const egress: FirewallRuleT[] = [];
    let whitelist = false;
    for (const g of groups) {
      for (const r of g.rules ?? []) {
        // a rule naming a deleted group matches nobody: leave it out
        if (r.remoteSecurityGroupUuid && !byUuid.has(r.remoteSecurityGroupUuid)) continue;
        if (r.remoteSecurityGroupUuid) remotes.add(r.remoteSecurityGroupUuid);
        (r.type === 'Ingress' ? ingress : egress).push(toFirewallRule(r));
        if (closesEgress(g, r)) whitelist = true;
      }
    }
    const g: GuardedNicT = { tap: nic.tap, nicUuid, mac: nic.mac, ip: nic.ip, ingress, egress: whitelist ? egress : [], egressWhitelist: whitelist, serviceIps: s.serviceIps.get(nic.l3NetworkUuid) ?? [] };
    if (s.antiSpoofing.has(nic.l3NetworkUuid)) g.antiSpoofing = true;
    nics.push(g);
  }
  // only sets some rendered rule uses; members are addresses of member NICs on any host
  const used = new Set<string>();
  for (const n of nics) for (const r of [...n.ingress, ...n.egress]) if (r.remoteGroupUuid) used.add(r.remoteGroupUuid);
  const sets = [...used].sort().map((u) => ({
    groupUuid: u,
    ips: [...new Set((groupsOfMembers(byUuid.get(u)!, s)).map((n) => n.ip))].sort(),
  }));
  nics.sort((a, b) => (a.tap < b.tap ? -1 : a.tap > b.tap ? 1 : 0));
  return { nics, sets };
}

function groupsOfMembers(g: SecurityGroup, s: Snapshot): NicInfo[] {
  return (g.vmNicUuids ?? []).map((u) => s.nics.get(u)).filter((n): n is NicInfo => n !== undefined);
}

/** Hosts that run at least one member NIC of any group (what a group change may affect). */
export function guardedHosts(s: Snapshot): Set<string> {
  const out = new Set<string>();
  for (const n of membership(s).keys()) {
    const h = s.nics.get(n)!.hostUuid;
    if (h) out.add(h);
  }
  return out;
}

export const tapOf = (nic: Resource): string => (typeof nic.internalName === 'string' && nic.internalName ? nic.internalName : `vn${nic.uuid.replace(/-/g, '').slice(0, 11)}`);

/** Read what hostFirewall needs from the store (serviceIps for `hostUuid`). */
export async function loadSnapshot(store: InventoryStore, hostUuid: string): Promise<Snapshot> {
  const groups = (await store.list<SecurityGroup>({ kind: 'security-group' })).items;
  const wanted = new Set(groups.flatMap((g) => g.vmNicUuids ?? []));
  const nics = new Map<string, NicInfo>();
  const vmHost = new Map<string, string | undefined>();
  const l3s = new Set<string>();
  for (const u of wanted) {
    const n = await store.get(u);
    if (!n || n.kind !== 'vm-nic') continue;
    const vmUuid = String(n.vmInstanceUuid ?? n.parentUuid);
    if (!vmHost.has(vmUuid)) vmHost.set(vmUuid, (await store.get(vmUuid))?.hostUuid as string | undefined);
    const info: NicInfo = { uuid: n.uuid, ip: String(n.ip), mac: String(n.mac), l3NetworkUuid: String(n.l3NetworkUuid), tap: tapOf(n) };
    const h = vmHost.get(vmUuid);
    if (h) info.hostUuid = h;
    nics.set(n.uuid, info);
    if (h === hostUuid) l3s.add(info.l3NetworkUuid);
  }
  const serviceIps = new Map<string, string[]>();
  const antiSpoofing = new Set<string>();
  for (const l3 of l3s) {
    const ips = (await store.claims(ipNamespace(l3))).filter((c) => c.owner === `dhcp:${hostUuid}`).map((c) => c.key);
    serviceIps.set(l3, ips);
    if ((await store.get(l3))?.antiSpoofing === true) antiSpoofing.add(l3);
  }
  return { groups, nics, serviceIps, antiSpoofing };
}
