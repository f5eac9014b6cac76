// A controller killed at any point of a VM create leaves no half-made VM: vm-create journals only
// at saves (journal: 'saves', issue 19) and a restarted controller completes an acknowledged
// create from its journal (onResume: 'complete'), so each case hangs the flow right after one step
// did all its work — where the journal may name an earlier step — kills the controller, and
// checks that the restarted one finished exactly one whole, Running VM (nothing made twice,
// nothing leaked), which then deletes cleanly.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { ipNamespace } from '../../controller/allocator/ip.js';
import { MAC_NAMESPACE } from '../../controller/allocator/mac.js';
import { capacityNamespace, reserved } from '../../controller/allocator/capacity.js';
import { vmCreateFlow } from '../../controller/compute/vm.js';
import { JOURNALS } from '../../controller/workflow/flow.js';

describe('functional: the controller killed during a VM create', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup, { ha: false });
  });

  const store = () => fc.controller.store;
  const leftovers = async (): Promise<Record<string, number>> => ({
    vms: (await store().list({ kind: 'vm-instance' })).total,
    nics: (await store().list({ kind: 'vm-nic' })).total,
    volumes: (await store().list({ kind: 'volume' })).total,
    // the L3's DHCP server address (owner dhcp:<host>) stays for the network's lifetime
    ips: (await store().claims(ipNamespace(fc.ids.l3))).filter((c) => !c.owner.startsWith('dhcp:')).length,
    macs: (await store().claims(MAC_NAMESPACE)).length,
    hostReservations: (await reserved(store(), capacityNamespace('host', fc.ids.host))).consumers.length,
    psReservations: (await reserved(store(), capacityNamespace('ps', fc.ids.ps))).consumers.length,
    domains: (await fc.kvm.driver.list()).length,
    journals: (await store().listDocs(JOURNALS)).length,
  });
  const none = { vms: 0, nics: 0, volumes: 0, ips: 0, macs: 0, hostReservations: 0, psReservations: 0, domains: 0, journals: 0 };
  const oneVm = { vms: 1, nics: 1, volumes: 1, ips: 1, macs: 1, hostReservations: 1, psReservations: 1, domains: 1, journals: 0 };

  for (const [k, step] of vmCreateFlow.steps.entries()) {
    it(`killed right after the '${step.name}' step did its work: the restarted controller completes the create, once`, async () => {
      assert.deepEqual(await leftovers(), none);
      const run = step.run;
      let reached!: () => void;
      const atStep = new Promise<void>((r) => (reached = r));
      step.run = async (ctx) => {
        await run(ctx);
        reached();
        await new Promise<never>(() => undefined); // the controller dies here
      };
      try {
        const r = await fc.api.post('/v1/vm-instances', { name: `crash-${k}`, instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        await Promise.race([atStep, new Promise((_, rej) => setTimeout(() => rej(new Error(`step ${step.name} never ran`)), 20_000))]);
        const before = await leftovers();
        assert.equal(before.vms, 1, 'the create was under way');
        assert.equal(before.journals, 1);
      } finally {
        step.run = run;
      }
      await fc.crashController();
      const end = Date.now() + 20_000;
      while ((await leftovers()).journals > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await leftovers(), oneVm);
      const [vm] = (await store().list({ kind: 'vm-instance' })).items;
      assert.equal(vm?.state, 'Running');
      assert.equal((await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`)).status, 200);
      assert.equal((await fc.action(vm.uuid, 'expunge')).status, 200);
      assert.deepEqual(await leftovers(), none, 'the completed VM deletes cleanly');
    });
  }
});
