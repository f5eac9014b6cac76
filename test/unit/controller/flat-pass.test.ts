// The periodic flat pass (issue 19): each key's first apply after a pass asks the agent to check
// its host (flat/apply `verify`) and sends the other hosts' DNS records as an empty delta when the
// set rebuilt from the inventory has the digest the agent acknowledged, the changes when they are
// smaller than the set, the whole set when they are not, and the whole set in the same apply when
// the agent refuses the delta. applyFlat
// against a recording agent client that keeps each agent's set as the real agent does (wholeFlat).
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { applyFlat, flatKey } from '../../../controller/network/flat-reconcile.js';
import { FlatDns } from '../../../controller/network/flat-dns.js';
import type { CloudDeps } from '../../../controller/cloud/common.js';
import { wholeFlat } from '../../../vrouteragent/render/flat-desired.js';
import type { FlatApplyRequest } from '../../../vrouteragent/validate.js';
import { DnsSet } from '../../../shared/dns-set.js';

const uuid = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const [H1, H2, L2, L3] = [uuid(1), uuid(2), uuid(3), uuid(4)];

const res = (kind: string, u: string, extra: Record<string, unknown>): Resource => ({ kind, uuid: u, name: `${kind}-${u.slice(-4)}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra });

async function inventory(): Promise<InventoryStore> {
  const store = await openStore({ backend: 'sqlite', path: ':memory:' });
  for (const [i, h] of [H1, H2].entries()) await store.create(res('host', h, { status: 'Connected', managementIp: `127.0.0.${i + 1}`, _agents: { vrouteragent: { port: 7272, token: 't' } } }));
  await store.create(res('l2-network', L2, { bridgeName: 'br-test' }));
  await store.create(res('l3-network', L3, { parentUuid: L2, provider: 'Flat', networkServices: ['DHCP', 'DNS'] }));
  await store.create(res('ip-range', uuid(5), { parentUuid: L3, startIp: '10.0.0.2', endIp: '10.0.0.250', netmask: '255.255.255.0', gateway: '10.0.0.1', networkCidr: '10.0.0.0/24' }));
  for (let n = 1; n <= 6; n++) {
    const host = n % 2 ? H1 : H2;
    await store.create(res('vm-instance', uuid(100 + n), { name: `vm${n}`, state: 'Running', hostUuid: host, lastHostUuid: host, l3NetworkUuids: [L3], createDate: `2026-01-0${n}T00:00:00Z` }));
    await store.create(res('vm-nic', uuid(200 + n), { parentUuid: uuid(100 + n), vmInstanceUuid: uuid(100 + n), l3NetworkUuid: L3, ip: `10.0.0.${10 + n}`, mac: `fa:16:3e:00:00:${10 + n}`, deviceId: 0 }));
  }
  return store;
}

/** One flat/apply as sent, and whether the agent took it. */
interface Sent {
  url: string;
  verify: boolean;
  form: 'whole' | 'delta';
  records: number;
  error?: string;
}

/** Agents (by URL) holding their DNS sets as the real one does; every flat/apply recorded. */
function recordingAgents(): { client: CloudDeps['agentClient']; sent: Sent[]; held: Map<string, DnsSet> } {
  const held = new Map<string, DnsSet>();
  const sent: Sent[] = [];
  const client = {
    // as the real client: a request given as text (CallOptions.json) is that text
    call: (_cmd: unknown, ep: { url: string }, given: FlatApplyRequest, o?: { json?: string | readonly string[] }) => {
      const req = o?.json === undefined ? given : (JSON.parse(typeof o.json === 'string' ? o.json : o.json.join('')) as FlatApplyRequest);
      const delta = req.dns.delta;
      const s: Sent = { url: ep.url, verify: req.verify === true, form: delta ? 'delta' : 'whole', records: delta ? delta.add.length + delta.remove.length : req.dns.records!.length };
      sent.push(s);
      try {
        const w = wholeFlat(req, held.get(ep.url));
        const set = w.set ?? DnsSet.of(w.want.dns.records);
        held.set(ep.url, set);
        return Promise.resolve({ namespace: { l3NetworkUuid: L3, namespace: 'ns', hostVeth: 'h', nsVeth: 'n', metadata: false }, changed: true, releasedLeases: 0, dnsDigest: set.digest });
      } catch (e) {
        s.error = (e as { code?: string }).code;
        return Promise.reject(e);
      }
    },
  };
  return { client: client as unknown as CloudDeps['agentClient'], sent, held };
}

describe('flat periodic pass: a check of each host, the DNS records as an empty delta when unchanged', () => {
  const URL1 = 'http://127.0.0.1:7272';
  let store: InventoryStore;
  beforeEach(async () => {
    store = await inventory();
  });
  afterEach(() => store.close());

  it('a pass with the acknowledged digest sends an empty delta with verify; between passes no verify', async () => {
    const { client, sent, held } = recordingAgents();
    const d = { store, agentClient: client } as unknown as CloudDeps;
    const dns = new FlatDns();
    const key = flatKey(H1, L3);
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(sent.map((s) => [s.form, s.verify, s.records]), [['whole', true, 3]], 'the first apply since the start: whole, checked');
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(sent[1], { url: URL1, verify: false, form: 'delta', records: 0 }, 'a mark between passes: no check');
    dns.passNext();
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(sent[2], { url: URL1, verify: true, form: 'delta', records: 0 }, 'the pass: an empty delta, checked');
    await applyFlat(d, key, undefined, dns);
    assert.equal(sent[3]!.verify, false, 'one check per pass');
    assert.deepEqual(held.get(URL1)!.records().map((r) => r.name).sort(), ['vm2', 'vm4', 'vm6'], "the agent holds the other host's names");
  });

  it('a pass after the records changed sends the changes (the whole set when not smaller); an agent that lost its set refuses the empty delta and gets the whole set in the same apply', async () => {
    const { client, sent, held } = recordingAgents();
    const d = { store, agentClient: client } as unknown as CloudDeps;
    const dns = new FlatDns();
    const key = flatKey(H1, L3);
    await applyFlat(d, key, undefined, dns);
    // a VM of the other host renamed, its key not applied yet when the pass comes
    const vm = (await store.get(uuid(102)))!;
    await store.update(vm.uuid, { name: 'renamed' });
    dns.passNext();
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(sent[1], { url: URL1, verify: true, form: 'delta', records: 2 }, 'one record out, one in');
    assert.deepEqual(held.get(URL1)!.records().map((r) => r.name).sort(), ['renamed', 'vm4', 'vm6']);
    // every record of the other host changed: as many changes as the set, the whole set
    for (const n of [102, 104, 106]) await store.update(uuid(n), { name: `again${n}` });
    dns.passNext();
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(sent[2], { url: URL1, verify: true, form: 'whole', records: 3 });
    assert.deepEqual(held.get(URL1)!.records().map((r) => r.name).sort(), ['again102', 'again104', 'again106']);
    // the agent restarts without its state; the next pass's empty delta is refused, then whole
    held.delete(URL1);
    dns.passNext();
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(
      sent.slice(3).map((s) => [s.form, s.verify, s.records, s.error]),
      [
        ['delta', true, 0, 'DNS_BASE_MISMATCH'],
        ['whole', true, 3, undefined],
      ],
    );
    assert.deepEqual(held.get(URL1)!.records().map((r) => r.name).sort(), ['again102', 'again104', 'again106']);
    await applyFlat(d, key, undefined, dns);
    assert.deepEqual(sent[5], { url: URL1, verify: false, form: 'delta', records: 0 }, 'back on deltas');
  });
});
