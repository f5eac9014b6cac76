// Functional tier: the flat network services (DHCP, DNS, metadata per host × L3) converge to the
// inventory after restarts, on the fake cloud. The fake vrouter agent keeps each L3's state as
// last applied (as the real agent keeps it in its data dir); "converged" means it equals what the
// controller computes from the inventory now. Real-agent versions of these cases (real dnsmasq,
// SIGKILL) are in test/integration/vrouter/flat-reconcile.test.ts.
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { useCleanup } from '../harness/cleanup.js';
import { until } from '../harness/assert.js';
import { startFakeCloud, type FakeCloud, type FlatState } from '../harness/fake-cloud.js';
import { desiredFlat, FLAT_AREA, flatKey } from '../../controller/network/flat-reconcile.js';
import * as V from '../../shared/protocol/vrouter.js';
import { fakeCloudApi, vlanL3 } from '../harness/fake-cloud-api.js';

describe('functional: flat network services converge after restarts', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const vms: string[] = [];

  // a short periodic pass and retries, so "the next pass" comes within a second
  before(async () => {
    fc = await startFakeCloud(cleanup, { reconcile: { periodMs: 500, baseBackoffMs: 100, maxBackoffMs: 400 } });
    for (const name of ['fr-a', 'fr-b', 'fr-c']) {
      const r = await fc.createVm(name);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      vms.push(r.body.uuid);
    }
  });

  const applied = (): FlatState | undefined => fc.vrouter.flat.get(fc.ids.l3);
  const desired = async (): Promise<FlatState | undefined> => desiredFlat(fc.controller, fc.ids.host, (await fc.controller.store.get(fc.ids.l3))!);
  const converged = async (): Promise<boolean> => {
    const want = await desired();
    return want !== undefined && isDeepStrictEqual(applied(), want);
  };
  const names = (s: FlatState | undefined): string[] => (s?.nics ?? []).filter((n) => n.named !== false).map((n) => n.hostname).sort();
  const rename = async (vm: string, name: string): Promise<void> => {
    const r = await fc.api.put(`/v1/vm-instances/${vm}`, { name });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };
  const keyStatus = () => fc.controller.reconcile.status().find((s) => s.area === FLAT_AREA && s.key === flatKey(fc.ids.host, fc.ids.l3));

  it('starts converged: the three VMs are served', async () => {
    await until('converged', converged, 5_000);
    assert.deepEqual(names(applied()), ['fr-a', 'fr-b', 'fr-c']);
  });

  it('each periodic pass asks the agent to check its host (verify): drift behind its back is repaired', async () => {
    await until('converged', converged, 5_000);
    const calls = fc.vrouter.callsOf(V.FlatApply.name).length;
    fc.vrouter.flatDrift.add(fc.ids.l3);
    await until('repaired by the periodic pass', () => !fc.vrouter.flatDrift.has(fc.ids.l3), 10_000);
    const since = fc.vrouter.callsOf(V.FlatApply.name).slice(calls) as Array<{ verify?: boolean }>;
    assert.ok(since.length > 0, 'applied by the pass');
    // nothing marks the key: every apply since is a pass's first apply of it
    assert.deepEqual(
      since.map((r) => r.verify),
      since.map(() => true),
    );
    assert.ok(await converged());
  });

  it('agent restarted in the middle of an apply: the apply fails, the retry converges once it is back', async () => {
    const calls = fc.vrouter.callsOf(V.FlatApply.name).length;
    const held = fc.vrouter.hold(V.FlatApply.name); // the agent dies before doing anything
    await rename(vms[0]!, 'fr-a2');
    await held.reached;
    await fc.restartVrouter(); // same port and token, state as it was on disk (the old names)
    held.release();
    assert.deepEqual(names(applied()), ['fr-a', 'fr-b', 'fr-c'], 'the interrupted apply changed nothing');
    await until('converged after the restart', converged, 10_000);
    assert.deepEqual(names(applied()), ['fr-a2', 'fr-b', 'fr-c']);
    assert.ok(fc.vrouter.callsOf(V.FlatApply.name).length >= calls + 2, 'the interrupted apply was sent again');
    await until('the key is healthy', () => keyStatus()?.attempts === 0 && keyStatus()?.lastError === undefined, 5_000);
  });

  it('controller restarted with an apply in flight and a mark queued behind it: the new controller’s first pass converges', async () => {
    const held = fc.vrouter.hold(V.FlatApply.name);
    await rename(vms[1]!, 'fr-b2');
    await held.reached;
    // marked again while the first apply runs: queued behind it, never applied by this controller
    await rename(vms[2]!, 'fr-c2');
    let whileDown: string[] = [];
    const crashed = fc.crashController(undefined, { whileDown: () => (whileDown = names(applied())) });
    held.release(); // the controller went away while waiting for the agent
    await crashed;
    assert.deepEqual(whileDown, ['fr-a2', 'fr-b', 'fr-c'], 'the old controller applied neither change');
    await until('converged by the new controller', converged, 10_000);
    assert.deepEqual(names(applied()), ['fr-a2', 'fr-b2', 'fr-c2']);
  });

  it('an agent that comes back without its state (wiped data dir) is refilled by the periodic pass', async () => {
    await fc.restartVrouter({ lose: true });
    assert.equal(applied(), undefined);
    // nothing marks the key: only the periodic pass (500 ms here) can repair it
    await until('refilled by the periodic pass', converged, 10_000);
    assert.deepEqual(names(applied()), ['fr-a2', 'fr-b2', 'fr-c2']);
  });

  // an L3 deleted while an apply of its key is still on its way to the agent: the late apply
  // must not leave a namespace of an L3 that no longer exists (it leaked tsflat-<uuid> in e2e)
  it('an L3 deleted while an apply of its key is in flight leaves no namespace on the host', async () => {
    const { post } = fakeCloudApi(() => fc);
    const l3 = await vlanL3(post, fc, 'fr-gone', 310, {}, '10.78.0.0/24');
    const vm = await fc.createVm('fr-gone-vm', { l3NetworkUuids: [l3] });
    assert.equal(vm.status, 200, JSON.stringify(vm.body));
    assert.ok(fc.vrouter.flat.has(l3), 'served');
    assert.equal((await fc.api.del(`/v1/vm-instances/${vm.body.uuid}?wait=true`)).status, 200);
    assert.equal((await fc.action(vm.body.uuid, 'expunge')).status, 200);
    await fc.controller.reconcile.idle();
    // an apply of the key (here: what a periodic pass starts) is on its way to the agent
    const slow = fc.vrouter.hold(V.FlatApply.name, { late: true, match: (r: FlatState) => r.network.l3NetworkUuid === l3 });
    fc.controller.reconcile.mark(FLAT_AREA, flatKey(fc.ids.host, l3));
    await slow.reached;
    const deletes = fc.vrouter.callsOf(V.NamespaceDelete.name).length;
    const del = fc.api.del(`/v1/l3-networks/${l3}?wait=true`);
    await until('the L3 delete reached the agent', () => fc.vrouter.callsOf(V.NamespaceDelete.name).length > deletes, 5_000);
    slow.release(); // the overtaken apply lands after the delete
    assert.equal((await del).status, 200);
    await fc.controller.reconcile.idle();
    assert.equal(fc.vrouter.flat.has(l3), false, 'the deleted L3 still has a namespace on the host');
  });

  it('an L2 deleted with cascade takes its L3s\' namespaces and DHCP addresses with it', async () => {
    const { post } = fakeCloudApi(() => fc);
    const l3 = await vlanL3(post, fc, 'fr-l2gone', 311, {}, '10.79.0.0/24');
    const vm = await fc.createVm('fr-l2gone-vm', { l3NetworkUuids: [l3] });
    assert.equal(vm.status, 200, JSON.stringify(vm.body));
    assert.equal((await fc.api.del(`/v1/vm-instances/${vm.body.uuid}?wait=true`)).status, 200);
    assert.equal((await fc.action(vm.body.uuid, 'expunge')).status, 200);
    assert.ok(fc.vrouter.flat.has(l3), 'the namespace stays while the L3 exists');
    const l2 = String((await fc.controller.store.get(l3))!.parentUuid);
    const del = await fc.api.del(`/v1/l2-networks/${l2}?cascade=true&wait=true`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    await fc.controller.reconcile.idle();
    assert.equal(await fc.controller.store.get(l3), undefined);
    assert.equal(fc.vrouter.flat.has(l3), false, 'the cascaded L3 still has a namespace on the host');
    assert.deepEqual(await fc.controller.store.claims(`ip:${l3}`), [], 'its DHCP server address is released');
  });
});
