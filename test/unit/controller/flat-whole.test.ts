// flat-whole.ts (issue 19): a host's whole DNS set cut from the L3 records' text serialized once
// must be exactly what serializing the other hosts' records gives, whichever host asks and
// wherever its own records sit in the list.
import assert from 'node:assert/strict';
import { deltaParts, recordsJson, wholeParts } from '../../../controller/network/flat-whole.js';
import type { HostRecord } from '../../../controller/network/flat-dns.js';

const rec = (host: string, name: string, ip: string): HostRecord => ({ host, record: { name, ip } });
/** What withRecords + JSON.stringify send: the other hosts' records in list order. */
const expected = (records: readonly HostRecord[], host: string): string => JSON.stringify(records.filter((r) => r.host !== host).map((r) => r.record));

describe('flat whole DNS set as text', () => {
  // h1's records first, in the middle and last; h3 has one; h4 none
  const records: HostRecord[] = [
    rec('h1', 'a', '10.0.0.1'),
    rec('h2', 'b', '10.0.0.2'),
    rec('h2', 'c', '10.0.0.3'),
    rec('h1', 'd', '10.0.0.4'),
    rec('h3', 'e-x', '10.0.0.5'),
    rec('h2', 'f', '10.0.0.6'),
    rec('h1', 'g', '10.0.0.7'),
  ];

  it("is each host's other-host records, byte for byte, from one list's text", () => {
    for (const host of ['h1', 'h2', 'h3', 'h4']) assert.equal(recordsJson(records, host), expected(records, host), host);
    // asked again (the list's text cached): the same
    assert.equal(recordsJson(records, 'h1'), '[{"name":"b","ip":"10.0.0.2"},{"name":"c","ip":"10.0.0.3"},{"name":"e-x","ip":"10.0.0.5"},{"name":"f","ip":"10.0.0.6"}]');
  });

  it('with the count of the host\'s own records (looked for from the end): the same text', () => {
    for (const host of ['h1', 'h2', 'h3', 'h4']) {
      const own = records.filter((r) => r.host === host).length;
      assert.equal(recordsJson(records, host, own), expected(records, host), host);
    }
    // random lists: every host, own records anywhere (first, last, adjacent)
    let s = 5;
    const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let round = 0; round < 200; round++) {
      const n = Math.floor(rand() * 12);
      const list = Array.from({ length: n }, (_, i) => rec(`h${Math.floor(rand() * 3)}`, `n${round}-${i}`, `10.2.${round}.${i}`));
      for (const host of ['h0', 'h1', 'h2', 'h3']) {
        const own = list.filter((r) => r.host === host).length;
        assert.equal(recordsJson(list, host, own), expected(list, host), `${round} ${host}`);
        const req = { network: { a: 1 }, dns: { forwarders: ['1.1.1.1'] } };
        const text = wholeParts(req, list, host, own).join('');
        assert.equal(text, wholeParts(req, list, host).join(''));
        assert.deepEqual(JSON.parse(text), { network: { a: 1 }, dns: { records: list.filter((r) => r.host !== host).map((r) => r.record), forwarders: ['1.1.1.1'] } });
      }
    }
  });

  it('a record held by the next list (the same object) is not serialized again', () => {
    const l1 = [rec('h1', 'p', '10.1.0.1'), rec('h2', 'q', '10.1.0.2')];
    assert.equal(recordsJson(l1, 'h9'), expected(l1, 'h9'));
    const l2 = [...l1, rec('h1', 'r', '10.1.0.3')];
    const orig = JSON.stringify;
    let n = 0;
    JSON.stringify = ((...a: Parameters<typeof orig>) => (n++, orig(...a))) as typeof orig;
    let got: string;
    try {
      got = recordsJson(l2, 'h2');
    } finally {
      JSON.stringify = orig;
    }
    assert.equal(n, 1, 'only the new record');
    assert.equal(got, expected(l2, 'h2'));
  });

  it('handles an empty list, one host serving all, and a single record', () => {
    assert.equal(recordsJson([], 'h1'), '[]');
    const mine = [rec('h1', 'a', '10.0.0.1'), rec('h1', 'b', '10.0.0.2')];
    assert.equal(recordsJson(mine, 'h1'), '[]');
    assert.equal(recordsJson(mine, 'h2'), expected(mine, 'h2'));
    const one = [rec('h2', 'only', '10.0.0.9')];
    assert.equal(recordsJson(one, 'h1'), '[{"name":"only","ip":"10.0.0.9"}]');
    assert.equal(recordsJson(one, 'h2'), '[]');
  });

  it('a new list (the L3 changed) is serialized anew, not served from the old one', () => {
    const next = [...records.slice(0, 3), rec('h3', 'z', '10.0.0.99')];
    assert.equal(recordsJson(next, 'h1'), expected(next, 'h1'));
    assert.equal(recordsJson(records, 'h1'), expected(records, 'h1'));
  });

  it('the request text parses to the request with the whole set (other fields kept, verify too)', () => {
    const req = { network: { l3NetworkUuid: 'l3', cidr: '10.0.0.0/24' }, nics: [{ ip: '10.0.0.1', mac: 'fa:00:00:00:00:01' }], dns: { forwarders: ['1.1.1.1'] }, verify: true };
    const text = wholeParts(req, records, 'h2').join('');
    assert.deepEqual(JSON.parse(text), { ...req, dns: { records: records.filter((r) => r.host !== 'h2').map((r) => r.record), forwarders: ['1.1.1.1'] } });
    // nothing but dns: still valid JSON
    assert.deepEqual(JSON.parse(wholeParts({ dns: { forwarders: [] } }, records, 'h4').join('')), { dns: { records: records.map((r) => r.record), forwarders: [] } });
  });

  it('a delta as text parts: what JSON.stringify of the request with the delta gives (records serialized once)', () => {
    const req = { network: { a: 1 }, nics: [{ mac: 'm', ip: '10.0.0.9' }], verify: true, dns: { forwarders: ['1.1.1.1'] } };
    const r1 = { name: 'a"b', ip: '10.0.0.1' };
    const r2 = { name: 'c', ip: '10.0.0.2' };
    for (const delta of [
      { base: 'B', digest: 'D', remove: [r1], add: [r2, { name: 'é', ip: '10.0.0.3' }] },
      { base: 'B', digest: 'D', remove: [], add: [] },
      { base: 'B', digest: 'D', remove: [r1, r2], add: [] },
    ]) {
      const text = deltaParts(req, delta).join('');
      assert.deepEqual(JSON.parse(text), { ...req, dns: { forwarders: ['1.1.1.1'], delta } });
    }
  });
});
