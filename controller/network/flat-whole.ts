// A flat/apply with the whole DNS set, as JSON text (issue 19). A host's whole set is the L3's
// named records but its own: the same bulk for every host of the L3, each first apply of a
// host serialized it again (2,000 creates over 1,000 hosts: ~1,300 whole sets of up to 2,000
// records, 6 % of the controller's busy time in JSON.stringify). The records are serialized
// once per list (flat-reconcile hands out one list per change of the L3) and each host's set is
// the list's text with the host's own records cut out.
import type { HostRecord } from './flat-dns.js';
import type { DnsDelta, DnsRec } from '../../shared/dns-set.js';

interface ListText {
  /** The records' JSON, comma separated (no brackets). */
  text: string;
  /** Where record i's JSON starts and ends in `text`. */
  start: number[];
  end: number[];
}

const texts = new WeakMap<readonly HostRecord[], ListText>();
/**
 * Each record's JSON: a list made after a change holds the same record objects for the NICs that
 * did not change (flat-reconcile's layout), so only the new ones are serialized (issue 19: every
 * create changes the L3, and its next whole set serialized every record again, ~0.35 µs each).
 * Records are never changed once made.
 */
const recordTexts = new WeakMap<DnsRec, string>();

function recText(r: DnsRec): string {
  let t = recordTexts.get(r);
  if (t === undefined) recordTexts.set(r, (t = JSON.stringify(r)));
  return t;
}

function recordText(r: HostRecord): string {
  return recText(r.record);
}

function textOf(records: readonly HostRecord[]): ListText {
  const hit = texts.get(records);
  if (hit) return hit;
  const parts = records.map(recordText);
  const start: number[] = [];
  const end: number[] = [];
  let at = 0;
  for (const p of parts) {
    start.push(at);
    end.push(at + p.length);
    at += p.length + 1;
  }
  const t: ListText = { text: parts.join(','), start, end };
  texts.set(records, t);
  return t;
}

/**
 * The JSON array of the records hosts other than `host` serve, in list order (as JSON.stringify of
 * them would be). `own`: how many records of the list `host` serves, when the caller knows
 * (flat-reconcile's layout): they are looked for from the end, where a host's newest VMs are (the
 * list is in creation order), and the rest of the list is not walked. Issue 19: a host's first
 * apply carries the whole set, and at 10,000 VMs over 1,000 hosts those were ~7.4 M records
 * walked one by one (~120 ns each: cold objects) to find a handful of the host's own.
 */
export function recordsJson(records: readonly HostRecord[], host: string, own?: number): string {
  return `[${recordsParts(records, host, own).join(',')}]`;
}

/** recordsJson's array without its brackets, as runs of the list's text to be joined with ','. */
function recordsParts(records: readonly HostRecord[], host: string, own?: number): string[] {
  const t = textOf(records);
  // the host's records' places, in list order
  const mine: number[] = [];
  if (own === undefined) {
    for (let i = 0; i < records.length; i++) if (records[i]!.host === host) mine.push(i);
  } else {
    for (let i = records.length - 1, left = own; i >= 0 && left > 0; i--) {
      if (records[i]!.host === host) {
        mine.push(i);
        left--;
      }
    }
    mine.reverse();
  }
  if (mine.length === 0) return records.length ? [t.text] : [];
  // the runs of other hosts' records between them are slices of the list's text
  const runs: string[] = [];
  let from = 0;
  for (const m of mine) {
    if (m > from) runs.push(t.text.slice(t.start[from], t.end[m - 1]));
    from = m + 1;
  }
  if (from < records.length) runs.push(t.text.slice(t.start[from], t.end[records.length - 1]));
  return runs;
}

type FlatReq = { dns: { forwarders: string[] } } & Record<string, unknown>;

/** `req`'s JSON text without `dns`, left open for a `dns` field: `{…,"dns":{`. */
function openWithDns(req: FlatReq): string {
  const { dns: _dns, ...rest } = req;
  const head = JSON.stringify(rest);
  return `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"dns":{`;
}

/**
 * The JSON text of `req` with `dns` as the records other hosts than `host` serve and `req`'s
 * forwarders (what JSON.stringify of flat-reconcile's withRecords gives, field order aside), in
 * parts (AgentClient CallOptions.json): the runs of the list's text are slices of it, never
 * joined into a new string per host (issue 19: at 10,000 VMs each late host's first apply made a
 * ~0.5 MB string, flattened again for its byte length and the write). `own`: as recordsJson's.
 */
export function wholeParts(req: FlatReq, records: readonly HostRecord[], host: string, own?: number): string[] {
  const out = [`${openWithDns(req)}"records":[`];
  const runs = recordsParts(records, host, own);
  for (let i = 0; i < runs.length; i++) {
    if (i > 0) out.push(',');
    out.push(runs[i]!);
  }
  out.push(`],"forwarders":${JSON.stringify(req.dns.forwarders)}}}`);
  return out;
}

/**
 * The JSON text of `req` with `dns` as `req`'s forwarders and `delta` (what JSON.stringify of
 * them gives, field order aside), in parts. The delta's records are the lists' record objects
 * (flat-dns changesFor), each serialized once and kept (issue 19: at 10,000 VMs a periodic pass
 * sent ~2.6 M records in deltas, each serialized again per host, most of the agent client's
 * JSON.stringify time).
 */
export function deltaParts(req: FlatReq, delta: DnsDelta): string[] {
  const remove = delta.remove.map(recText).join(',');
  const add = delta.add.map(recText).join(',');
  return [
    `${openWithDns(req)}"forwarders":${JSON.stringify(req.dns.forwarders)},"delta":{"base":${JSON.stringify(delta.base)},"digest":${JSON.stringify(delta.digest)},"remove":[`,
    remove,
    '],"add":[',
    add,
    ']}}}',
  ];
}
