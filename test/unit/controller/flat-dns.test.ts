// flat/apply's DNS delta, the controller's side (controller/network/flat-dns.ts): an L3's named
// records followed list to list as versions; a host is sent the changes since what its agent
// acknowledged, and applying them to what it holds gives exactly the other hosts' records;
// the whole set when nothing is acknowledged or when the changes are gone or not smaller than
// the set; acknowledgements survive a periodic pass (its check sends an empty delta when nothing changed).
import assert from 'node:assert/strict';
import { FlatDns, L3DnsLog, type HostRecord } from '../../../controller/network/flat-dns.js';
import { DnsSet, digestOf, type DnsRec } from '../../../shared/dns-set.js';

const HOSTS = ['h1', 'h2', 'h3'];

/** A random L3: `n` names spread over the hosts. */
function randomL3(rand: () => number, n: number, tag: string): HostRecord[] {
  const out: HostRecord[] = [];
  for (let i = 0; i < n; i++) out.push({ host: HOSTS[Math.floor(rand() * HOSTS.length)]!, record: { name: `${tag}${i}`, ip: `10.0.${i >> 8}.${i & 0xff}` } });
  return out;
}

/** The list after random changes: removed, moved to another host, readdressed, renamed in case, added. */
function mutate(rand: () => number, list: HostRecord[], next: { i: number }): HostRecord[] {
  const out: HostRecord[] = [];
  for (const r of list) {
    const p = rand();
    if (p < 0.05) continue;
    if (p < 0.1) out.push({ host: HOSTS[Math.floor(rand() * HOSTS.length)]!, record: r.record });
    else if (p < 0.13) out.push({ host: r.host, record: { name: r.record.name, ip: `10.9.${Math.floor(rand() * 255)}.${Math.floor(rand() * 255)}` } });
    else if (p < 0.15) out.push({ host: r.host, record: { name: r.record.name.toUpperCase(), ip: r.record.ip } });
    else out.push(r);
  }
  const adds = Math.floor(rand() * 5);
  for (let k = 0; k < adds; k++) {
    const i = next.i++;
    out.push({ host: HOSTS[Math.floor(rand() * HOSTS.length)]!, record: { name: `new${i}`, ip: `10.5.${i >> 8}.${i & 0xff}` } });
  }
  return out;
}

const others = (list: HostRecord[], host: string): DnsRec[] => list.filter((r) => r.host !== host).map((r) => r.record);
const byName = (rs: DnsRec[]): DnsRec[] => [...rs].sort((a, b) => (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : 1));

