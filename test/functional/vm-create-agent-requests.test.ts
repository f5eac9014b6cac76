// What a VM create asks of its host's agents (issue 19): a bridge or a cached image the
// controller saw the host make is not asked for again; when the host turns out to lack one
// (the storage agent's IMAGE_NOT_FOUND, the kvmagent's missing-bridge pre-check), it is asked
// for again and the step sent once more; a reconnect forgets what the host was known to have; a
// create that used what the host was known to have renews it.
import assert from 'node:assert/strict';
import { TStackError } from '../../shared/errors.js';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import type { AgentClient } from '../../controller/agent-client/client.js';
import { HostKnowledge } from '../../controller/host/known.js';

describe('functional: agent requests per VM create', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const sent: string[] = [];
  /** Each command's last request. */
  const lastReq = new Map<string, unknown>();
  /** Answers the next call of a command with this error instead of sending it (the agent's answer). */
  const inject = new Map<string, TStackError>();

  before(async () => {
    fc = await startFakeCloud(cleanup, { ha: false });
    const ac = fc.controller.agentClient as AgentClient;
    const call = ac.call.bind(ac);
    ac.call = (async (cmd, host, req, o) => {
      sent.push(cmd.name);
      lastReq.set(cmd.name, req);
      const e = inject.get(cmd.name);
      if (e) {
        inject.delete(cmd.name);
        throw e;
      }
      return call(cmd, host, req, o);
    }) as AgentClient['call'];
  });

  const create = async (name: string): Promise<Record<string, string>> => {
    sent.length = 0;
    const r = await fc.createVm(name);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const vm = (r.body.result ?? r.body) as Record<string, string>;
    assert.equal(vm.state, 'Running');
    return vm;
  };
  const count = (name: string): number => sent.filter((c) => c === name).length;

  it('the first create on a host asks for the image cache, the next ones do not (the bridge: known since the L2 was attached)', async () => {
    await create('req-0');
    assert.equal(count('network/bridge/create'), 0, sent.join(' '));
    assert.equal(count('ps/image-cache'), 1);
    for (const n of ['req-1', 'req-2']) {
      await create(n);
      assert.equal(count('network/bridge/create'), 0, sent.join(' '));
      assert.equal(count('ps/image-cache'), 0, sent.join(' '));
      assert.equal(count('ps/volume/create-root'), 1);
      assert.equal(count('vm/start'), 1);
    }
  });

  it('creates placed on a host at once share one image-cache and one bridge request', async () => {
    // a host this controller knows nothing of, as after a reconnect
    fc.controller.hostRuntime.known.forget(fc.ids.host);
    sent.length = 0;
    const rs = await Promise.all(['conc-0', 'conc-1', 'conc-2'].map((n) => fc.createVm(n)));
    for (const r of rs) assert.equal(((r.body.result ?? r.body) as Record<string, string>).state, 'Running', JSON.stringify(r.body));
    assert.equal(count('ps/volume/create-root'), 3, sent.join(' '));
    assert.equal(count('ps/image-cache'), 1, sent.join(' '));
    assert.equal(count('network/bridge/create'), 1, sent.join(' '));
  });

  it('an image cache gone from the host is pulled again and the root volume made once more', async () => {
    fc.storage.failNext('ps/volume/create-root', 'IMAGE_NOT_FOUND', 'image is not cached on this primary storage');
    await create('req-img');
    assert.equal(count('ps/image-cache'), 1, sent.join(' '));
    assert.equal(count('ps/volume/create-root'), 2, sent.join(' '));
    // pulled again: known again
    await create('req-img2');
    assert.equal(count('ps/image-cache'), 0, sent.join(' '));
  });

  it('a bridge gone from the host (vm/start pre-check) is made again and the start sent once more', async () => {
    inject.set('vm/start', new TStackError('NETWORK_ERROR', "NIC x: bridge 'br_eth0' does not exist on this host", { field: 'spec.nics.0.bridge', bridge: 'br_eth0' }));
    await create('req-br');
    assert.equal(count('network/bridge/create'), 1, sent.join(' '));
    assert.equal(count('vm/start'), 2, sent.join(' '));
    await create('req-br2');
    assert.equal(count('network/bridge/create'), 0, sent.join(' '));
  });

  it("the start spec has the offering's QoS and the NICs the create wrote (taken from the create, not read again)", async () => {
    const off = await fc.api.post('/v1/instance-offerings', { name: 'qos-offering', cpuNum: 1, memorySize: 64 * 1024 * 1024, volumeTotalBandwidth: 1 << 20, networkInboundBandwidth: 4096 });
    assert.equal(off.status, 201, JSON.stringify(off.body));
    const l3b = await fc.api.post('/v1/l3-networks', { name: 'qos-l3b', l2NetworkUuid: (await fc.controller.store.get(fc.ids.l3))!.parentUuid, category: 'Private', type: 'L3BasicNetwork' });
    assert.equal(l3b.status, 201, JSON.stringify(l3b.body));
    const range = await fc.api.post('/v1/ip-ranges', { name: 'qos-r', l3NetworkUuid: l3b.body.uuid, startIp: '10.9.0.10', endIp: '10.9.0.50', netmask: '255.255.255.0', gateway: '10.9.0.1' });
    assert.equal(range.status, 201, JSON.stringify(range.body));
    sent.length = 0;
    const r = await fc.createVm('req-qos', { instanceOfferingUuid: off.body.uuid, l3NetworkUuids: [fc.ids.l3, l3b.body.uuid] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const vm = (r.body.result ?? r.body) as { uuid: string; vmNics: Array<{ uuid: string; mac: string; l3NetworkUuid: string }> };
    const spec = (lastReq.get('vm/start') as { spec: { nics: Array<{ uuid: string; mac: string; qos?: unknown }>; rootVolume: { qos?: unknown } } }).spec;
    assert.deepEqual(spec.rootVolume.qos, { totalBytesSec: 1 << 20 });
    // in device order, as the NIC records say
    const nics = [fc.ids.l3, l3b.body.uuid].map((l3) => vm.vmNics.find((n) => n.l3NetworkUuid === l3)!);
    assert.deepEqual(spec.nics.map((n) => [n.uuid, n.mac, n.qos]), nics.map((n) => [n.uuid, n.mac, { inboundBytesSec: 4096 }]));
  });

  it('another start failure is not retried', async () => {
    inject.set('vm/start', new TStackError('INTERNAL', 'libvirt said no'));
    sent.length = 0;
    const r = await fc.createVm('req-fail');
    assert.notEqual(r.status, 200, JSON.stringify(r.body));
    assert.equal(count('vm/start'), 1, sent.join(' '));
  });

  it('starting a stopped VM asks for its bridges once (addServices), not again for the domain spec', async () => {
    const vm = await create('req-restart');
    const stop = await fc.action(vm.uuid, 'stop');
    assert.equal(stop.status, 200, JSON.stringify(stop.body));
    sent.length = 0;
    const start = await fc.action(vm.uuid, 'start');
    assert.equal(start.status, 200, JSON.stringify(start.body));
    assert.equal(count('network/bridge/create'), 1, sent.join(' '));
    assert.equal(count('vm/start'), 1, sent.join(' '));
  });

  it('an agent restart in the host record (as the tracker writes it) forgets what the host was known to have', async () => {
    const host = (await fc.controller.store.get(fc.ids.host))!;
    const agents = host._agents as Record<string, Record<string, unknown>>;
    await fc.controller.store.update(host.uuid, { _agents: { ...agents, kvmagent: { ...agents.kvmagent, startedAt: new Date().toISOString() } } });
    await create('req-rc');
    assert.equal(count('ps/image-cache'), 1, sent.join(' '));
    assert.ok(count('network/bridge/create') >= 1, sent.join(' '));
  });
  it('a create made with what the host was known to have renews it: a host kept busy is not asked again each minute', async () => {
    let offset = 0;
    fc.controller.hostRuntime.known = new HostKnowledge(60_000, () => Date.now() + offset);
    await create('ren-0');
    assert.equal(count('ps/image-cache'), 1, sent.join(' '));
    assert.equal(count('network/bridge/create'), 1, sent.join(' '));
    offset = 50_000;
    await create('ren-1');
    assert.equal(count('ps/image-cache') + count('network/bridge/create'), 0, sent.join(' '));
    // 100 s after they were learned, 50 s after the last create used them
    offset = 100_000;
    await create('ren-2');
    assert.equal(count('ps/image-cache') + count('network/bridge/create'), 0, sent.join(' '));
    // nothing used them for 60 s: asked again
    offset = 160_000;
    await create('ren-3');
    assert.equal(count('ps/image-cache'), 1, sent.join(' '));
    assert.equal(count('network/bridge/create'), 1, sent.join(' '));
  });
});
