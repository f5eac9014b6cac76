// The controller's side of flat/apply's DNS delta (issue 19). Each host's flat/apply carries the
// names of the L3's VMs on other hosts: sent whole, every apply was O(L3 size) to build,
// serialize, send and parse (~5,000-10,000 records at 10,000 VMs). An L3DnsLog keeps the L3's
// named records (with the host serving each) as numbered versions: the changes between two
// NIC lists, found once per list (as the list itself is made once per change of the L3), not
// once per host. A host whose agent acknowledged the records of version v (with their digest)
// is sent the changes since v that concern it; the agent checks the digests and answers
// DNS_BASE_MISMATCH when it does not hold the base (restarted, lost, another controller's
// apply since), and the whole set is sent instead. A restarted controller and any failed apply
// send the whole set. The periodic pass asks each agent to check its host (`verify`) and its
// records go as any apply's: an empty delta when the set rebuilt from the inventory has the
// digest the agent acknowledged, the changes since when they are smaller than the set (the
// agent checks the result's digest either way), else whole; it sent every key's set whole, at
// 1,000 hosts seconds of controller CPU per pass. shared/dns-set.ts: the digest.
import { addTo, digestText, emptySum, minus, recHash, type DigestSum, type DnsDelta, type DnsRec } from '../../shared/dns-set.js';

/** A named NIC's record and the host that serves it (flat-reconcile's layout). */
export interface HostRecord {
  host: string;
  record: DnsRec;
}

interface Rec {
  name: string;
  ip: string;
  /** The record as the list gave it ({name, ip}; never changed): what a delta carries (its JSON text is kept by flat-whole). */
  rec: DnsRec;
  host: string;
  h: [number, number];
  /** The last sync that found it. */
  seen: number;
}

interface Change {
  /** The version it leads to. */
  v: number;
  /** Its place among every change the log made (increasing). */
  seq: number;
  key: string;
  before?: Rec;
  after?: Rec;
  /** The seq of the previous change of the same key (-1: none made). */
  prevSeq: number;
  /** The next change of the same key, once made. */
  next?: Change;
}

/** Changes kept at least (more when the L3 has more names: twice as many as it has). */
const MIN_KEPT = 1024;

export class L3DnsLog {
  private v = 0;
  private syncs = 0;
  private recs = new Map<string, Rec>();
  private total = emptySum();
  /** Per host: the sum of the records it serves (the others' digest is total minus this). */
  private hostSums = new Map<string, DigestSum>();
  private changes: Change[] = [];
  private seqs = 0;
  /** Per key: its last change still kept (changesFor follows `next` from a key's first change since a version). */
  private lastOf = new Map<string, Change>();
  /** Changes leading to versions up to this one are no longer kept. */
  private dropped = 0;
  private synced?: readonly HostRecord[];

  get version(): number {
    return this.v;
  }

  /** Follow the L3's records now (a new version when they changed). O(1) for the list last synced. */
  sync(records: readonly HostRecord[]): void {
    if (records === this.synced) return;
    this.synced = records;
    const stamp = ++this.syncs;
    const v = this.v + 1;
    let changed = false;
    for (const { host, record } of records) {
      const key = record.name.toLowerCase();
      const was = this.recs.get(key);
      if (was && was.name === record.name && was.ip === record.ip && was.host === host) {
        was.seen = stamp;
        continue;
      }
      const now: Rec = { name: record.name, ip: record.ip, rec: record, host, h: recHash(record.name, record.ip), seen: stamp };
      this.recs.set(key, now);
      if (was) this.account(was, -1);
      this.account(now, 1);
      this.push(v, key, was, now);
      changed = true;
    }
    for (const [key, was] of this.recs) {
      if (was.seen === stamp) continue;
      this.recs.delete(key);
      this.account(was, -1);
      this.push(v, key, was, undefined);
      changed = true;
    }
    if (!changed) return;
    this.v = v;
    this.trim();
  }

  private push(v: number, key: string, before: Rec | undefined, after: Rec | undefined): void {
    const prev = this.lastOf.get(key);
    const c: Change = { v, seq: this.seqs++, key, before, after, prevSeq: prev?.seq ?? -1 };
    if (prev) prev.next = c;
    this.lastOf.set(key, c);
    this.changes.push(c);
  }

  private account(r: Rec, sign: 1 | -1): void {
    addTo(this.total, r.h, sign);
    let s = this.hostSums.get(r.host);
    if (!s) this.hostSums.set(r.host, (s = emptySum()));
    addTo(s, r.h, sign);
    if (s.n === 0) this.hostSums.delete(r.host);
  }

  /** The oldest half of the changes dropped once there are many (whole versions). */
  private trim(): void {
    const len = this.changes.length;
    if (len <= Math.max(MIN_KEPT, 2 * this.recs.size)) return;
    let cut = len >> 1;
    while (cut < len && this.changes[cut]!.v === this.changes[cut - 1]!.v) cut++;
    this.dropped = this.changes[cut - 1]!.v;
    for (let i = 0; i < cut; i++) {
      const c = this.changes[i]!;
      if (this.lastOf.get(c.key) === c) this.lastOf.delete(c.key);
    }
    this.changes = this.changes.slice(cut);
  }

