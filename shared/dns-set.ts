// A flat L3's DNS record set as flat/apply's delta form carries it (issue 19): the agent holds
// the set it was last sent with an order-independent digest, the controller sends the changes
// since a digest the agent acknowledged, and both compute the digest the same way. The digest is
// the record count and, per 32-bit lane, the sum of each record's hash: adding, replacing or
// removing a record updates it in O(1), so a delta is checked in O(changes), not O(set).
// Not a security boundary (only the controller sends applies): it detects lost or diverged state.
import { TStackError } from './errors.js';

export interface DnsRec {
  name: string;
  ip: string;
}

/** A digest under construction: count and two lane sums (mod 2^32). */
export interface DigestSum {
  n: number;
  a: number;
  b: number;
}

export const emptySum = (): DigestSum => ({ n: 0, a: 0, b: 0 });

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A record's hash lanes, over its exact name and address (a changed letter case is a change). */
export function recHash(name: string, ip: string): [number, number] {
  // FNV-1a and a multiply-xorshift lane over name, a space, ip (no closure, no concatenation: per record on both sides)
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = Math.imul(a ^ 0x20, 0x01000193);
  b = Math.imul(b ^ 0x20, 0x5bd1e995);
  b ^= b >>> 15;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return [fmix(a), fmix(b ^ name.length)];
}

/** `s` with a record added (sign 1) or taken out (sign -1), in place. */
export function addTo(s: DigestSum, h: readonly [number, number], sign: 1 | -1): void {
  s.n += sign;
  s.a = (s.a + sign * h[0]) >>> 0;
  s.b = (s.b + sign * h[1]) >>> 0;
}

/** `s` minus `t` (the records of `s` not in `t`, when `t`'s are a part of them). */
export const minus = (s: DigestSum, t: DigestSum | undefined): DigestSum => (t ? { n: s.n - t.n, a: (s.a - t.a) >>> 0, b: (s.b - t.b) >>> 0 } : { ...s });

export const digestText = (s: DigestSum): string => `${s.n}-${s.a.toString(16).padStart(8, '0')}${s.b.toString(16).padStart(8, '0')}`;

/** The digest of a whole record list. */
export function digestOf(records: readonly DnsRec[]): string {
  const s = emptySum();
  for (const r of records) addTo(s, recHash(r.name, r.ip), 1);
  return digestText(s);
}

/** The sum a digest text stands for (undefined for a malformed one). */
export function parseDigest(text: string): DigestSum | undefined {
  const m = /^([0-9]{1,6})-([0-9a-f]{8})([0-9a-f]{8})$/.exec(text);
  return m ? { n: Number(m[1]), a: parseInt(m[2]!, 16), b: parseInt(m[3]!, 16) } : undefined;
}

/**
 * What a delta carries: the digest it applies to and the one it must produce, the records it
 * takes out (exactly as held: a changed record is taken out and added again) and the ones it
 * adds. Carrying the removed records whole lets a receiver check the digests with no lookup.
 */
export interface DnsDelta {
  base: string;
  digest: string;
  remove: DnsRec[];
  add: DnsRec[];
}

/** The digest `d` leads to from its base, by digest arithmetic alone (O(changes)); undefined for a malformed base. */
export function digestAfter(d: DnsDelta): string | undefined {
  const s = parseDigest(d.base);
  if (!s) return undefined;
  for (const r of d.remove) addTo(s, recHash(r.name, r.ip), -1);
  for (const r of d.add) addTo(s, recHash(r.name, r.ip), 1);
  return digestText(s);
}

/** The agent's answer to a delta whose base it does not hold, or whose result is not the digest sent: the controller sends the whole set. */
export const DNS_BASE_MISMATCH = 'DNS_BASE_MISMATCH';

export const dnsMismatch = (msg: string, held: string | undefined, field: string): TStackError => new TStackError(DNS_BASE_MISMATCH, msg, { field, ...(held !== undefined ? { held } : {}) });

/** A record set keyed by lower-case name (names are case-insensitive), with its digest kept current. */
export class DnsSet {
  private byName = new Map<string, { r: DnsRec; h: [number, number] }>();
  private sum = emptySum();

  /** A set of `records` (their names already checked unique, case-insensitively). */
  static of(records: readonly DnsRec[]): DnsSet {
    const s = new DnsSet();
    for (const r of records) {
      const h = recHash(r.name, r.ip);
      s.byName.set(r.name.toLowerCase(), { r, h });
      addTo(s.sum, h, 1);
    }
    return s;
  }

  get digest(): string {
    return digestText(this.sum);
  }

  get size(): number {
    return this.byName.size;
  }

  get(name: string): DnsRec | undefined {
    return this.byName.get(name.toLowerCase())?.r;
  }

  records(): DnsRec[] {
    const out: DnsRec[] = [];
    for (const x of this.byName.values()) out.push(x.r);
    return out;
  }

  clone(): DnsSet {
    const s = new DnsSet();
    s.byName = new Map(this.byName);
    s.sum = { ...this.sum };
    return s;
  }

  /**
   * Apply `d` in place, or throw DNS_BASE_MISMATCH leaving the set as it was: the base is not
   * this set's digest, a removed record is not held as given, an added name is held (and not
   * removed), or the result is not `d.digest`. A name twice in either list is INVALID_ARGUMENT.
   * O(changes).
   */
  applyDelta(d: DnsDelta, field = 'dns.delta'): void {
    const held = this.digest;
    if (d.base !== held) throw dnsMismatch(`the DNS records held (${held}) are not the delta's base ${d.base}`, held, `${field}.base`);
    const removed = new Set<string>();
    d.remove.forEach((r, i) => {
      const k = r.name.toLowerCase();
      if (removed.has(k)) throw new TStackError('INVALID_ARGUMENT', `${field}.remove.${i}: ${r.name} appears twice`, { field: `${field}.remove.${i}.name` });
      removed.add(k);
      const x = this.byName.get(k);
      if (!x || x.r.name !== r.name || x.r.ip !== r.ip) throw dnsMismatch(`${field}.remove.${i}: ${r.name} ${r.ip} is not held`, held, `${field}.remove.${i}`);
    });
    const added = new Map<string, { r: DnsRec; h: [number, number] }>();
    d.add.forEach((r, i) => {
      const k = r.name.toLowerCase();
      if (added.has(k)) throw new TStackError('INVALID_ARGUMENT', `${field}.add.${i}: ${r.name} appears twice`, { field: `${field}.add.${i}.name` });
      if (this.byName.has(k) && !removed.has(k)) throw dnsMismatch(`${field}.add.${i}: ${r.name} is held already`, held, `${field}.add.${i}`);
      added.set(k, { r: { name: r.name, ip: r.ip }, h: recHash(r.name, r.ip) });
    });
    const next = { ...this.sum };
    for (const k of removed) addTo(next, this.byName.get(k)!.h, -1);
    for (const x of added.values()) addTo(next, x.h, 1);
    const got = digestText(next);
    if (got !== d.digest) throw dnsMismatch(`the DNS records after the delta (${got}) are not ${d.digest}`, held, `${field}.digest`);
    for (const k of removed) this.byName.delete(k);
    for (const [k, x] of added) this.byName.set(k, x);
    this.sum = next;
  }
}
