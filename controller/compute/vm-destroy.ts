// VM destroy, recover and expunge as flows that a controller killed midway loses nothing of
// (issue 19), like vm-power.ts's actions: the API's flow runs under its job's uuid and keeps its
// outcome, resumes forward (`onResume: 'complete'`) on whichever controller takes it over, and
// the job's resumer (api/resume.ts actionJobResumer) answers from that outcome.
//
//   vm-destroy: state (→ Destroying) · domain (vm/destroy; fenced while its host is down) · done (→ Destroyed, host released)
//   vm-recover: state (Destroyed → Stopped) · done
//   vm-expunge: state (Destroyed → Expunging) · host · volumes · nics · record (deleted)
//
// The journal is written before every step (these flows are not on a hot path), so a resumed
// run goes back over no step that completed. Each step is safe to repeat: agent commands carry
// the flow's task ids (sent again, they join or answer their first run), the releases are by
// owner, what was deleted is not listed again. An expunge's answer (the VM as it was, Expunged)
// is kept in its outcome (FlowDef.result): the VM record is gone once it completes.
// Test-only fault points: <flow>:accepted and <flow>:<step> (vm-expunge:volumes…).
import { faultPause } from '../../shared/fault-pause.js';
import { logger } from '../../shared/log.js';
import * as K from '../../shared/protocol/kvm.js';
import type { OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import type { FlowDef } from '../workflow/flow.js';
import { releaseHost } from '../allocator/host.js';
import { releaseIp } from '../allocator/ip.js';
import { releaseMac } from '../allocator/mac.js';
import { callHost, injectFault, mustGet } from '../cloud/common.js';
import { fenceOnReturn } from '../host/fence.js';
import { markVm } from '../network/flat-reconcile.js';
import { deleteVolumeEverywhere, type LeftFiles } from '../storage/volumes.js';
import { nicsOf } from './vm-spec.js';
import { runOptsOf, stateStep, type VmOpData } from './vm-power.js';

const log = logger('vm');

// ---------------------------------------------------------------------------------------------
// destroy: the domain goes, the VM keeps its volumes and IPs (recoverable until expunged)

interface VmDestroyData extends VmOpData {
  lastHostUuid?: string;
}

const DESTROY_FROM = ['Running', 'Paused', 'Stopped', 'Unknown', 'Created', 'Error'];

export const vmDestroyFlow: FlowDef<VmDestroyData> = {
  name: 'vm-destroy',
  onResume: 'complete',
  steps: [
    stateStep<VmDestroyData>(
      () => 'vm-destroy',
      () => ({ from: DESTROY_FROM, via: 'Destroying', refusal: (vm) => `VM ${vm.name} is ${String(vm.state)}; this needs it ${DESTROY_FROM.join(' or ')}` }),
      (d) => d.from!,
      (d, vm) => {
        if (typeof vm.hostUuid === 'string') d.hostUuid = vm.hostUuid;
        if (typeof vm.lastHostUuid === 'string') d.lastHostUuid = vm.lastHostUuid;
      },
    ),
    {
      name: 'domain',
      async run(ctx) {
        const { hostUuid, vmUuid } = ctx.data;
        if (hostUuid) {
          const host = await ctx.store.get(hostUuid);
          if (host?.status === 'Connected') await callHost(ctx.controller, hostUuid, 'kvmagent', K.VmDestroy, { uuid: vmUuid }, { taskId: ctx.taskId('destroy') });
          else if (host) {
            // the host is down (the VM is Unknown there): it cannot be asked, and must not keep the VM
            // from going (ZStack's way); the domain is destroyed when the host comes back (vmsync)
            await fenceOnReturn(ctx.store, host.uuid, vmUuid);
            log.warn({ vm: vmUuid, host: hostUuid, status: host.status }, 'VM destroyed while its host is down: its domain goes when the host reconnects');
          }
        }
        injectFault('vm-destroy', 'domain');
      },
    },
    {
      name: 'done',
      async run(ctx) {
        const { hostUuid, vmUuid } = ctx.data;
        if (hostUuid) await releaseHost(ctx.store, hostUuid, vmUuid);
        // the state change to Destroyed marks the flat keys (watchFlatChanges): the entries go there
        ctx.data.vm = await ctx.store.update(vmUuid, { state: 'Destroyed', hostUuid: undefined, lastHostUuid: hostUuid ?? ctx.data.lastHostUuid });
        injectFault('vm-destroy', 'done');
      },
    },
  ],
};

/** DELETE: destroy (recoverable until expunged). */
export async function destroyVm(vm: Resource, _q: Record<string, string>, oc: OpContext): Promise<Resource> {
  faultPause('vm-destroy:accepted'); // tests: frozen after the job was acknowledged, before the flow's journal
  return (await oc.engine.run<VmDestroyData>(vmDestroyFlow, { vmUuid: vm.uuid }, runOptsOf(vm.uuid, oc.job))).vm!;
}

// ---------------------------------------------------------------------------------------------
// recover: a Destroyed VM is Stopped again (it kept its volumes and IPs)

export const vmRecoverFlow: FlowDef<VmOpData> = {
  name: 'vm-recover',
  onResume: 'complete',
  steps: [
    stateStep<VmOpData>(() => 'vm-recover', () => ({ from: ['Destroyed'], via: 'Stopped', refusal: (vm) => `VM ${vm.name} is ${String(vm.state)}; only a Destroyed VM can be recovered` }), () => 'Destroyed'),
    {
      name: 'done',
      async run(ctx) {
        ctx.data.vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        injectFault('vm-recover', 'done');
      },
    },
  ],
};

export async function recoverVm(vm: Resource, _p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  faultPause('vm-recover:accepted');
  return (await oc.engine.run<VmOpData>(vmRecoverFlow, { vmUuid: vm.uuid }, runOptsOf(vm.uuid, oc.job))).vm!;
}

// ---------------------------------------------------------------------------------------------
// expunge: the domain (again), volumes, DHCP entries, IPs, NICs and the record go for good

interface VmExpungeData extends VmOpData {
  lastHostUuid?: string;
  /** The VM as it was (Destroyed): the answer, its record gone. */
  record?: Resource;
  /** Local-storage files left on a host that is down. */
  leftFiles: LeftFiles[];
}

export const vmExpungeFlow: FlowDef<VmExpungeData> = {
  name: 'vm-expunge',
  onResume: 'complete',
  result: (d) => ({ ...d.record!, state: 'Expunged', ...(d.leftFiles.length ? { leftFiles: d.leftFiles } : {}) }),
  steps: [
    // a failure before the record goes leaves the VM Destroyed (an expunge can be retried)
    stateStep<VmExpungeData>(
      () => 'vm-expunge',
      () => ({ from: ['Destroyed'], via: 'Expunging', refusal: (vm) => `VM ${vm.name} is ${String(vm.state)}; only a Destroyed VM can be expunged` }),
      () => 'Destroyed',
      (d, vm) => {
        d.record = vm;
        if (typeof vm.lastHostUuid === 'string') d.lastHostUuid = vm.lastHostUuid;
      },
    ),
    {
      name: 'host',
      async run(ctx) {
        const last = ctx.data.lastHostUuid;
        const lastHost = last !== undefined ? await ctx.store.get(last) : undefined;
        if (lastHost) {
          // the domain went at destroy; this is a second sweep, skipped while the host is down
          // (a dead host must not keep its VMs from being expunged)
          if (lastHost.status === 'Connected') await callHost(ctx.controller, lastHost.uuid, 'kvmagent', K.VmDestroy, { uuid: ctx.data.vmUuid }, { taskId: ctx.taskId('destroy') });
          markVm(ctx.controller.reconcile, await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance'));
          await releaseHost(ctx.store, lastHost.uuid, ctx.data.vmUuid);
        }
        injectFault('vm-expunge', 'host');
      },
    },
    {
      name: 'volumes',
      async run(ctx) {
        const { vmUuid, lastHostUuid } = ctx.data;
        // a volume deleted before a crash is not listed again; one caught mid-delete is deleted again (same task id)
        for (const vol of (await ctx.store.list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: vmUuid }] })).items) {
          if (vol.type === 'Root' || vol._createdWithVm !== false) {
            const left = await deleteVolumeEverywhere(ctx.controller, { uuid: vol.uuid, size: Number(vol.size ?? 0) }, lastHostUuid, { localHostDown: 'leave', taskId: ctx.taskId(`vol-${vol.uuid}`) });
            if (left) {
              ctx.data.leftFiles.push(left);
              await ctx.save();
            }
          } else await ctx.store.update(vol.uuid, { vmInstanceUuid: undefined, deviceId: undefined }); // attached later: kept, detached
        }
        if (ctx.data.leftFiles.length) log.warn({ vm: vmUuid, leftFiles: ctx.data.leftFiles }, 'expunged with its host down: these local-storage files stay on the host (delete them there)');
        injectFault('vm-expunge', 'volumes');
      },
    },
    {
      name: 'nics',
      async run(ctx) {
        for (const nic of await nicsOf(ctx.controller, ctx.data.vmUuid)) {
          await releaseIp(ctx.store, String(nic.l3NetworkUuid), String(nic.ip), nic.uuid);
          await releaseMac(ctx.store, String(nic.mac), nic.uuid);
          await ctx.store.delete(nic.uuid);
        }
        injectFault('vm-expunge', 'nics');
      },
    },
    {
      name: 'record',
      async run(ctx) {
        await ctx.store.delete(ctx.data.vmUuid);
        injectFault('vm-expunge', 'record');
      },
    },
  ],
};

export async function expungeVm(vm: Resource, _p: Record<string, unknown>, oc: OpContext): Promise<unknown> {
  faultPause('vm-expunge:accepted');
  const data = await oc.engine.run<VmExpungeData>(vmExpungeFlow, { vmUuid: vm.uuid, leftFiles: [] }, runOptsOf(vm.uuid, oc.job));
  return vmExpungeFlow.result!(data);
}

