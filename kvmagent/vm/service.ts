// VM operations: the policy between the protocol and a hypervisor driver — pre-checks that turn
// bad specs into typed errors before libvirt sees them, idempotency (destroy twice, start a
// running VM, attach an attached volume), waiting (ACPI stop, device release) and state mapping.
// One method per command; the work is in the modules by subject (lifecycle, disks, nics,
// live-config, snapshot), each a function of the shared VmContext.
import type * as kvm from '../../shared/protocol/kvm.js';
import { VmContext, type Req, type Res } from './context.js';
import * as disks from './disks.js';
import * as lifecycle from './lifecycle.js';
import * as liveConfig from './live-config.js';
import * as nics from './nics.js';
import { precheck } from './precheck.js';
import * as snapshots from './snapshot.js';

export type { VmServiceOptions } from './context.js';

export class VmService extends VmContext {
  /** Typed pre-checks of a spec against this host. Throws the first problem. */
  precheck(spec: kvm.VmSpecT): Promise<void> {
    return precheck(this, spec);
  }

  start(req: Req<typeof kvm.VmStart>, signal?: AbortSignal): Promise<Res<typeof kvm.VmStart>> {
    return lifecycle.start(this, req, signal);
  }

  stop(req: Req<typeof kvm.VmStop>, signal?: AbortSignal): Promise<Res<typeof kvm.VmStop>> {
    return lifecycle.stop(this, req, signal);
  }

  destroy(req: Req<typeof kvm.VmDestroy>): Promise<Res<typeof kvm.VmDestroy>> {
    return lifecycle.destroy(this, req);
  }

  reboot(req: Req<typeof kvm.VmReboot>): Promise<Res<typeof kvm.VmReboot>> {
    return lifecycle.reboot(this, req);
  }

  pause(req: Req<typeof kvm.VmPause>): Promise<Res<typeof kvm.VmPause>> {
    return lifecycle.pause(this, req);
  }

  resume(req: Req<typeof kvm.VmResume>): Promise<Res<typeof kvm.VmResume>> {
    return lifecycle.resume(this, req);
  }

  state(req: Req<typeof kvm.VmGetState>): Promise<Res<typeof kvm.VmGetState>> {
    return lifecycle.state(this, req);
  }

  sync(req: Req<typeof kvm.VmSync>): Promise<Res<typeof kvm.VmSync>> {
    return lifecycle.sync(this, req);
  }

  console(req: Req<typeof kvm.VmConsole>): Promise<Res<typeof kvm.VmConsole>> {
    return lifecycle.console(this, req);
  }

  migrate(req: Req<typeof kvm.VmMigrate>): Promise<Res<typeof kvm.VmMigrate>> {
    return lifecycle.migrate(this, req);
  }

  attachVolume(req: Req<typeof kvm.VmAttachVolume>): Promise<Res<typeof kvm.VmAttachVolume>> {
    return disks.attachVolume(this, req);
  }

  detachVolume(req: Req<typeof kvm.VmDetachVolume>, signal?: AbortSignal): Promise<Res<typeof kvm.VmDetachVolume>> {
    return disks.detachVolume(this, req, signal);
  }

  attachNic(req: Req<typeof kvm.VmAttachNic>): Promise<Res<typeof kvm.VmAttachNic>> {
    return nics.attachNic(this, req);
  }

  detachNic(req: Req<typeof kvm.VmDetachNic>, signal?: AbortSignal): Promise<Res<typeof kvm.VmDetachNic>> {
    return nics.detachNic(this, req, signal);
  }

  setCpuMemory(req: Req<typeof kvm.VmSetCpuMemory>): Promise<Res<typeof kvm.VmSetCpuMemory>> {
    return liveConfig.setCpuMemory(this, req);
  }

  attachIso(req: Req<typeof kvm.VmAttachIso>): Promise<Res<typeof kvm.VmAttachIso>> {
    return disks.attachIso(this, req);
  }

  detachIso(req: Req<typeof kvm.VmDetachIso>): Promise<Res<typeof kvm.VmDetachIso>> {
    return disks.detachIso(this, req);
  }

  resizeVolume(req: Req<typeof kvm.VmResizeVolume>): Promise<Res<typeof kvm.VmResizeVolume>> {
    return disks.resizeVolume(this, req);
  }

  setVolumeQos(req: Req<typeof kvm.VmSetVolumeQos>): Promise<Res<typeof kvm.VmSetVolumeQos>> {
    return disks.setVolumeQos(this, req);
  }

  setNicQos(req: Req<typeof kvm.VmSetNicQos>): Promise<Res<typeof kvm.VmSetNicQos>> {
    return nics.setNicQos(this, req);
  }

  setConsolePassword(req: Req<typeof kvm.VmSetConsolePassword>): Promise<Res<typeof kvm.VmSetConsolePassword>> {
    return liveConfig.setConsolePassword(this, req);
  }

  snapshot(req: Req<typeof kvm.VmSnapshot>): Promise<Res<typeof kvm.VmSnapshot>> {
    return snapshots.snapshot(this, req);
  }
}
