// The API checks a VM create's body before the job (prepareCreate, with what the caller may
// see) and the create flow takes that result instead of preparing the body again (issue 19).
// The flow's own rule still holds: a VM uses its account's resources and the admin account's,
// so an admin naming another account's offering (visible to the admin) gets a failed job naming
// the field, as when the flow prepared the body itself.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import type { Resource } from '../../controller/store/types.js';

describe('functional: a VM create takes the API-checked body, held to its own rules', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup, { ha: false });
  });

  it("an admin's create naming another account's offering fails its job on that field; the admin's own succeeds", async () => {
    const mine = (await fc.controller.store.get(fc.ids.offering))!;
    const now = new Date().toISOString();
    const theirs = await fc.controller.store.create({ ...mine, uuid: randomUUID(), name: 'other-acct-offering', ownerAccountUuid: randomUUID(), createDate: now, lastOpDate: now } as Resource);
    // visible to the admin: the API's check of the body passes, a job starts
    const r = await fc.api.post('/v1/vm-instances', { name: 'prep-other', instanceOfferingUuid: theirs.uuid, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const j = await fc.controller.jobs.wait(r.body.jobUuid as string, 20_000);
    assert.equal(j?.state, 'Failed', JSON.stringify(j));
    assert.equal(j?.error?.code, 'INVALID_ARGUMENT');
    assert.ok(j.resourceUuid);
    assert.equal(j?.error?.field, 'instanceOfferingUuid', JSON.stringify(j?.error));
    assert.equal(await fc.controller.store.get(j!.resourceUuid!), undefined, 'no VM record');

    const ok = await fc.api.post('/v1/vm-instances', { name: 'prep-mine', instanceOfferingUuid: mine.uuid, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    const j2 = await fc.controller.jobs.wait(ok.body.jobUuid as string, 20_000);
    assert.equal(j2?.state, 'Succeeded', JSON.stringify(j2?.error));
    // the VM has the uuid the job named from the start (the API's check made the record with it)
    assert.ok(j2?.resourceUuid);
    const vm = await fc.controller.store.get(j2.resourceUuid);
    assert.equal(vm?.kind, 'vm-instance');
    assert.equal(vm?.name, 'prep-mine');
  });
});
