// vrouter agent commands (declared once; see command.ts).
//
// Flat networks: every host that runs VMs of a flat L3 network gets a per-L3 "service
// namespace" attached to the L3's bridge. Inside it: dnsmasq (static DHCP for the VMs on
// THIS host only, DNS for the whole L3) and the metadata service on 169.254.169.254:80.
// The controller owns all addresses (no dynamic pool) and sends the complete desired state of
// one (host, L3) with flat/apply (controller/network/flat-reconcile.ts); there are no
// incremental add/remove commands, so a lost or repeated call can never leave drift behind.
import { defineCommand } from './command.js';
import { AbsPath, Ipv4, Mac, Obj, Type, Uuid } from './schema.js';

/** RFC 1123 host name: labels of [A-Za-z0-9-], no leading/trailing '-', dots between labels. */
export const HOSTNAME_RE = '^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$';
export const Hostname = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: HOSTNAME_RE, maxLength: 253, description: 'RFC 1123 host name (letters, digits, "-", dots between labels)', ...opts });

export const Cidr = (opts: Record<string, unknown> = {}) =>
  Type.String({
    pattern: '^((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)/([0-9]|[12][0-9]|3[0-2])$',
    description: 'IPv4 network in CIDR notation, e.g. 10.0.0.0/24',
    ...opts,
  });

/** An OpenSSH public key on one line. */
export const SshPublicKey = (opts: Record<string, unknown> = {}) =>
  Type.String({ pattern: '^(ssh-|ecdsa-|sk-)[A-Za-z0-9@._-]+ [A-Za-z0-9+/=]+( [^\\n\\r]*)?$', maxLength: 16384, ...opts });

export const IpRange = Obj({ startIp: Ipv4(), endIp: Ipv4() });

/** Network-level settings of a flat L3 network as seen by one host's service namespace. */
export const FlatNetwork = Obj({
  l3NetworkUuid: Uuid(),
  /** Linux bridge of the L2 network on this host (must exist). */
  bridge: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$', description: 'bridge name (≤15 chars)' }),
  cidr: Cidr(),
  /** Address of this host's DHCP/DNS server inside the namespace (next hop of the metadata route). */
  dhcpServerIp: Ipv4(),
  gateway: Type.Optional(Ipv4()),
  /** The L3's IP ranges (validated: inside the CIDR, not overlapping). */
  ipRanges: Type.Optional(Type.Array(IpRange, { maxItems: 256 })),
  /** DNS servers handed out by DHCP; default: [dhcpServerIp] (this namespace's dnsmasq). */
  dnsServers: Type.Optional(Type.Array(Ipv4(), { maxItems: 8 })),
  dnsDomain: Type.Optional(Hostname()),
  mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9216 })),
  /** DHCP lease time in seconds (default 86400). */
  leaseTimeSec: Type.Optional(Type.Integer({ minimum: 120, maximum: 31_536_000 })),
  /** Serve 169.254.169.254 in the namespace and hand out the option-121 route to it (default true). */
  metadata: Type.Optional(Type.Boolean()),
});

export const DhcpEntry = Obj({
  mac: Mac(),
  ip: Ipv4(),
  hostname: Type.Optional(Hostname()),
  vmUuid: Type.Optional(Uuid()),
});

export const DnsRecord = Obj({ name: Hostname(), ip: Ipv4() });

/** A DNS record set's digest (shared/dns-set.ts): the count, then two 32-bit lane sums in hex. */
export const DnsDigest = Type.String({ pattern: '^[0-9]{1,6}-[0-9a-f]{16}$' });

export const MetadataRecord = Obj({
  /** The VM's address on this L3: the metadata service answers requests from this source only. */
  ip: Ipv4(),
  instanceId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' }),
  hostname: Hostname(),
  userData: Type.Optional(Type.String({ maxLength: 65_536 })),
  sshKeys: Type.Optional(Type.Array(SshPublicKey(), { maxItems: 32 })),
  mac: Type.Optional(Mac()),
});

const L3Ref = { l3NetworkUuid: Uuid() };

const NamespaceInfo = Obj({
  l3NetworkUuid: Type.String(),
  namespace: Type.String(),
  hostVeth: Type.String(),
  nsVeth: Type.String(),
  dnsmasqPid: Type.Optional(Type.Integer()),
  metadata: Type.Boolean(),
});

export const NamespaceEnsure = defineCommand({
  name: 'flat/namespace/ensure',
  agent: 'vrouter',
  timeoutMs: 60_000,
  request: Obj({ network: FlatNetwork }),
  response: Obj({ namespace: NamespaceInfo, changed: Type.Boolean() }),
  description: 'create or update (idempotently) the service namespace of a flat L3 on this host: netns, veth into the bridge, DHCP server address, dnsmasq, metadata service',
});

