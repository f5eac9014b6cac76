// vm/sync corrections keep host capacity honest: a VM the hypervisor no longer runs becomes
// Stopped and gives its CPU/memory reservation back; a VM recorded Stopped that runs on the
// host becomes Running and holds it again. (The kvmagent is a stub answering vm/sync.)
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { syncVms } from '../../../controller/host/vmsync.js';
import { holdHost } from '../../../controller/allocator/host.js';
import { reserved, capacityNamespace } from '../../../controller/allocator/capacity.js';
import type { HostDeps } from '../../../controller/host/service.js';
import type { AgentClient } from '../../../controller/agent-client/client.js';
import { newHostRuntime } from '../../../controller/host/runtime.js';

const MiB = 1024 * 1024;
const res = (kind: string, uuid: string, extra: Record<string, unknown> = {}): Resource =>
  ({ uuid, kind, name: uuid, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra }) as Resource;

describe('host vm/sync: capacity follows the corrected state', () => {
  let store: InventoryStore;
  let onHost: Array<{ uuid: string; state: string }>;
  let deps: HostDeps;

  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    onHost = [];
    const agentClient = { call: async () => ({ vms: onHost, foreign: [] }) } as unknown as AgentClient;
    deps = { store, agentClient, controllerUrl: 'http://127.0.0.1:1', dataDir: '/nonexistent', hostRuntime: newHostRuntime() };
    await store.create(res('host', 'h1', { managementIp: '127.0.0.1', _agents: { kvmagent: { port: 1, token: 't' } } }));
  });
  afterEach(() => store.close());

  const held = async (): Promise<string[]> => (await reserved(store, capacityNamespace('host', 'h1'))).consumers.sort();

  it('Running → Stopped releases the VM\'s host reservation', async () => {
    await store.create(res('vm-instance', 'vm-gone', { state: 'Running', hostUuid: 'h1', cpuNum: 1, memorySize: 64 * MiB }));
    await store.create(res('vm-instance', 'vm-here', { state: 'Running', hostUuid: 'h1', cpuNum: 1, memorySize: 64 * MiB }));
    await holdHost(store, 'h1', 'vm-gone', { cpu: 1, memory: 64 * MiB });
    await holdHost(store, 'h1', 'vm-here', { cpu: 1, memory: 64 * MiB });
    onHost = [{ uuid: 'vm-here', state: 'Running' }];
    const r = await syncVms(deps, (await store.get('h1'))!);
    assert.deepEqual(r.changed, [{ vmUuid: 'vm-gone', from: 'Running', to: 'Stopped' }]);
    const vm = (await store.get('vm-gone'))!;
    assert.equal(vm.state, 'Stopped');
    assert.equal(vm.hostUuid, undefined);
    assert.equal(vm.lastHostUuid, 'h1');
    assert.deepEqual(await held(), ['vm-here']);
  });

  it('Stopped but running here → Running holds the VM\'s CPU and memory again', async () => {
    await store.create(res('vm-instance', 'vm-back', { state: 'Stopped', lastHostUuid: 'h1', cpuNum: 2, memorySize: 128 * MiB }));
    onHost = [{ uuid: 'vm-back', state: 'Running' }];
    const r = await syncVms(deps, (await store.get('h1'))!);
    assert.deepEqual(r.changed, [{ vmUuid: 'vm-back', from: 'Stopped', to: 'Running' }]);
    assert.deepEqual(await held(), ['vm-back']);
    assert.deepEqual((await reserved(store, capacityNamespace('host', 'h1'))).total, { cpu: 2, memory: 128 * MiB });
  });
});