function seeded(seed: number): () => number {
  let s = seed;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

describe('flat DNS log (the controller side of the delta)', () => {
  it('per host: the digest of the other hosts records, kept in step with the lists', () => {
    const rand = seeded(7);
    const log = new L3DnsLog();
    let list = randomL3(rand, 200, 'vm');
    const next = { i: 0 };
    for (let step = 0; step < 30; step++) {
      log.sync(list);
      for (const h of HOSTS) {
        assert.equal(log.digestFor(h), digestOf(others(list, h)), `step ${step}, ${h}`);
        assert.equal(log.countFor(h), others(list, h).length);
      }
      list = mutate(rand, list, next);
    }
  });

  it('the changes since any acknowledged version, applied to what the agent holds, give the other hosts records exactly', () => {
    const rand = seeded(42);
    const log = new L3DnsLog();
    let list = randomL3(rand, 150, 'vm');
    log.sync(list);
    // each host's agent: the set it holds and the version it was acknowledged at
    const agents = new Map(HOSTS.map((h) => [h, { set: DnsSet.of(others(list, h)), v: log.version }]));
    const next = { i: 0 };
    for (let step = 0; step < 60; step++) {
      list = mutate(rand, list, next);
      log.sync(list);
      // a random host applies (the others fall further behind)
      const h = HOSTS[Math.floor(rand() * HOSTS.length)]!;
      const a = agents.get(h)!;
      const ch = log.changesFor(h, a.v)!;
      a.set.applyDelta({ base: a.set.digest, digest: log.digestFor(h), ...ch });
      a.v = log.version;
      assert.deepEqual(byName(a.set.records()), byName(others(list, h)), `step ${step}, ${h}`);
    }
  });

  it('the changes since every version still kept are the net difference between that version and now (across trims)', () => {
    const rand = seeded(99);
    const log = new L3DnsLog();
    let list = randomL3(rand, 150, 'vm');
    const next = { i: 0 };
    // each version's records by lower-case name
    const snaps = new Map<number, Map<string, HostRecord>>();
    const snap = (l: HostRecord[]): Map<string, HostRecord> => new Map(l.map((r) => [r.record.name.toLowerCase(), r]));
    const norm = (rs: DnsRec[]): string[] => rs.map((r) => `${r.name} ${r.ip}`).sort();
    let checked = 0;
    let gone = 0;
    for (let step = 0; step < 250; step++) {
      log.sync(list);
      snaps.set(log.version, snap(list));
      if (step % 10 === 9) {
        const now = snap(list);
        for (const [v, then] of snaps) {
          for (const h of HOSTS) {
            const ch = log.changesFor(h, v);
            if (!ch) {
              gone++;
              continue;
            }
            const remove: DnsRec[] = [];
            const add: DnsRec[] = [];
            for (const k of new Set([...then.keys(), ...now.keys()])) {
              const a = then.get(k);
              const b = now.get(k);
              const was = a && a.host !== h ? a.record : undefined;
              const is = b && b.host !== h ? b.record : undefined;
              if (was && is && was.name === is.name && was.ip === is.ip) continue;
              if (was) remove.push(was);
              if (is) add.push(is);
            }
            assert.deepEqual({ remove: norm(ch.remove), add: norm(ch.add) }, { remove: norm(remove), add: norm(add) }, `step ${step}, from ${v}, ${h}`);
            checked++;
          }
        }
      }
      list = mutate(rand, list, next);
    }
    // both kinds were seen: kept versions and dropped ones
    assert.ok(checked > 100 && gone > 100, `${checked} checked, ${gone} gone`);
  });

  it('the same list again is no new version; a list of the same records is no change', () => {
    const log = new L3DnsLog();
    const list = randomL3(seeded(1), 20, 'vm');
    log.sync(list);
    const v = log.version;
    log.sync(list);
    log.sync(list.map((r) => ({ ...r })));
    assert.equal(log.version, v);
    assert.deepEqual(log.changesFor('h1', v), { remove: [], add: [] });
  });

  it('changes no longer kept: undefined (the whole set is sent)', () => {
    const log = new L3DnsLog();
    let list: HostRecord[] = [{ host: 'h1', record: { name: 'a', ip: '10.0.0.1' } }];
    log.sync(list);
    const v0 = log.version;
    // readdress one name of h2 over and over: more than 1,024 changes
    for (let i = 0; i < 1500; i++) {
      list = [list[0]!, { host: 'h2', record: { name: 'b', ip: `10.1.${i >> 8}.${i & 0xff}` } }];
      log.sync(list);
    }
    assert.equal(log.changesFor('h1', v0), undefined);
    assert.deepEqual(log.changesFor('h1', log.version - 1)?.add, [{ name: 'b', ip: '10.1.5.219' }]);
  });

  it('FlatDns: the whole set until acknowledged, a delta after, the whole set again after a drop or big changes', () => {
    const dns = new FlatDns();
    const log = dns.log('l3');
    let list: HostRecord[] = Array.from({ length: 20 }, (_, i) => ({ host: i % 2 ? 'h1' : 'h2', record: { name: `vm${i}`, ip: `10.0.0.${i + 10}` } }));
    log.sync(list);
    assert.equal(dns.delta('h1/l3', 'h1', log), undefined, 'nothing acknowledged');
    dns.acknowledged('h1/l3', log, log.version, log.digestFor('h1'));
    list = [...list, { host: 'h2', record: { name: 'new', ip: '10.0.1.1' } }];
    log.sync(list);
    const d = dns.delta('h1/l3', 'h1', log)!;
    assert.deepEqual(d.add, [{ name: 'new', ip: '10.0.1.1' }]);
    assert.deepEqual(d.remove, []);
    assert.equal(d.digest, digestOf(others(list, 'h1')));
    dns.drop('h1/l3');
    assert.equal(dns.delta('h1/l3', 'h1', log), undefined, 'dropped');
    // changes as many as the set: whole
    dns.acknowledged('h1/l3', log, log.version, log.digestFor('h1'));
    log.sync(list.map((r) => (r.host === 'h2' ? { ...r, record: { ...r.record, ip: r.record.ip.replace('10.0.', '10.7.') } } : r)));
    assert.equal(dns.delta('h1/l3', 'h1', log), undefined, 'every record of the others changed');
  });

  it('FlatDns checks: due once per pass (and after a start); acknowledgements survive a pass: an empty delta when the rebuilt set has the acknowledged digest', () => {
    const dns = new FlatDns();
    const log = dns.log('l3');
    const list: HostRecord[] = Array.from({ length: 20 }, (_, i) => ({ host: i % 2 ? 'h1' : 'h2', record: { name: `vm${i}`, ip: `10.0.0.${i + 10}` } }));
    log.sync(list);
    assert.equal(dns.checkDue('h1/l3'), true, 'never checked since the controller started');
    dns.checkedIn('h1/l3', dns.currentEpoch);
    assert.equal(dns.checkDue('h1/l3'), false);
    const held = log.digestFor('h1');
    dns.acknowledged('h1/l3', log, log.version, held);
    // an apply that began before a pass and ended after it does not count for the pass
    const before = dns.currentEpoch;
    dns.passNext();
    dns.checkedIn('h1/l3', before);
    assert.equal(dns.checkDue('h1/l3'), true, 'the pass raised the epoch');
    assert.equal(dns.checkDue('h2/l3'), true);
    // the pass rebuilds the list from the inventory: a new list with the same records
    log.sync(list.map((r) => ({ host: r.host, record: { ...r.record } })));
    assert.deepEqual(dns.delta('h1/l3', 'h1', log), { base: held, digest: held, remove: [], add: [] }, 'same digest: an empty delta on the acknowledged base');
    // a record of its own host changed: the other hosts' set (and digest) is unchanged
    log.sync([...list, { host: 'h1', record: { name: 'own', ip: '10.0.1.2' } }]);
    assert.deepEqual(dns.delta('h1/l3', 'h1', log), { base: held, digest: held, remove: [], add: [] });
    // forgetKey: nothing held and the next apply checks
    dns.checkedIn('h1/l3', dns.currentEpoch);
    dns.forgetKey('h1/l3');
    assert.equal(dns.checkDue('h1/l3'), true);
    assert.equal(dns.delta('h1/l3', 'h1', log), undefined);
  });
});
