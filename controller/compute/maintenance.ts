// Host maintenance (hosts action changeState {stateEvent: maintain}): the host module puts the
// host in PreMaintenance (no new VMs) and calls this evacuator, then checks the host is empty.
// As the manual says: VMs on shared storage live-migrate to other hosts; VMs with a volume on
// local storage are stopped (they stay on that host's disks and start again after maintenance).
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as K from '../../shared/protocol/kvm.js';
import { releaseHost } from '../allocator/host.js';
import { callHost, type CloudDeps } from '../cloud/common.js';
import { liveMigrate, onSharedStorage } from './migrate.js';

const log = logger('host-maintenance');

export async function evacuateHost(d: CloudDeps, hostUuid: string): Promise<void> {
  const vms = (await d.store.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: hostUuid }] })).items;
  const failures: string[] = [];
  // one at a time: parallel migrations of TCG guests on a busy machine only slow each other down
  for (const vm of vms) {
    try {
      if (!['Running', 'Paused'].includes(String(vm.state))) continue;
      if (await onSharedStorage(d, vm)) {
        const moved = await liveMigrate(d, vm.uuid);
        log.info({ vm: vm.uuid, from: hostUuid, to: moved.hostUuid }, 'migrated away for host maintenance');
      } else {
        await stopForMaintenance(d, vm.uuid, hostUuid);
        log.info({ vm: vm.uuid, host: hostUuid }, 'stopped for host maintenance (local storage)');
      }
    } catch (e) {
      failures.push(`${vm.name} (${vm.uuid}): ${(e as Error).message}`);
    }
  }
  if (failures.length) throw new TStackError('CONFLICT', `host ${hostUuid} could not be emptied for maintenance: ${failures.join('; ')}`, { failures });
}

async function stopForMaintenance(d: CloudDeps, vmUuid: string, hostUuid: string): Promise<void> {
  await d.engine.queues.run([vmUuid], async () => {
    const vm = await d.store.get(vmUuid);
    if (!vm || vm.hostUuid !== hostUuid || !['Running', 'Paused'].includes(String(vm.state))) return;
    await d.store.transition(vmUuid, String(vm.state), 'Stopping');
    try {
      await callHost(d, hostUuid, 'kvmagent', K.VmStop, { uuid: vmUuid, type: 'grace', timeoutMs: 60_000 });
    } catch (e) {
      await d.store.update(vmUuid, { state: vm.state }).catch(() => undefined);
      throw e;
    }
    await releaseHost(d.store, hostUuid, vmUuid);
    await d.store.update(vmUuid, { state: 'Stopped', hostUuid: undefined, lastHostUuid: hostUuid });
  });
}
