// Pure planning of L2 bridge changes: from the request and the host's current links (as `ip -j -d
// addr show` reports them) to the exact `ip` / `bridge` argument lists to run. Unit-tested.
import { TStackError } from '../../shared/errors.js';
import type { BridgeRequestT } from '../../shared/protocol/kvm.js';
import { l2Names, type L2Names } from './names.js';

export interface Cmd {
  prog: 'ip' | 'bridge';
  args: string[];
}

/** One link as read from `ip -j -d addr show`. */
export interface LinkState {
  name: string;
  kind?: string; // bridge, vlan, vxlan, veth, tun, ... (undefined: a physical NIC)
  master?: string;
  up: boolean;
  mtu: number;
  /** Parent link (vlan: the physical interface). */
  link?: string;
  vlanId?: number;
  vni?: number;
  local?: string;
  group?: string;
  dstPort?: number;
  ipv4: string[];
}

export interface HostLinks {
  links: Map<string, LinkState>;
  /** Unicast flood entries (00:00:00:00:00:00 dst …) of each vxlan device. */
  fdb: Map<string, string[]>;
}

const ZERO_MAC = '00:00:00:00:00:00';

// --- renderers: one argument list per operation -------------------------------------------

export const ipBridgeAdd = (br: string): Cmd => ({ prog: 'ip', args: ['link', 'add', 'name', br, 'type', 'bridge'] });
export const ipVlanAdd = (phys: string, sub: string, vlan: number): Cmd => ({
  prog: 'ip',
  args: ['link', 'add', 'link', phys, 'name', sub, 'type', 'vlan', 'id', String(vlan)],
});
export function ipVxlanAdd(o: { dev: string; vni: number; local: string; dstPort: number; group?: string; physical?: string }): Cmd {
  const args = ['link', 'add', o.dev, 'type', 'vxlan', 'id', String(o.vni), 'local', o.local, 'dstport', String(o.dstPort)];
  if (o.group) args.push('group', o.group);
  else args.push('nolearning');
  if (o.physical) args.push('dev', o.physical);
  return { prog: 'ip', args };
}
export const ipSetMaster = (dev: string, br: string): Cmd => ({ prog: 'ip', args: ['link', 'set', 'dev', dev, 'master', br] });
export const ipSetNoMaster = (dev: string): Cmd => ({ prog: 'ip', args: ['link', 'set', 'dev', dev, 'nomaster'] });
export const ipSetUp = (dev: string): Cmd => ({ prog: 'ip', args: ['link', 'set', 'dev', dev, 'up'] });
export const ipSetMtu = (dev: string, mtu: number): Cmd => ({ prog: 'ip', args: ['link', 'set', 'dev', dev, 'mtu', String(mtu)] });
export const ipLinkDel = (dev: string): Cmd => ({ prog: 'ip', args: ['link', 'del', 'dev', dev] });
export const fdbAppend = (dev: string, dst: string): Cmd => ({ prog: 'bridge', args: ['fdb', 'append', ZERO_MAC, 'dev', dev, 'dst', dst] });
export const fdbDel = (dev: string, dst: string): Cmd => ({ prog: 'bridge', args: ['fdb', 'del', ZERO_MAC, 'dev', dev, 'dst', dst] });

/** Human form of a command, for logs and errors. */
export const show = (c: Cmd): string => [c.prog, ...c.args].join(' ');

// --- planning ---------------------------------------------------------------------------------

export interface Plan {
  names: L2Names;
  cmds: Cmd[];
  /** What is missing or wrong now (for check). */
  problems: string[];
}

function conflict(msg: string, details: Record<string, unknown> = {}): TStackError {
  return new TStackError('CONFLICT', msg, details);
}

