// IPsec site-to-site VPN on VPC routers (manual IPsec隧道 ~12628, defaults ~12725): a connection
// sits on a VIP of the router that owns its local networks (the router's system VIP or a custom
// VIP of its public network) and joins those networks to the peer's CIDRs through a tunnel to
// peerAddress. The kind and its static checks; the handlers are in api.ts, the router's part in
// desired.ts; the router runs it (vrouteragent/ipsec.ts).
//
//   ipsec-connection {name, vipUuid, l3NetworkUuids, peerAddress, peerCidrs, authKey, authMode,
//                    ikeVersion, ikeAuthAlgorithm, ikeEncryptionAlgorithm, ikeDhGroup,
//                    policyAuthAlgorithm, policyEncryptionAlgorithm, pfs, policyMode,
//                    transformProtocol}
//                    → vipIp, vpcRouterUuid, localCidrs (the networks' CIDRs, then as changed)
//                    actions addLocalCidrs / removeLocalCidrs {localCidrs},
//                            addPeerCidrs / removePeerCidrs {peerCidrs}, getStatus
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { Cidr } from '../../shared/protocol/vrouter.js';
import { IKE_DH_GROUPS, IKE_VERSIONS, IPSEC_AUTHS, IPSEC_ENCRYPTIONS, IPSEC_PFS } from '../../shared/protocol/ipsec.js';
import { baseCreate, baseUpdate, Enum, Ipv4, Uuid } from '../model/fields.js';
import { action, emptyAction, type KindDef } from '../model/kind.js';
import { parseCidr, type Subnet } from '../model/ipv4.js';

/** The manual's defaults (高级选项: "the defaults connect two private networks"). */
export const IPSEC_DEFAULTS = {
  authMode: 'psk',
  ikeVersion: 'ike',
  ikeAuthAlgorithm: 'sha1',
  ikeEncryptionAlgorithm: '3des',
  ikeDhGroup: 2,
  policyAuthAlgorithm: 'sha1',
  policyEncryptionAlgorithm: '3des',
  pfs: 'dh-group2',
  policyMode: 'tunnel',
  transformProtocol: 'esp',
} as const;

const Cidrs = () => Type.Array(Cidr(), { minItems: 1, maxItems: 64, uniqueItems: true });

/** Each CIDR parsed, a network address (no host bits), or 400 naming `field.i`. */
export function cidrsOf(xs: readonly string[], field: string): Subnet[] {
  return xs.map((c, i) => {
    const s = parseCidr(c, `${field}.${i}`);
    if (s.address !== s.network) throw invalid(`${field}.${i}`, `${c} has host bits set: the network is ${c.replace(/^[\d.]+/, [s.network >>> 24, (s.network >>> 16) & 255, (s.network >>> 8) & 255, s.network & 255].join('.'))}`);
    return s;
  });
}

const overlaps = (a: Subnet, b: Subnet): boolean => a.network <= b.broadcast && b.network <= a.broadcast;

/** Local and peer CIDRs may not overlap (traffic between them could not be told apart) → 400 naming `field.i` of the `blame` side. */
export function checkNoOverlap(local: readonly string[], peer: readonly string[], blame: 'localCidrs' | 'peerCidrs'): void {
  const l = cidrsOf(local, 'localCidrs');
  const p = cidrsOf(peer, 'peerCidrs');
  const [mine, other, mineRaw, otherRaw] = blame === 'peerCidrs' ? [p, l, peer, local] : [l, p, local, peer];
  mine.forEach((s, i) => {
    const j = other.findIndex((o) => overlaps(s, o));
    if (j >= 0) throw invalid(`${blame}.${i}`, `${mineRaw[i]!} overlaps ${blame === 'peerCidrs' ? 'the local' : 'the peer'} CIDR ${otherRaw[j]!}`);
  });
}

export const ipsecConnection: KindDef = {
  kind: 'ipsec-connection',
  collection: 'ipsec-connections',
  title: 'IPsec connection',
  createSchema: Obj({
    ...baseCreate(),
    vipUuid: Uuid({ description: 'the local end: the router\'s system VIP or a custom VIP of its public network' }),
    l3NetworkUuids: Type.Array(Uuid(), { minItems: 1, maxItems: 64, uniqueItems: true, description: 'the local networks (VPC networks of one router); their CIDRs become localCidrs' }),
    peerAddress: Ipv4({ description: 'the public address of the peer gateway' }),
    peerCidrs: Cidrs(),
    authKey: Type.String({ minLength: 1, maxLength: 256, description: 'the pre-shared key (never returned)' }),
    authMode: Type.Optional(Enum(['psk'] as const)),
    ikeVersion: Type.Optional(Enum(IKE_VERSIONS, { description: 'ike (either; initiates IKEv2), ikev1 (main mode), ikev2' })),
    ikeAuthAlgorithm: Type.Optional(Enum(IPSEC_AUTHS)),
    ikeEncryptionAlgorithm: Type.Optional(Enum(IPSEC_ENCRYPTIONS)),
    ikeDhGroup: Type.Optional(Type.Union(IKE_DH_GROUPS.map((g) => Type.Literal(g)))),
    policyAuthAlgorithm: Type.Optional(Enum(IPSEC_AUTHS)),
    policyEncryptionAlgorithm: Type.Optional(Enum(IPSEC_ENCRYPTIONS)),
    pfs: Type.Optional(Enum(IPSEC_PFS)),
    policyMode: Type.Optional(Enum(['tunnel'] as const, { description: 'tunnel only (site to site)' })),
    transformProtocol: Type.Optional(Enum(['esp'] as const, { description: 'esp only' })),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [
    { field: 'vipUuid', kind: 'vip' },
    { field: 'l3NetworkUuids', kind: 'l3-network', many: true },
  ],
  states: [],
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  defaults: { ...IPSEC_DEFAULTS },
  secretFields: ['authKey'],
  systemFields: ['vipIp', 'vpcRouterUuid', 'localCidrs'],
  check: (b) => {
    cidrsOf(b.peerCidrs as string[], 'peerCidrs');
    const peer = String(b.peerAddress);
    const first = Number(peer.split('.')[0]);
    if (first === 0 || first === 127 || first >= 224 || peer === '255.255.255.255') throw invalid('peerAddress', `${peer} is not a unicast address a peer gateway can have`);
  },
  actions: {
    addLocalCidrs: action(Obj({ localCidrs: Cidrs() }), 'Add local CIDRs (networks behind the router, e.g. reached through its route table)', false),
    removeLocalCidrs: action(Obj({ localCidrs: Cidrs() }), 'Remove local CIDRs (at least one stays)', false),
    addPeerCidrs: action(Obj({ peerCidrs: Cidrs() }), 'Add peer CIDRs', false),
    removePeerCidrs: action(Obj({ peerCidrs: Cidrs() }), 'Remove peer CIDRs (at least one stays)', false),
    getStatus: emptyAction('The connection with its tunnel status (up/down) and the last error, read from the router', false),
  },
};

export const ipsecKinds: KindDef[] = [ipsecConnection];