export const NamespaceDelete = defineCommand({
  name: 'flat/namespace/delete',
  agent: 'vrouter',
  timeoutMs: 60_000,
  request: Obj(L3Ref),
  response: Obj({ deleted: Type.Boolean() }),
  description: 'stop the services of a flat L3 on this host and delete its namespace and state (idempotent)',
});

export const FlatStatus = defineCommand({
  name: 'flat/status',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({ l3NetworkUuid: Type.Optional(Uuid()) }),
  response: Obj({
    networks: Type.Array(
      Obj({
        namespace: NamespaceInfo,
        dhcpEntries: Type.Integer(),
        dnsRecords: Type.Integer(),
        metadataRecords: Type.Integer(),
        dnsmasqRunning: Type.Boolean(),
        metadataListening: Type.Boolean(),
      }),
    ),
  }),
  description: 'what this host serves: namespaces, entry counts, whether dnsmasq and the metadata service run',
});

const DhcpResult = Obj({ entries: Type.Integer(), reloaded: Type.Boolean() });

export const DhcpApply = defineCommand({
  name: 'flat/dhcp/apply',
  agent: 'vrouter',
  timeoutMs: 60_000,
  request: Obj({ ...L3Ref, entries: Type.Array(DhcpEntry, { maxItems: 65_536 }) }),
  response: DhcpResult,
  description: 'replace the static DHCP entries (MAC → IP, hostname) this host answers for; others are ignored',
});

export const DnsApply = defineCommand({
  name: 'flat/dns/apply',
  agent: 'vrouter',
  timeoutMs: 30_000,
  request: Obj({
    ...L3Ref,
    /** Names of the L3's VMs (all hosts); DHCP hostnames of this host are added automatically. */
    records: Type.Array(DnsRecord, { maxItems: 65_536 }),
    /** Upstream DNS servers for other names; none = answer only local names. */
    forwarders: Type.Array(Ipv4(), { maxItems: 8 }),
  }),
  response: Obj({ records: Type.Integer(), forwarders: Type.Integer() }),
  description: 'replace the DNS records and upstream forwarders of the L3 namespace',
});

const MetadataResult = Obj({ records: Type.Integer() });

export const MetadataApply = defineCommand({
  name: 'flat/metadata/apply',
  agent: 'vrouter',
  timeoutMs: 30_000,
  request: Obj({ ...L3Ref, records: Type.Array(MetadataRecord, { maxItems: 65_536 }) }),
  response: MetadataResult,
  description: 'replace the metadata records (user-data, ssh keys, hostname, instance id per VM IP)',
});

/**
 * One VM NIC a host serves on a flat L3, sent once (flat/apply): the agent derives its DHCP
 * entry, its DNS name and its metadata record from it.
 */
export const FlatNic = Obj({
  mac: Mac(),
  ip: Ipv4(),
  /** The VM (the metadata service's instance-id). */
  vmUuid: Uuid(),
  /** The VM's host name (metadata); also its DHCP name and DNS record unless `named` is false. */
  hostname: Hostname(),
  /** false: an older VM of the L3 holds this name; this NIC gets an address but no name. */
  named: Type.Optional(Type.Boolean()),
  userData: Type.Optional(Type.String({ maxLength: 65_536 })),
  sshKeys: Type.Optional(Type.Array(SshPublicKey(), { maxItems: 32 })),
});

export const FlatApply = defineCommand({
  name: 'flat/apply',
  agent: 'vrouter',
  // answered inline: a whole-state apply is idempotent and the reconcile queue retries it, so a
  // broken connection needs no task record, and a 202 + callback would double the round trips
  mode: 'sync',
  timeoutMs: 60_000,
  // protocol 2: each NIC once (protocol 1 sent parallel dhcp/dns/metadata lists repeating it)
  request: Obj({
    network: FlatNetwork,
    /** Answer DHCP for `nics` (the L3 has the DHCP service); default true. */
    dhcp: Type.Optional(Type.Boolean()),
    /** Every NIC of the L3 this host serves (its own VMs): DHCP entries, DNS names, metadata records (when network.metadata). */
    nics: Type.Array(FlatNic, { maxItems: 65_536 }),
    /**
     * Check the host against the state even where it is unchanged (the controller's periodic
     * pass): every file compared with the disk, the namespace checked in full, dnsmasq and its
     * lease file. Needed because a pass's DNS records usually come as an empty delta (issue 19),
     * which says nothing about the files; default false.
     */
    verify: Type.Optional(Type.Boolean()),
    dns: Obj({
      /**
       * Names of the L3's VMs on other hosts (the named `nics` are added): the whole set. Either
       * this or `delta`.
       */
      records: Type.Optional(Type.Array(DnsRecord, { maxItems: 65_536 })),
      /**
       * The same set as the changes to the one the agent holds (issue 19: the whole set made each
       * apply O(L3 size)): the agent checks it holds `base`, applies them and checks the result
       * is `digest` (shared/dns-set.ts), else answers DNS_BASE_MISMATCH and the controller sends
       * `records`. The agent always ends up with the complete set.
       */
      delta: Type.Optional(
        Obj({
          base: DnsDigest,
          digest: DnsDigest,
          /** Records no longer in the set, as held (a changed record is removed and added). */
          remove: Type.Array(DnsRecord, { maxItems: 65_536 }),
          /** Records new to the set. */
          add: Type.Array(DnsRecord, { maxItems: 65_536 }),
        }),
      ),
      forwarders: Type.Array(Ipv4(), { maxItems: 8 }),
    }),
  }),
  response: Obj({
    namespace: NamespaceInfo,
    changed: Type.Boolean(),
    /** DHCP leases dropped because their MAC/IP pair is no longer desired (so the address can be reused). */
    releasedLeases: Type.Integer(),
    /** The digest of the other hosts' records the agent now holds (an agent that sends none is never sent a delta). */
    dnsDigest: Type.Optional(DnsDigest),
  }),
  description:
    'make the service namespace of a flat L3 on this host match the complete desired state (network, the NICs it serves, DNS): validated whole, files written atomically, dnsmasq reloaded or (re)started, stale leases dropped, a missing namespace or dead dnsmasq recreated',
});