/** Commands that bring the host to the requested L2 state; empty when it is already there. */
export function planCreate(req: BridgeRequestT, host: HostLinks): Plan {
  const names = l2Names(req);
  const cmds: Cmd[] = [];
  const problems: string[] = [];
  const L = host.links;
  const phys = names.physical;
  if (phys !== undefined && !L.has(phys)) {
    throw new TStackError('NETWORK_ERROR', `physical interface '${phys}' does not exist on this host (see \`ip link\`); check the L2 network's physicalInterface`, {
      field: 'physicalInterface',
      physicalInterface: phys,
    });
  }

  // the bridge
  const br = L.get(names.bridge);
  if (br && br.kind !== 'bridge') throw conflict(`'${names.bridge}' exists but is a ${br.kind ?? 'physical'} device, not a bridge`, { device: names.bridge });
  if (!br) {
    problems.push(`bridge ${names.bridge} is missing`);
    cmds.push(ipBridgeAdd(names.bridge));
  }
  if (req.mtu !== undefined && (!br || br.mtu !== req.mtu)) {
    if (br) problems.push(`bridge ${names.bridge} has MTU ${br.mtu}, want ${req.mtu}`);
  }

  // the member: physical NIC (NoVlan), VLAN sub-interface, or VXLAN device
  let member: string | undefined;
  if (req.type === 'NoVlan') {
    member = phys!;
    const p = L.get(phys!)!;
    if (p.master && p.master !== names.bridge) throw conflict(`'${phys}' is already enslaved to bridge '${p.master}'`, { device: phys, master: p.master });
    if (!p.master && p.ipv4.length > 0) {
      throw conflict(
        `'${phys}' carries IPv4 address(es) ${p.ipv4.join(', ')}; enslaving it to ${names.bridge} would cut the host's connectivity. Move the addresses to the bridge first, or use a NIC without addresses`,
        { device: phys, addresses: p.ipv4 },
      );
    }
  } else if (req.type === 'Vlan') {
    member = names.member!;
    const v = L.get(member);
    if (v) {
      if (v.kind !== 'vlan' || v.vlanId !== req.vlan || v.link !== phys) {
        throw conflict(`'${member}' exists but is not VLAN ${req.vlan} on ${phys}`, { device: member });
      }
    } else {
      problems.push(`VLAN interface ${member} is missing`);
      cmds.push(ipVlanAdd(phys!, member, req.vlan!));
    }
  } else {
    member = names.member!;
    const v = L.get(member);
    const dstPort = req.dstPort ?? 4789;
    if (v) {
      const bad: string[] = [];
      if (v.kind !== 'vxlan') bad.push(`kind ${v.kind}`);
      if (v.vni !== req.vni) bad.push(`vni ${v.vni}`);
      if (v.local !== req.vtepIp) bad.push(`local ${v.local}`);
      if (v.dstPort !== undefined && v.dstPort !== dstPort) bad.push(`dstport ${v.dstPort}`);
      if ((v.group ?? undefined) !== (req.group ?? undefined)) bad.push(`group ${v.group ?? 'none'}`);
      if (bad.length) throw conflict(`'${member}' exists with different settings (${bad.join(', ')}); delete the network first`, { device: member });
    } else {
      problems.push(`VXLAN device ${member} is missing`);
      const o: Parameters<typeof ipVxlanAdd>[0] = { dev: member, vni: req.vni!, local: req.vtepIp!, dstPort };
      if (req.group) o.group = req.group;
      if (names.physical) o.physical = names.physical;
      cmds.push(ipVxlanAdd(o));
    }
  }
  const m = L.get(member);
  if (m && m.master && m.master !== names.bridge && req.type !== 'NoVlan') {
    throw conflict(`'${member}' is enslaved to '${m.master}', not '${names.bridge}'`, { device: member, master: m.master });
  }
  if (req.mtu !== undefined) {
    if (!m || m.mtu !== req.mtu) {
      if (m) problems.push(`${member} has MTU ${m.mtu}, want ${req.mtu}`);
      cmds.push(ipSetMtu(member, req.mtu));
    }
  }
  if (!m || m.master !== names.bridge) {
    if (m) problems.push(`${member} is not enslaved to ${names.bridge}`);
    cmds.push(ipSetMaster(member, names.bridge));
  }
  if (req.mtu !== undefined && (!br || br.mtu !== req.mtu)) cmds.push(ipSetMtu(names.bridge, req.mtu));
  if (!m || !m.up) {
    if (m) problems.push(`${member} is down`);
    cmds.push(ipSetUp(member));
  }
  if (!br || !br.up) {
    if (br) problems.push(`bridge ${names.bridge} is down`);
    cmds.push(ipSetUp(names.bridge));
  }

  // VXLAN unicast peers: head-end replication through all-zero fdb entries
  if (req.type === 'Vxlan' && !req.group) {
    const want = [...new Set((req.peers ?? []).filter((p) => p !== req.vtepIp))];
    const have = host.fdb.get(member) ?? [];
    for (const p of want) {
      if (!have.includes(p)) {
        if (m) problems.push(`VXLAN peer ${p} is missing`);
        cmds.push(fdbAppend(member, p));
      }
    }
    for (const p of have) {
      if (!want.includes(p)) {
        problems.push(`VXLAN peer ${p} is not wanted`);
        cmds.push(fdbDel(member, p));
      }
    }
  }
  return { names, cmds, problems };
}

