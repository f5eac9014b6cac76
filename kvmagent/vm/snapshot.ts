// External disk snapshots of a running VM: the chosen volumes get new tops (a file, or an NFS
// target QEMU opens itself), quiesced through the guest agent when it can be.
import { TStackError } from '../../shared/errors.js';
import * as kvm from '../../shared/protocol/kvm.js';
import { canonicalUuid } from '../domain-xml.js';
import type { DiskSnapshotSpec } from '../hypervisor/driver.js';
import type { Req, Res, VmContext } from './context.js';

export async function snapshot(vm: VmContext, req: Req<typeof kvm.VmSnapshot>): Promise<Res<typeof kvm.VmSnapshot>> {
  const uuid = canonicalUuid(req.uuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'snapshot');
    const p = await vm.parsed(name);
    const wanted = new Map(req.volumes.map((v) => [canonicalUuid(v.volumeUuid), v]));
    const plan: DiskSnapshotSpec[] = [];
    const result: Res<typeof kvm.VmSnapshot>['volumes'] = [];
    for (const d of p.devices.volumes) {
      if (d.device !== 'disk') continue;
      const w = d.uuid ? wanted.get(d.uuid) : undefined;
      if (!w) {
        plan.push({ target: d.target });
        continue;
      }
      if (d.source?.startsWith('nfs:')) {
        // QEMU opens it over NFS (libnfs): the new top is a network snapshot target
        if (!w.newTop || kvm.nfsServerPath(w.newTop) !== w.newTopPath) {
          throw new TStackError('INVALID_ARGUMENT', `volume ${d.uuid} is on NFS (QEMU opens it itself): newTop must be the NFS source of newTopPath`, { field: 'volumes.newTop', volumeUuid: d.uuid });
        }
        plan.push({ target: d.target, nfs: w.newTop });
      } else if (d.source?.startsWith('/')) {
        plan.push({ target: d.target, file: w.newTopPath });
      } else {
        throw new TStackError('INVALID_ARGUMENT', `volume ${d.uuid} is neither a file nor on NFS (${d.source ?? 'no source'}); snapshot it through its storage (e.g. rbd snap)`, { volumeUuid: d.uuid });
      }
      result.push({ volumeUuid: d.uuid!, snapshotPath: d.source, newTopPath: w.newTopPath });
    }
    for (const u of wanted.keys()) {
      if (!result.some((r) => r.volumeUuid === u)) throw new TStackError('VOLUME_NOT_FOUND', `volume ${u} is not attached to VM ${uuid}`, { volumeUuid: u });
    }
    const reuse = req.volumes.some((v) => v.reuseExisting);
    if (reuse && !req.volumes.every((v) => v.reuseExisting)) {
      throw new TStackError('INVALID_ARGUMENT', 'reuseExisting must be the same for all volumes of one snapshot', { field: 'volumes' });
    }
    const q = req.quiesce ?? 'preferred';
    let quiesced = false;
    if (q !== 'no') {
      try {
        await vm.driver.snapshotDisks(name, plan, { quiesce: true, reuseExternal: reuse });
        quiesced = true;
      } catch (e) {
        const m = (e as Error).message;
        if (q === 'required' || !/agent|quiesce/i.test(m)) throw e;
      }
    }
    if (!quiesced) await vm.driver.snapshotDisks(name, plan, { quiesce: false, reuseExternal: reuse });
    return { uuid, quiesced, volumes: result };
  });
}
