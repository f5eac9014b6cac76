// Typed pre-checks of a VM spec against this host, so that a bad spec fails with a field and a
// reason before libvirt sees it.
import { dirname } from 'node:path';
import { TStackError } from '../../shared/errors.js';
import type * as kvm from '../../shared/protocol/kvm.js';
import { specProblems } from '../domain-xml.js';
import { exists, type VmContext } from './context.js';

/** Typed pre-checks of a spec against this host. Throws the first problem. */
export async function precheck(vm: VmContext, spec: kvm.VmSpecT): Promise<void> {
  const probs = specProblems(spec);
  if (probs.length) {
    const p = probs[0]!;
    throw new TStackError('INVALID_ARGUMENT', `vm/start: field '${p.field}': ${p.reason}`, { field: p.field, reason: p.reason, errors: probs });
  }
  if (!vm.check) return;
  const vols = [spec.rootVolume, ...spec.dataVolumes];
  for (const [i, v] of vols.entries()) {
    if (v.source.type === 'file' && !(await exists(v.source.path))) {
      const field = i === 0 ? 'spec.rootVolume.source.path' : `spec.dataVolumes.${i - 1}.source.path`;
      throw new TStackError('VOLUME_NOT_FOUND', `volume ${v.uuid}: file ${v.source.path} does not exist (or is unreadable) on this host`, { field, volumeUuid: v.uuid, path: v.source.path });
    }
  }
  for (const [i, iso] of spec.cdroms.entries()) {
    if (!(await exists(iso))) throw new TStackError('IMAGE_NOT_FOUND', `ISO ${iso} does not exist on this host`, { field: `spec.cdroms.${i}`, path: iso });
  }
  if (spec.configDrive && !(await exists(spec.configDrive))) {
    throw new TStackError('IMAGE_NOT_FOUND', `config drive ${spec.configDrive} does not exist on this host`, { field: 'spec.configDrive', path: spec.configDrive });
  }
  for (const [i, n] of spec.nics.entries()) {
    if (!(await vm.network.bridgeExists(n.bridge))) {
      throw new TStackError('NETWORK_ERROR', `NIC ${n.uuid}: bridge '${n.bridge}' does not exist on this host; create the L2 network's bridge first (network/bridge/create)`, {
        field: `spec.nics.${i}.bridge`,
        bridge: n.bridge,
      });
    }
  }
  if (spec.serialLogPath && !(await exists(dirname(spec.serialLogPath)))) {
    throw new TStackError('INVALID_ARGUMENT', `serialLogPath: directory ${dirname(spec.serialLogPath)} does not exist`, { field: 'spec.serialLogPath' });
  }
}