/** Commands that remove what planCreate made (never the physical interface itself). */
export function planDelete(req: BridgeRequestT, host: HostLinks): Plan {
  const names = l2Names(req);
  const cmds: Cmd[] = [];
  const L = host.links;
  const br = L.get(names.bridge);
  if (br && br.kind !== 'bridge') throw conflict(`'${names.bridge}' is a ${br.kind ?? 'physical'} device, not a bridge; refusing to delete it`, { device: names.bridge });
  const member = req.type === 'NoVlan' ? names.physical : names.member;
  if (br) {
    const ports = [...L.values()].filter((l) => l.master === names.bridge && l.name !== member).map((l) => l.name);
    if (ports.length > 0) {
      throw conflict(`bridge ${names.bridge} still has ports ${ports.join(', ')} (VM NICs?); detach them or stop their VMs first`, { device: names.bridge, ports });
    }
  }
  if (req.type === 'NoVlan') {
    const p = names.physical ? L.get(names.physical) : undefined;
    if (p && p.master === names.bridge) cmds.push(ipSetNoMaster(p.name));
  } else if (member && L.has(member)) {
    const m = L.get(member)!;
    const expectedKind = req.type === 'Vlan' ? 'vlan' : 'vxlan';
    if (m.kind !== expectedKind) throw conflict(`'${member}' is a ${m.kind ?? 'physical'} device, not ${expectedKind}; refusing to delete it`, { device: member });
    cmds.push(ipLinkDel(member));
  }
  if (br) cmds.push(ipLinkDel(names.bridge));
  return { names, cmds, problems: [] };
}

/** Parse `ip -j -d addr show` output. */
export function parseIpLinks(json: string): Map<string, LinkState> {
  const arr = JSON.parse(json || '[]') as Array<Record<string, unknown>>;
  const out = new Map<string, LinkState>();
  for (const l of arr) {
    const name = String(l.ifname);
    const info = (l.linkinfo ?? {}) as { info_kind?: string; info_data?: Record<string, unknown> };
    const data = info.info_data ?? {};
    const flags = (l.flags as string[] | undefined) ?? [];
    const s: LinkState = {
      name,
      up: flags.includes('UP'),
      mtu: Number(l.mtu ?? 0),
      ipv4: ((l.addr_info as Array<{ family: string; local: string; prefixlen: number }> | undefined) ?? [])
        .filter((a) => a.family === 'inet')
        .map((a) => `${a.local}/${a.prefixlen}`),
    };
    if (info.info_kind) s.kind = info.info_kind;
    if (typeof l.master === 'string') s.master = l.master;
    if (typeof l.link === 'string') s.link = l.link;
    if (info.info_kind === 'vlan' && data.id !== undefined) s.vlanId = Number(data.id);
    if (info.info_kind === 'vxlan') {
      if (data.id !== undefined) s.vni = Number(data.id);
      if (typeof data.local === 'string') s.local = data.local;
      if (typeof data.group === 'string') s.group = data.group;
      if (data.port !== undefined) s.dstPort = Number(data.port);
    }
    out.set(name, s);
  }
  return out;
}

/** Parse `bridge -j fdb show dev <vxlan>`: the unicast flood destinations. */
export function parseFdbPeers(json: string): string[] {
  const arr = JSON.parse(json || '[]') as Array<{ mac?: string; dst?: string }>;
  return arr.filter((e) => e.mac === ZERO_MAC && typeof e.dst === 'string').map((e) => e.dst!);
}