export const ConfigDriveNetwork = Obj({
  mac: Mac(),
  ip: Ipv4(),
  netmask: Ipv4(),
  gateway: Type.Optional(Ipv4()),
  dnsServers: Type.Optional(Type.Array(Ipv4(), { maxItems: 8 })),
  dnsDomain: Type.Optional(Hostname()),
  mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9216 })),
});

export const ConfigDriveBuild = defineCommand({
  name: 'configdrive/build',
  agent: 'vrouter',
  timeoutMs: 120_000,
  request: Obj({
    /** Where to write the ISO (replaced atomically). */
    path: AbsPath({ pattern: '^/(?!.*(^|/)\\.\\.(/|$))[^\\0\\n\\r]*\\.iso$' }),
    instanceId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' }),
    hostname: Hostname(),
    userData: Type.Optional(Type.String({ maxLength: 65_536 })),
    sshKeys: Type.Optional(Type.Array(SshPublicKey(), { maxItems: 32 })),
    /** Static network configuration (cloud-init network-config v2); omitted = DHCP. */
    networks: Type.Optional(Type.Array(ConfigDriveNetwork, { maxItems: 16 })),
  }),
  response: Obj({ path: Type.String(), sizeBytes: Type.Integer(), sha256: Type.String() }),
  description: 'build a NoCloud "cidata" ISO (user-data, meta-data, network-config) for a VM',
});

// EIPs of flat networks (manual 弹性IP, flat network provider): distributed 1:1 NAT on the VM's
// host. One "EIP namespace" per host with a veth into each public network's bridge (the VIPs
// as /32s) and one into each private flat L3's bridge; the host's bridge steers the EIP VMs'
// off-subnet frames into it (ebtables: an ARP reply for the L3 gateway, a MAC rewrite).
// flat/eip/apply carries the host's WHOLE EIP set; an empty set removes everything.
export const FlatEipPublicNetwork = Obj({
  l3NetworkUuid: Uuid(),
  bridge: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$' }),
  cidr: Cidr(),
  /** Next hop of the EIP VMs' outbound traffic (the public range's gateway). */
  gateway: Type.Optional(Ipv4()),
});

export const FlatEipPrivateNetwork = Obj({
  l3NetworkUuid: Uuid(),
  bridge: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$' }),
  cidr: Cidr(),
  /** The L3's gateway: the EIP VMs' ARP requests for it are answered with the namespace's MAC. */
  gateway: Ipv4(),
});

export const FlatEipEntry = Obj({
  /** The EIP (a VIP of the public network). */
  eip: Ipv4(),
  publicL3NetworkUuid: Uuid(),
  privateL3NetworkUuid: Uuid(),
  /** The VM NIC's address and MAC on the private L3. */
  privateIp: Ipv4(),
  mac: Mac(),
});

export const FlatEipApply = defineCommand({
  name: 'flat/eip/apply',
  agent: 'vrouter',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({
    /** This host (its namespace interfaces' MACs derive from it: unique on an L2 that spans hosts). */
    hostUuid: Uuid(),
    publicNetworks: Type.Array(FlatEipPublicNetwork, { maxItems: 64 }),
    privateNetworks: Type.Array(FlatEipPrivateNetwork, { maxItems: 256 }),
    eips: Type.Array(FlatEipEntry, { maxItems: 4096 }),
  }),
  response: Obj({ namespace: Type.Optional(Type.String()), eips: Type.Integer({ minimum: 0 }), changed: Type.Boolean() }),
  description:
    "make this host's flat-network EIPs match the complete desired set: validated whole, the EIP namespace's links, addresses, routes and netfilter (one iptables-restore) and the bridge steering (one ebtables-restore) replaced; an empty set removes the namespace and the rules",
});
