// Functional tier: which VM changes re-apply a flat key or a host's firewall. A change the desired
// state shows (a rename; a move to another host) applies it again; one it does not show (a state
// change, a description) does not — a create made ~4 applies of its flat key, each carrying the
// whole L3, and 1.4 firewall applies (issue 19). A VM with no NIC in a group is in no firewall:
// while no group has a member, no VM change applies one.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { until } from '../harness/assert.js';
import { startFakeCloud } from '../harness/fake-cloud.js';
import * as V from '../../shared/protocol/vrouter.js';
import { SecurityGroupApply } from '../../shared/protocol/secgroup.js';
import { secgroupModule } from '../../controller/secgroup/module.js';

describe('functional: flat keys and firewalls marked only by changes they show', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');

  it('a state or description change applies nothing; a rename applies the key once', async () => {
    const fc = await startFakeCloud(cleanup, { reconcile: { periodMs: 0 } }); // no periodic pass
    const r = await fc.createVm('fm-a');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const vm = String(r.body.uuid);
    const applies = (): number => fc.vrouter.callsOf(V.FlatApply.name).length;
    const idle = (): boolean => fc.controller.reconcile.status().every((s) => s.attempts === 0);
    await until('the create settled', idle, 5_000);
    await new Promise((res) => setTimeout(res, 300));
    const settled = applies();
    assert.ok(settled >= 1, 'the create applied its key');
    await fc.controller.store.update(vm, { state: 'Paused' });
    await fc.controller.store.update(vm, { description: 'no DNS in it' });
    await fc.controller.store.update(vm, { state: 'Running' });
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(applies(), settled, 'nothing the flat state shows changed');
    const put = await fc.api.put(`/v1/vm-instances/${vm}`, { name: 'fm-b' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await until('the rename applied', () => applies() > settled, 5_000);
    const last = fc.vrouter.callsOf(V.FlatApply.name).at(-1) as { nics: Array<{ hostname: string }> };
    assert.deepEqual(last.nics.map((n) => n.hostname), ['fm-b']);
  });

  it("a host's firewall: a VM without a member NIC applies nothing; a member's VM applies its host when placed, not on a state change", async () => {
    const fc = await startFakeCloud(cleanup, { reconcile: { periodMs: 0 }, modules: [secgroupModule()] });
    // the host's own apply at connect is not what is counted
    await fc.controller.reconcile.idle();
    const sent: string[] = [];
    const client = fc.controller.agentClient as unknown as { call: (cmd: { name: string }, ...rest: unknown[]) => Promise<unknown> };
    const call = client.call.bind(client);
    client.call = (cmd, ...rest) => {
      if (cmd.name === SecurityGroupApply.name) sent.push(cmd.name);
      return call(cmd, ...rest);
    };
    const settle = async (): Promise<number> => {
      await fc.controller.reconcile.idle();
      await new Promise((res) => setTimeout(res, 300));
      await fc.controller.reconcile.idle();
      return sent.length;
    };
    const r = await fc.createVm('fm-sg');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const vm = String(r.body.uuid);
    const host = String(r.body.hostUuid);
    const nic = String((r.body.vmNics as Array<{ uuid: string }>)[0]!.uuid);
    assert.equal(await settle(), 0, 'no group has a member: placing the VM changed no firewall');
    await fc.controller.store.update(vm, { state: 'Stopped', hostUuid: undefined, lastHostUuid: host });
    assert.equal(await settle(), 0, 'nor did its leaving the host');
    const g = await fc.api.post('/v1/security-groups', { name: 'fm-sg-group' });
    assert.equal(g.status, 201, JSON.stringify(g.body));
    await fc.controller.store.update(String(g.body.uuid), { vmNicUuids: [nic] });
    const joined = await settle();
    assert.ok(joined >= 1, 'the group changed: the host applied');
    await fc.controller.store.update(vm, { state: 'Running', hostUuid: host });
    await until('the member placed again: its host applied', () => sent.length > joined, 5_000);
    const placed = await settle();
    await fc.controller.store.update(vm, { state: 'Paused' });
    await fc.controller.store.update(vm, { state: 'Running' });
    assert.equal(await settle(), placed, 'where the VM is did not change');
    await fc.controller.store.update(vm, { state: 'Stopped', hostUuid: undefined });
    await until('the member left its host: the host applied again', () => sent.length > placed, 5_000);
  });

  it("a NIC's change applies every host only while the NIC is in a group, as the groups are now", async () => {
    const fc = await startFakeCloud(cleanup, { reconcile: { periodMs: 0 }, extraHosts: 1, modules: [secgroupModule()] });
    let applies = 0;
    const client = fc.controller.agentClient as unknown as { call: (cmd: { name: string }, ...rest: unknown[]) => Promise<unknown> };
    const call = client.call.bind(client);
    client.call = (cmd, ...rest) => {
      if (cmd.name === SecurityGroupApply.name) applies++;
      return call(cmd, ...rest);
    };
    const settle = async (): Promise<number> => {
      await fc.controller.reconcile.idle();
      await new Promise((res) => setTimeout(res, 200));
      await fc.controller.reconcile.idle();
      return applies;
    };
    const r = await fc.createVm('fm-nic');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const nic = String((r.body.vmNics as Array<{ uuid: string }>)[0]!.uuid);
    const g = await fc.api.post('/v1/security-groups', { name: 'fm-group' });
    assert.equal(g.status, 201, JSON.stringify(g.body));
    const before = await settle();
    await fc.controller.store.update(nic, { description: 'in no group' });
    assert.equal(await settle(), before, 'a NIC in no group applies nothing');
    await fc.controller.store.update(String(g.body.uuid), { vmNicUuids: [nic] });
    const joined = await settle();
    assert.equal(joined, before + 2, 'the group changed: both hosts applied');
    // the NIC is a member now: the membership read before the join must not answer
    await fc.controller.store.update(nic, { description: 'in a group' });
    assert.equal(await settle(), joined + 2, "a member's change applies both hosts");
  });
});
