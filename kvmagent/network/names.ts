// Fixed, validated naming of host network devices for L2 networks (IFNAMSIZ: ≤ 15 bytes).
//   NoVlan:  bridge br_<if>
//   Vlan:    sub-interface <if>.<vlan>, bridge br_<if>_<vlan>
//   Vxlan:   device vxlan<vni>, bridge br_vx_<vni>
// A derived name longer than 15 characters is replaced by a deterministic hashed one
// (br_h<10 hex> / vl_h<10 hex>), so long NIC names (enp0s31f6…) still work.
import { createHash } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { BridgeRequestT } from '../../shared/protocol/kvm.js';

export const IFNAMSIZ_MAX = 15;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export function isValidIfName(s: string): boolean {
  return IFNAME_RE.test(s) && s !== '.' && s !== '..';
}

export function assertIfName(s: string, field: string): string {
  if (!isValidIfName(s)) {
    throw new TStackError('INVALID_ARGUMENT', `${field}: '${s}' is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)`, { field, reason: 'bad interface name' });
  }
  return s;
}

const h10 = (key: string): string => createHash('sha1').update(key).digest('hex').slice(0, 10);
const fit = (name: string, hashedPrefix: string, key: string): string => (name.length <= IFNAMSIZ_MAX ? name : `${hashedPrefix}${h10(key)}`);

export const noVlanBridgeName = (phys: string): string => fit(`br_${phys}`, 'br_h', `novlan:${phys}`);
export const vlanBridgeName = (phys: string, vlan: number): string => fit(`br_${phys}_${vlan}`, 'br_h', `vlan:${phys}:${vlan}`);
export const vlanSubIfName = (phys: string, vlan: number): string => fit(`${phys}.${vlan}`, 'vl_h', `vlanif:${phys}:${vlan}`);
export const vxlanDevName = (vni: number): string => `vxlan${vni}`;
export const vxlanBridgeName = (vni: number): string => `br_vx_${vni}`;

export interface L2Names {
  bridge: string;
  /** The VLAN sub-interface or VXLAN device, if the type has one. */
  member?: string;
  /** The physical interface enslaved (NoVlan) or used as the parent/underlay. */
  physical?: string;
}

/** Validate a bridge request and derive the device names it implies. */
export function l2Names(req: BridgeRequestT): L2Names {
  const need = (cond: unknown, field: string, reason: string): void => {
    if (!cond) throw new TStackError('INVALID_ARGUMENT', `${field}: ${reason}`, { field, reason });
  };
  const phys = req.physicalInterface;
  if (phys !== undefined) assertIfName(phys, 'physicalInterface');
  if (req.bridgeName !== undefined) assertIfName(req.bridgeName, 'bridgeName');
  switch (req.type) {
    case 'NoVlan':
      need(phys, 'physicalInterface', 'required for a NoVlan network');
      need(req.vlan === undefined && req.vni === undefined, 'vlan', 'a NoVlan network has no vlan/vni');
      return { bridge: req.bridgeName ?? noVlanBridgeName(phys!), physical: phys! };
    case 'Vlan':
      need(phys, 'physicalInterface', 'required for a Vlan network');
      need(req.vlan !== undefined, 'vlan', 'required for a Vlan network (1-4094)');
      return { bridge: req.bridgeName ?? vlanBridgeName(phys!, req.vlan!), member: vlanSubIfName(phys!, req.vlan!), physical: phys! };
    case 'Vxlan': {
      need(req.vni !== undefined, 'vni', 'required for a Vxlan network (1-16777215)');
      need(req.vtepIp !== undefined, 'vtepIp', "required for a Vxlan network (this host's tunnel address)");
      need(!(req.group && req.peers && req.peers.length), 'group', 'give either peers (unicast) or group (multicast), not both');
      need(!req.group || phys, 'physicalInterface', 'required with a multicast group');
      if (req.group) {
        const first = Number(req.group.split('.')[0]);
        need(first >= 224 && first <= 239, 'group', 'must be an IPv4 multicast address (224.0.0.0/4)');
      }
      const n: L2Names = { bridge: req.bridgeName ?? vxlanBridgeName(req.vni!), member: vxlanDevName(req.vni!) };
      if (phys) n.physical = phys;
      return n;
    }
  }
}
