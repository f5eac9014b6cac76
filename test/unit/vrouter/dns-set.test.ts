// flat/apply's DNS delta, the agent's side (shared/dns-set.ts): an order-independent digest kept
// in O(1) per record, a delta checked against the base held and the digest it must produce, and
// nothing changed when either check fails.
import assert from 'node:assert/strict';
import { DNS_BASE_MISMATCH, DnsSet, digestAfter, digestOf, parseDigest, type DnsRec } from '../../../shared/dns-set.js';
import { wholeFlat } from '../../../vrouteragent/render/flat-desired.js';
import type { FlatApplyRequest } from '../../../vrouteragent/validate.js';
import { TStackError } from '../../../shared/errors.js';

const rec = (i: number, ip = `10.0.${i >> 8}.${i & 0xff}`): DnsRec => ({ name: `vm-${i}`, ip });
const recs = (n: number): DnsRec[] => Array.from({ length: n }, (_, i) => rec(i + 10));

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as TStackError).code;
  }
  return 'no error';
};

describe('DNS record set digest and delta (flat/apply)', () => {
  it('the digest ignores order, counts the records, and sees a changed address or letter case', () => {
    const a = recs(50);
    const shuffled = [...a].reverse();
    assert.equal(digestOf(a), digestOf(shuffled));
    assert.equal(digestOf(a), DnsSet.of(shuffled).digest);
    assert.match(digestOf(a), /^50-[0-9a-f]{16}$/);
    assert.equal(digestOf([]), '0-0000000000000000');
    const moved = a.map((r, i) => (i === 7 ? { ...r, ip: '10.9.9.9' } : r));
    assert.notEqual(digestOf(moved), digestOf(a));
    const upper = a.map((r, i) => (i === 7 ? { ...r, name: r.name.toUpperCase() } : r));
    assert.notEqual(digestOf(upper), digestOf(a));
    // two records swapping addresses is a different set too
    const swapped = a.map((r, i) => (i === 1 ? { ...r, ip: a[2]!.ip } : i === 2 ? { ...r, ip: a[1]!.ip } : r));
    assert.notEqual(digestOf(swapped), digestOf(a));
    assert.deepEqual(parseDigest(digestOf(a))?.n, 50);
    assert.equal(parseDigest('50-xyz'), undefined);
  });

  it('a delta makes the held set the target set; its digest is the whole set computed afresh', () => {
    const from = recs(20);
    const held = DnsSet.of(from);
    const to = [...from.filter((r) => r.name !== 'vm-12' && r.name !== 'vm-13'), { name: 'vm-13', ip: '10.1.1.1' }, rec(99)];
    const d = { base: held.digest, digest: digestOf(to), remove: [rec(12), rec(13)], add: [{ name: 'vm-13', ip: '10.1.1.1' }, rec(99)] };
    assert.equal(digestAfter(d), d.digest, 'digest arithmetic alone gives the result (the simulator checks so)');
    held.applyDelta(d);
    assert.equal(held.digest, digestOf(to));
    assert.deepEqual(
      held.records().sort((x, y) => x.name.localeCompare(y.name)),
      to.sort((x, y) => x.name.localeCompare(y.name)),
    );
    assert.equal(held.get('VM-13')?.ip, '10.1.1.1', 'names are case-insensitive');
  });

  it('DNS_BASE_MISMATCH and the set unchanged: another base, a record not held as given, a name held already, a wrong result', () => {
    const held = DnsSet.of(recs(10));
    const before = held.digest;
    const ok = { base: before, remove: [rec(10)], add: [rec(50)] };
    const target = digestOf([...recs(10).slice(1), rec(50)]);
    assert.equal(codeOf(() => held.applyDelta({ ...ok, base: digestOf(recs(9)), digest: target })), DNS_BASE_MISMATCH);
    assert.equal(codeOf(() => held.applyDelta({ ...ok, remove: [{ name: 'vm-10', ip: '10.9.9.9' }], digest: target })), DNS_BASE_MISMATCH);
    assert.equal(codeOf(() => held.applyDelta({ ...ok, remove: [rec(77)], digest: target })), DNS_BASE_MISMATCH);
    assert.equal(codeOf(() => held.applyDelta({ ...ok, add: [rec(50), rec(11)], digest: target })), DNS_BASE_MISMATCH);
    assert.equal(codeOf(() => held.applyDelta({ ...ok, digest: digestOf(recs(10)) })), DNS_BASE_MISMATCH);
    assert.equal(codeOf(() => held.applyDelta({ ...ok, add: [rec(50), rec(50)], digest: target })), 'INVALID_ARGUMENT');
    assert.equal(held.digest, before, 'nothing changed');
    assert.equal(held.size, 10);
    // and the good one still applies
    held.applyDelta({ ...ok, digest: target });
    assert.equal(held.digest, target);
  });

  it('wholeFlat: a delta on the set held (held untouched), none held or both forms refused', () => {
    const network = { l3NetworkUuid: '00000000-0000-4000-8000-000000000001', bridge: 'br0', cidr: '10.0.0.0/16', dhcpServerIp: '10.0.0.2' };
    const held = DnsSet.of(recs(5));
    const req: FlatApplyRequest = { network, nics: [], dns: { forwarders: [], delta: { base: held.digest, digest: digestOf([...recs(5), rec(60)]), remove: [], add: [rec(60)] } } };
    const { want, set } = wholeFlat(req, held);
    assert.equal(want.dns.records.length, 6);
    assert.equal('delta' in want.dns, false);
    assert.equal(set?.digest, digestOf([...recs(5), rec(60)]));
    assert.equal(held.size, 5, 'the held set is not changed by a request that may still be refused');
    assert.equal(codeOf(() => wholeFlat(req, undefined)), DNS_BASE_MISMATCH);
    assert.equal(codeOf(() => wholeFlat({ ...req, dns: { ...req.dns, records: [] } }, held)), 'INVALID_ARGUMENT');
    assert.equal(codeOf(() => wholeFlat({ network, nics: [], dns: { forwarders: [] } }, held)), 'INVALID_ARGUMENT');
  });
});
