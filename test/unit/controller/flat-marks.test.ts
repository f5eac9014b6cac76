// What a change marks in the flat area (watchFlatChanges): a NIC's event marks the key of the
// host its VM is served on, taken from the VM's last event when this process saw one (issue 19:
// a store read per NIC event), else read from the store.
import assert from 'node:assert/strict';
import { EventBus, type ResourceEventType } from '../../../controller/events/bus.js';
import { watchFlatChanges, flatKey, FLAT_AREA } from '../../../controller/network/flat-reconcile.js';
import type { CloudDeps } from '../../../controller/cloud/common.js';
import type { Resource } from '../../../controller/store/types.js';

const res = (kind: string, uuid: string, extra: Record<string, unknown>): Resource => ({ kind, uuid, name: uuid, createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], ...extra });

describe('flat area: what inventory events mark', () => {
  const setup = (stored: Resource[]): { bus: EventBus; marks: string[]; reads: string[]; pub: (type: ResourceEventType, r: Resource) => void; off: () => void } => {
    const bus = new EventBus();
    const marks: string[] = [];
    const reads: string[] = [];
    const d = {
      store: { get: async (u: string) => (reads.push(u), stored.find((r) => r.uuid === u)) },
      reconcile: { mark: (area: string, key: string) => area === FLAT_AREA && marks.push(key) },
    } as unknown as CloudDeps;
    const off = watchFlatChanges(d, bus);
    const pub = (type: ResourceEventType, r: Resource): void => bus.publish({ type, kind: r.kind, uuid: r.uuid, ownerAccountUuid: 'a', resource: r, time: '' });
    return { bus, marks, reads, pub, off };
  };
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

  it("a NIC of a VM whose events it saw: the VM's host from them, no read", async () => {
    const { marks, reads, pub, off } = setup([]);
    pub('resource.created', res('vm-instance', 'vm1', { state: 'Starting', l3NetworkUuids: ['l3a'] }));
    // a create's commit: the NIC, then the VM's placement
    pub('resource.created', res('vm-nic', 'nic1', { parentUuid: 'vm1', l3NetworkUuid: 'l3a' }));
    pub('resource.updated', res('vm-instance', 'vm1', { state: 'Starting', hostUuid: 'h1', lastHostUuid: 'h1', l3NetworkUuids: ['l3a'] }));
    assert.deepEqual(marks, [flatKey('h1', 'l3a')]);
    // a NIC added later (another L3) and one detached
    pub('resource.created', res('vm-nic', 'nic2', { parentUuid: 'vm1', l3NetworkUuid: 'l3b' }));
    pub('resource.deleted', res('vm-nic', 'nic2', { parentUuid: 'vm1', l3NetworkUuid: 'l3b' }));
    await tick();
    assert.deepEqual(marks, [flatKey('h1', 'l3a'), flatKey('h1', 'l3b'), flatKey('h1', 'l3b')]);
    assert.deepEqual(reads, []);
    // a VM gone (its event seen) serves nothing: its NICs' events read it (gone: nothing marked)
    pub('resource.deleted', res('vm-instance', 'vm1', { state: 'Destroyed', hostUuid: 'h1', l3NetworkUuids: ['l3a'] }));
    marks.length = 0;
    pub('resource.deleted', res('vm-nic', 'nic1', { parentUuid: 'vm1', l3NetworkUuid: 'l3a' }));
    await tick();
    assert.deepEqual(reads, ['vm1']);
    assert.deepEqual(marks, []);
    off();
  });

  it('a NIC of a VM no event showed (made before this process started): its VM is read', async () => {
    const { marks, reads, pub, off } = setup([res('vm-instance', 'vm2', { state: 'Stopped', lastHostUuid: 'h2', l3NetworkUuids: ['l3a'] })]);
    pub('resource.created', res('vm-nic', 'nic3', { parentUuid: 'vm2', l3NetworkUuid: 'l3a' }));
    assert.deepEqual(marks, []);
    await tick();
    assert.deepEqual(reads, ['vm2']);
    assert.deepEqual(marks, [flatKey('h2', 'l3a')]);
    off();
  });
});