  /** The digest of the records other hosts than `host` serve (what its flat/apply carries). */
  digestFor(host: string): string {
    return digestText(minus(this.total, this.hostSums.get(host)));
  }

  /** How many records other hosts than `host` serve. */
  countFor(host: string): number {
    return this.total.n - (this.hostSums.get(host)?.n ?? 0);
  }

  /**
   * What changed for `host` (records of other hosts) since version `from`: the records taken out
   * (as they were) and added, the records objects the lists gave (not to be changed); undefined
   * when those changes are no longer kept. O(changes).
   */
  changesFor(host: string, from: number): { remove: DnsRec[]; add: DnsRec[] } | undefined {
    if (from < this.dropped || from > this.v) return undefined;
    const cs = this.changes;
    let lo = 0;
    let hi = cs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cs[mid]!.v <= from) lo = mid + 1;
      else hi = mid;
    }
    // per name: as it was at `from` (its first change since), and as it is now (its last). Each
    // key's first change since `from` follows its chain to its last; a key's later changes are
    // passed over (issue 19: a Map of names per call was most of a periodic pass at 10,000 VMs,
    // 1,000 hosts each asking for thousands of changes)
    const remove: DnsRec[] = [];
    const add: DnsRec[] = [];
    if (lo >= cs.length) return { remove, add };
    const fromSeq = cs[lo]!.seq;
    for (let i = lo; i < cs.length; i++) {
      const c = cs[i]!;
      if (c.prevSeq >= fromSeq) continue;
      let last = c;
      while (last.next) last = last.next;
      const before = c.before;
      const after = last.after;
      const was = before !== undefined && before.host !== host ? before : undefined;
      const now = after !== undefined && after.host !== host ? after : undefined;
      if (was && now && was.name === now.name && was.ip === now.ip) continue;
      if (was) remove.push(was.rec);
      if (now) add.push(now.rec);
    }
    return { remove, add };
  }
}

/** What an agent acknowledged holding for a key. */
interface Ack {
  log: L3DnsLog;
  v: number;
  digest: string;
}

/** One controller's logs (per L3) and what each (host, L3) key's agent acknowledged. */
export class FlatDns {
  private logs = new Map<string, L3DnsLog>();
  private acks = new Map<string, Ack>();
  /** Raised by each periodic pass: a key whose last checked apply began before it is checked again. */
  private epoch = 0;
  /** Per key: the epoch its last checked apply (flat/apply `verify`) began in. */
  private checked = new Map<string, number>();

  log(l3Uuid: string): L3DnsLog {
    let l = this.logs.get(l3Uuid);
    if (!l) this.logs.set(l3Uuid, (l = new L3DnsLog()));
    return l;
  }

  /** The L3 is gone (or no longer flat). */
  forgetL3(l3Uuid: string): void {
    this.logs.delete(l3Uuid);
  }

  /** The periodic pass: every key's next apply is a check of the host (drift repair). */
  passNext(): void {
    this.epoch++;
  }

  get currentEpoch(): number {
    return this.epoch;
  }

  /**
   * `key`'s next apply is to check the host (flat/apply `verify`): none began since the last
   * pass (nor since this controller started).
   */
  checkDue(key: string): boolean {
    return this.checked.get(key) !== this.epoch;
  }

  /** `key`'s apply with `verify`, begun in `epoch`, succeeded. */
  checkedIn(key: string, epoch: number): void {
    if (epoch > (this.checked.get(key) ?? -1)) this.checked.set(key, epoch);
  }

  /**
   * The delta for `key`'s next apply, or undefined when the whole set is to be sent: nothing
   * acknowledged, the changes since are gone, or they are not smaller than the set.
   */
  delta(key: string, host: string, log: L3DnsLog): DnsDelta | undefined {
    const a = this.acks.get(key);
    const count = log.countFor(host);
    // no other host's names (one host serves the L3): the whole set is empty, nothing to compose
    if (!a || a.log !== log || count === 0) return undefined;
    const ch = log.changesFor(host, a.v);
    if (!ch || ch.remove.length + ch.add.length >= count) return undefined;
    return { base: a.digest, digest: log.digestFor(host), ...ch };
  }

  /** `key`'s agent answered holding `digest`, the records of `v`. */
  acknowledged(key: string, log: L3DnsLog, v: number, digest: string): void {
    this.acks.set(key, { log, v, digest });
  }

  /** What `key`'s agent holds is unknown: its next apply sends the whole set. */
  drop(key: string): void {
    this.acks.delete(key);
  }

  /** `key` is gone from its host (namespace deleted): nothing held, nothing to check. */
  forgetKey(key: string): void {
    this.acks.delete(key);
    this.checked.delete(key);
  }
}
