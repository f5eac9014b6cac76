// What a controller knows a host to have (controller/host/known.ts): kept only while the host is
// the one it was learned on, for at most the drift period, and never from an overtaken answer.
import assert from 'node:assert/strict';
import { HostKnowledge } from '../../../controller/host/known.js';
import type { Resource } from '../../../controller/store/types.js';

const agents = (kvm: string, storage = 's1', vrouter = 'v1') => ({
  kvmagent: { port: 1, token: 't', startedAt: kvm },
  storageagent: { port: 2, token: 't', startedAt: storage },
  vrouteragent: { port: 3, token: 't', startedAt: vrouter },
});
const host = (patch: Partial<Resource> = {}): Resource =>
  ({ uuid: 'h1', kind: 'host', name: 'h1', status: 'Connected', bootId: 'b1', lastConnectDate: '2026-01-01T00:00:00Z', _agents: agents('k1'), ...patch }) as Resource;

describe('host/known', () => {
  let now = 0;
  const k = (): HostKnowledge => new HostKnowledge(60_000, () => now);

  it('a fact learned from an answer is known for the same host until the drift period ends', () => {
    now = 1_000;
    const kn = k();
    assert.equal(kn.get(host(), 'bridge:l2'), undefined);
    kn.set(host(), 'bridge:l2', 'br_eth0', kn.begin('h1', 'bridge:l2'));
    assert.equal(kn.get(host(), 'bridge:l2'), 'br_eth0');
    assert.equal(kn.get(host({ uuid: 'h2' }), 'bridge:l2'), undefined, 'another host knows nothing');
    now += 59_999;
    assert.equal(kn.get(host(), 'bridge:l2'), 'br_eth0');
    now += 1;
    assert.equal(kn.get(host(), 'bridge:l2'), undefined, 'asked again once per drift period');
  });

  for (const [what, changed] of [
    ['kvmagent restarted', { _agents: agents('k2') }],
    ['storageagent restarted', { _agents: agents('k1', 's2') }],
    ['host rebooted', { bootId: 'b2' }],
    ['host reconnected', { lastConnectDate: '2026-01-01T00:05:00Z' }],
    ['host disconnected', { status: 'Disconnected' }],
  ] as const) {
    it(`forgotten when the host record says: ${what}`, () => {
      now = 0;
      const kn = k();
      kn.set(host(), 'image:ps:img', { path: '/x' }, kn.begin('h1', 'image:ps:img'));
      assert.deepEqual(kn.get(host(), 'image:ps:img'), { path: '/x' });
      assert.equal(kn.get(host(changed), 'image:ps:img'), undefined);
      // and not back when the record reads as before again (it was dropped, not hidden)
      assert.equal(kn.get(host(), 'image:ps:img'), undefined);
    });
  }

  it('an answer learned on a host record read before a restart teaches nothing after it', () => {
    now = 0;
    const kn = k();
    const before = host();
    const t = kn.begin('h1', 'bridge:l2');
    // the tracker noticed a kvmagent restart while the request was out
    kn.set(before, 'bridge:l2', 'br', t);
    assert.equal(kn.get(host({ _agents: agents('k2') }), 'bridge:l2'), undefined);
  });

  it('an answer overtaken by a later request (or a delete) is not kept', () => {
    now = 0;
    const kn = k();
    const t1 = kn.begin('h1', 'bridge:l2');
    const t2 = kn.begin('h1', 'bridge:l2');
    kn.set(host(), 'bridge:l2', 'old', t1);
    assert.equal(kn.get(host(), 'bridge:l2'), undefined, 'the first answer was overtaken');
    kn.set(host(), 'bridge:l2', 'new', t2);
    assert.equal(kn.get(host(), 'bridge:l2'), 'new');
    const t3 = kn.begin('h1', 'bridge:l2');
    assert.equal(kn.get(host(), 'bridge:l2'), undefined, 'unknown while a request is out');
    kn.begin('h1', 'bridge:l2'); // a delete began
    kn.set(host(), 'bridge:l2', 'made', t3);
    assert.equal(kn.get(host(), 'bridge:l2'), undefined);
  });

  it('forget: one fact, a prefix, or the whole host; nothing kept with a zero drift period', () => {
    now = 0;
    const kn = k();
    for (const key of ['bridge:a', 'bridge:b', 'image:p:i']) kn.set(host(), key, key, kn.begin('h1', key));
    kn.forget('h1', 'bridge:a');
    assert.equal(kn.get(host(), 'bridge:a'), undefined);
    assert.equal(kn.get(host(), 'bridge:b'), 'bridge:b');
    kn.forgetPrefix('h1', 'bridge:');
    assert.equal(kn.get(host(), 'bridge:b'), undefined);
    assert.equal(kn.get(host(), 'image:p:i'), 'image:p:i');
    kn.forget('h1');
    assert.equal(kn.get(host(), 'image:p:i'), undefined);
    assert.equal(kn.size, 0);
    const off = new HostKnowledge(0, () => now);
    off.set(host(), 'bridge:a', 'x', off.begin('h1', 'bridge:a'));
    assert.equal(off.get(host(), 'bridge:a'), undefined);
  });
  it('a request that needed the thing renews its fact as of its send; nothing else is renewed or restored', () => {
    now = 0;
    const kn = k();
    kn.set(host(), 'image:ps:img', { path: '/x' }, kn.begin('h1', 'image:ps:img'));
    kn.set(host(), 'bridge:l2a', { bridgeName: 'br_a' }, kn.begin('h1', 'bridge:l2a'));
    kn.set(host(), 'bridge:l2b', { bridgeName: 'br_b' }, kn.begin('h1', 'bridge:l2b'));
    now = 50_000;
    kn.confirm(host(), 'image:ps:img', 40_000);
    kn.confirm(host(), 'bridge:', 40_000, (v) => (v as { bridgeName: string }).bridgeName === 'br_a');
    now = 99_999;
    assert.deepEqual(kn.get(host(), 'image:ps:img'), { path: '/x' }, 'known 60 s from the confirming send');
    assert.deepEqual(kn.get(host(), 'bridge:l2a'), { bridgeName: 'br_a' });
    assert.equal(kn.get(host(), 'bridge:l2b'), undefined, 'a bridge the start did not name is not renewed');
    now = 100_000;
    assert.equal(kn.get(host(), 'image:ps:img'), undefined, 'and no longer');
    // forgotten (or asked again meanwhile): a confirmation brings nothing back
    kn.confirm(host(), 'image:ps:img', 100_000);
    assert.equal(kn.get(host(), 'image:ps:img'), undefined);
    kn.set(host(), 'image:ps:img', { path: '/y' }, kn.begin('h1', 'image:ps:img'));
    const t = kn.begin('h1', 'image:ps:img');
    kn.confirm(host(), 'image:ps:img', 100_000);
    assert.equal(kn.get(host(), 'image:ps:img'), undefined, 'a request out for it: unknown until answered');
    kn.set(host(), 'image:ps:img', { path: '/z' }, t);
    // on another host record (restart since the send): not renewed
    now = 130_000;
    kn.confirm(host({ _agents: agents('k2') }), 'image:ps:img', 129_000);
    now = 160_000;
    assert.equal(kn.get(host(), 'image:ps:img'), undefined, 'learned at 100 s, not renewed at 129 s');
  });

  it('share: a request in flight for the same host and id is joined, its failure too; then a new one is sent', async () => {
    const kn = k();
    let asked = 0;
    let release!: (v: string) => void;
    const ask = (): Promise<string> => {
      asked++;
      return new Promise<string>((r) => (release = r));
    };
    const a = kn.share('h1', 'image:ps:img', ask);
    const b = kn.share('h1', 'image:ps:img', ask);
    const other = kn.share('h2', 'image:ps:img', () => Promise.resolve('h2'));
    assert.equal(asked, 1, 'the second waits for the first');
    release('cached');
    assert.deepEqual(await Promise.all([a, b, other]), ['cached', 'cached', 'h2']);
    const c = kn.share('h1', 'image:ps:img', ask);
    assert.equal(asked, 2, 'once answered, the next asks again');
    release('again');
    assert.equal(await c, 'again');
    const fail = (): Promise<string> => Promise.reject(new Error('agent down'));
    const f1 = kn.share('h1', 'bridge:l2', fail);
    const f2 = kn.share('h1', 'bridge:l2', () => Promise.resolve('never asked'));
    await assert.rejects(f1, /agent down/);
    await assert.rejects(f2, /agent down/);
    assert.equal(await kn.share('h1', 'bridge:l2', () => Promise.resolve('br0')), 'br0', 'a failure is not kept');
  });
});
