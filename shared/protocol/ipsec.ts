// IPsec site-to-site VPN on VPC routers (manual IPsec隧道): a router's connections are part of
// its desired state (RouterSpec.ipsec, sent whole by vrouter/apply). The agent renders one
// swanctl.conf + strongswan.conf per router (vrouteragent/render/strongswan.ts), runs charon in
// the router's namespace and loads the connections with swanctl over the router's vici socket.
// vrouter/ipsec/status reads the IKE/CHILD SAs back (up/down) with the last error from charon's log.
import { routerServiceStatus } from './router-service.js';
import { Ipv4, Obj, OneOf, Type, Uuid, type Static } from './schema.js';
import { Cidr } from './vrouter.js';

/** ike = either version (initiates IKEv2), as ZStack's "ike". */
export const IKE_VERSIONS = ['ike', 'ikev1', 'ikev2'] as const;
export const IPSEC_ENCRYPTIONS = ['3des', 'aes-128', 'aes-192', 'aes-256'] as const;
export const IPSEC_AUTHS = ['md5', 'sha1', 'sha256', 'sha384', 'sha512'] as const;
/** IKE Diffie-Hellman groups (RFC 3526/5903 numbers). */
export const IKE_DH_GROUPS = [2, 5, 14, 15, 16, 19, 20, 21] as const;
export const IPSEC_PFS = ['none', 'dh-group2', 'dh-group5', 'dh-group14', 'dh-group15', 'dh-group16', 'dh-group19', 'dh-group20', 'dh-group21'] as const;

export const RouterIpsecConnection = Obj({
  connectionUuid: Uuid(),
  /** The local end: the router's public IP or one of its VIPs. */
  vip: Ipv4(),
  peerAddress: Ipv4(),
  localCidrs: Type.Array(Cidr(), { minItems: 1, maxItems: 64 }),
  peerCidrs: Type.Array(Cidr(), { minItems: 1, maxItems: 64 }),
  /** The pre-shared key (rendered hex-encoded, so any byte is safe in swanctl.conf). */
  psk: Type.String({ minLength: 1, maxLength: 256 }),
  ikeVersion: OneOf(IKE_VERSIONS),
  ikeAuthAlgorithm: OneOf(IPSEC_AUTHS),
  ikeEncryptionAlgorithm: OneOf(IPSEC_ENCRYPTIONS),
  ikeDhGroup: OneOf(IKE_DH_GROUPS),
  policyAuthAlgorithm: OneOf(IPSEC_AUTHS),
  policyEncryptionAlgorithm: OneOf(IPSEC_ENCRYPTIONS),
  pfs: OneOf(IPSEC_PFS),
});
export type RouterIpsecConnectionT = Static<typeof RouterIpsecConnection>;

export const IpsecConnectionStatus = Obj({
  connectionUuid: Type.String(),
  /** up: an IKE_SA is ESTABLISHED and a CHILD_SA INSTALLED; else down. */
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  ikeState: Type.Optional(Type.String()),
  childState: Type.Optional(Type.String()),
  /** The last failure charon logged for this connection, if any. */
  lastError: Type.Optional(Type.String()),
});

export const IpsecStatus = routerServiceStatus({
  name: 'vrouter/ipsec/status',
  fields: {
    /** 'kernel' (XFRM ESP) or 'libipsec' (userspace ESP over a TUN device). */
    dataPlane: Type.Optional(Type.String()),
    connections: Type.Array(IpsecConnectionStatus),
  },
  description: 'the IPsec connections of a VPC router as charon sees them (up/down, last error)',
});
