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
import { fenceOnReturn } from '../../../controller/host/fence.js';

const MiB = 1024 * 1024;
const res = (kind: string, uuid: string, extra: Record<string, unknown> = {}): Resource =>
  ({ uuid, kind, name: uuid, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra }) as Resource;

describe('host vm/sync: capacity follows the corrected state', () => {
  let store: InventoryStore;
  let onHost: Array<{ uuid: string; state: string }>;
  let deps: HostDeps;
  let destroyed: string[];

  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    onHost = [];
    destroyed = [];
    const agentClient = {
      call: async (cmd: { name: string }, _ep: unknown, req: { uuid?: string }) => {
        if (cmd.name === 'vm/destroy') {
          destroyed.push(String(req.uuid));
          onHost = onHost.filter((v) => v.uuid !== req.uuid);
          return {};
        }
        return { vms: onHost, foreign: [] };
      },
    } as unknown as AgentClient;
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

  it('the domain of a VM destroyed while the host was down is destroyed when it comes back, once', async () => {
    // compute/vm.ts destroyVm on a Disconnected host: the VM record is Destroyed (or expunged: gone)
    await store.create(res('vm-instance', 'vm-destroyed', { state: 'Destroyed', lastHostUuid: 'h1', cpuNum: 1, memorySize: 64 * MiB }));
    await fenceOnReturn(store, 'h1', 'vm-destroyed');
    await fenceOnReturn(store, 'h1', 'vm-expunged');
    await fenceOnReturn(store, 'h1', 'vm-not-there');
    onHost = [{ uuid: 'vm-destroyed', state: 'Running' }, { uuid: 'vm-expunged', state: 'Paused' }, { uuid: 'vm-other', state: 'Running' }];
    const r = await syncVms(deps, (await store.get('h1'))!);
    assert.deepEqual(destroyed.sort(), ['vm-destroyed', 'vm-expunged']);
    assert.deepEqual(r.unmanaged.map((u) => u.vmUuid), ['vm-other'], 'anything else is only reported');
    assert.equal((await store.get('h1'))!._fenceOnReturn, undefined, 'nothing left to fence');
    await syncVms(deps, (await store.get('h1'))!);
    assert.equal(destroyed.length, 2);
  });
});
