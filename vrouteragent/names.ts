// Names of everything the agent creates for a flat L3, derived from the L3 uuid with one
// fixed, validated scheme:
//   namespace  <nsPrefix>-<32 hex of the uuid>            e.g. tsflat-6f1c…(32)
//   host veth  <ifPrefix>h<first hex chars>  ≤ 15 chars    e.g. tsfh6f1c2a9b0d4
//   ns veth    <ifPrefix>n<same hex chars>   ≤ 15 chars
// The prefixes are per agent (defaults tsflat/tsf) so that two agents on one machine (tests,
// or "hosts" simulated side by side) never collide.
import { createHash } from 'node:crypto';
import { TStackError } from '../shared/errors.js';

export interface NameScheme {
  nsPrefix: string;
  ifPrefix: string;
}

export const DEFAULT_SCHEME: NameScheme = { nsPrefix: 'tsflat', ifPrefix: 'tsf' };

export interface FlatNames {
  namespace: string;
  hostVeth: string;
  nsVeth: string;
}

const NS_PREFIX_RE = /^[a-z][a-z0-9-]{0,23}$/;
const IF_PREFIX_RE = /^[a-z][a-z0-9]{0,6}$/;
const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

export function checkScheme(s: NameScheme): NameScheme {
  if (!NS_PREFIX_RE.test(s.nsPrefix)) throw new TStackError('INVALID_ARGUMENT', `namespace prefix '${s.nsPrefix}' must match ${NS_PREFIX_RE}`);
  if (!IF_PREFIX_RE.test(s.ifPrefix)) throw new TStackError('INVALID_ARGUMENT', `interface prefix '${s.ifPrefix}' must match ${IF_PREFIX_RE} (≤ 7 chars: interface names are ≤ 15 chars and keep ≥ 7 hex chars of the uuid)`);
  return s;
}

export function uuidHex(uuid: string): string {
  if (!UUID_RE.test(uuid)) throw new TStackError('INVALID_ARGUMENT', `l3NetworkUuid: not a uuid: ${uuid}`, { field: 'l3NetworkUuid' });
  return uuid.replace(/-/g, '').toLowerCase();
}

export function flatNames(l3NetworkUuid: string, scheme: NameScheme = DEFAULT_SCHEME): FlatNames {
  checkScheme(scheme);
  const hex = uuidHex(l3NetworkUuid);
  const n = 15 - scheme.ifPrefix.length - 1;
  return {
    namespace: `${scheme.nsPrefix}-${hex}`,
    hostVeth: `${scheme.ifPrefix}h${hex.slice(0, n)}`,
    nsVeth: `${scheme.ifPrefix}n${hex.slice(0, n)}`,
  };
}

/** The L3 uuid (dashed, lower case) back from a namespace name of this scheme, or undefined. */
export function l3FromNamespace(ns: string, scheme: NameScheme = DEFAULT_SCHEME): string | undefined {
  const m = new RegExp(`^${scheme.nsPrefix}-([0-9a-f]{32})$`).exec(ns);
  if (!m) return undefined;
  const h = m[1]!;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// VPC routers: one namespace per router, one veth pair per interface.
//   namespace  <nsPrefix>-r-<32 hex of the router uuid>
//   inside     pub0 (public), g<8 hex of the L3 uuid> (gateway of one VPC network)
//   host veth  <ifPrefix>r<hex of sha256(router/interface)>  ≤ 15 chars (stable, collision-safe)
export interface RouterNames {
  namespace: string;
  /** Host-side veth of an interface ('public' or an L3 uuid). */
  hostVeth(iface: string): string;
  /** Namespace-side name of an interface ('public' or an L3 uuid). */
  nsIf(iface: string): string;
}

export const PUBLIC_IF = 'pub0';

export function routerNames(routerUuid: string, scheme: NameScheme = DEFAULT_SCHEME): RouterNames {
  checkScheme(scheme);
  const hex = uuidHex(routerUuid);
  const n = 15 - scheme.ifPrefix.length - 1;
  return {
    namespace: `${scheme.nsPrefix}-r-${hex}`,
    hostVeth: (iface) => `${scheme.ifPrefix}r${createHash('sha256').update(`${hex}/${iface === 'public' ? 'public' : uuidHex(iface)}`).digest('hex').slice(0, n)}`,
    nsIf: (iface) => (iface === 'public' ? PUBLIC_IF : `g${uuidHex(iface).slice(0, 8)}`),
  };
}

/** The router uuid back from a namespace name of this scheme, or undefined. */
export function routerFromNamespace(ns: string, scheme: NameScheme = DEFAULT_SCHEME): string | undefined {
  const m = new RegExp(`^${scheme.nsPrefix}-r-([0-9a-f]{32})$`).exec(ns);
  if (!m) return undefined;
  const h = m[1]!;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Flat-network EIPs: one namespace per host (not per L3), one veth pair per network it touches.
//   namespace  <nsPrefix>-eip
//   inside     p<8 hex of the public L3 uuid>, g<8 hex of the private L3 uuid>
//   host veth  <ifPrefix>e<hex of sha256(p|g/l3)>  ≤ 15 chars
//   ebtables   <IFPREFIX>-EIP (nat, steering) and <IFPREFIX>-EIPF (filter, the namespace's ports)
export interface FlatEipNames {
  namespace: string;
  nsIf(side: 'p' | 'g', l3NetworkUuid: string): string;
  hostVeth(side: 'p' | 'g', l3NetworkUuid: string): string;
  natChain: string;
  filterChain: string;
}

export function flatEipNames(scheme: NameScheme = DEFAULT_SCHEME): FlatEipNames {
  checkScheme(scheme);
  const n = 15 - scheme.ifPrefix.length - 1;
  const up = scheme.ifPrefix.toUpperCase();
  return {
    namespace: `${scheme.nsPrefix}-eip`,
    nsIf: (side, l3) => `${side}${uuidHex(l3).slice(0, 8)}`,
    hostVeth: (side, l3) => `${scheme.ifPrefix}e${createHash('sha256').update(`${side}/${uuidHex(l3)}`).digest('hex').slice(0, n)}`,
    natChain: `${up}-EIP`,
    filterChain: `${up}-EIPF`,
  };
}
