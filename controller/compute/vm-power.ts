// VM start, stop, reboot, pause and resume as flows that a controller killed midway loses
// nothing of (issue 19): the API's flow runs under its job's uuid and keeps its outcome, resumes
// forward (`onResume: 'complete'`) on whichever controller takes it over, and the job's resumer
// (api/resume.ts actionJobResumer) answers with the VM as the flow left it.
//
//   vm-start: state (→ Starting) · host · dhcp · start · done (→ Running)
//   vm-power: state (→ Stopping/Rebooting/Pausing/Resuming) · command · done (→ Stopped/Running/Paused)
//
// `state` journals the state the VM had before moving it (its rollback moves it back: a start
// that fails leaves the VM Stopped, any other operation leaves it as it was); `done` journals
// first, so a resumed run never goes back over the steps before it once the VM reached its new
// state. Every step is safe to repeat: agent commands carry the flow's task ids (a command sent
// again joins or answers its first run), the host allocation is idempotent per VM, the state
// writes are plain updates. Test-only fault points: <flow op>:accepted and :<step> (vm-stop:done…).
import { TStackError } from '../../shared/errors.js';
import { faultPause } from '../../shared/fault-pause.js';
import * as K from '../../shared/protocol/kvm.js';
import type { OpContext } from '../api/registry.js';
import type { JobContext } from '../jobs/jobs.js';
import type { Resource } from '../store/types.js';
import { allocateHost, releaseHost } from '../allocator/host.js';
import { callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { markVm } from '../network/flat-reconcile.js';
import type { FlowContext, FlowData, FlowDef, FlowStep } from '../workflow/flow.js';
import { allocateHostFor } from './affinity.js';
import { addServices, l2sOf, pinnedHost, startOnHost } from './vm-spec.js';

export interface VmOpData extends FlowData {
  vmUuid: string;
  /** The state the VM had (journaled before it moves; the rollback restores it). */
  from?: string;
  hostUuid?: string;
  /** The VM as `done` left it: the flow's result (set by the last step, never journaled). */
  vm?: Resource;
}

/** Moves the VM to `via` once, from one of `move(data).from`; rolled back to `restore(data)`. */
export function stateStep<D extends VmOpData>(fault: (d: D) => string, move: (d: D) => { from: string[]; via: string; refusal: (vm: Resource) => string }, restore: (d: D) => string, onMove?: (d: D, vm: Resource) => void): FlowStep<D> {
  return {
    name: 'state',
    async run(ctx) {
      const m = move(ctx.data);
      const cur = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
      // resumed after the move: the transitional state is this flow's
      if (ctx.data.from !== undefined && cur.state === m.via) return;
      if (!m.from.includes(String(cur.state))) throw new TStackError('CONFLICT', m.refusal(cur), { state: cur.state });
      ctx.data.from = String(cur.state);
      onMove?.(ctx.data, cur);
      await ctx.save();
      await ctx.store.transition(cur.uuid, ctx.data.from, m.via);
      injectFault(fault(ctx.data), 'state');
    },
    async rollback(ctx) {
      if (ctx.data.from === undefined) return;
      const cur = await ctx.store.get(ctx.data.vmUuid);
      if (cur?.state === move(ctx.data).via) await ctx.store.update(cur.uuid, { state: restore(ctx.data) });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// start

interface VmStartData extends VmOpData {
  /** Written with the final state (HA: lastHaStartDate). */
  patch?: Partial<Resource>;
  services?: boolean;
  started?: boolean;
  serialLogPath?: string;
}
type StartCtx = FlowContext<VmStartData>;

const START_FROM = ['Stopped', 'Created'];

export const vmStartFlow: FlowDef<VmStartData> = {
  name: 'vm-start',
  onResume: 'complete',
  journal: 'saves',
  steps: [
    // a start that fails leaves the VM Stopped (a Created VM too)
    stateStep<VmStartData>(() => 'vm-start', () => ({ from: START_FROM, via: 'Starting', refusal: (vm) => `VM ${vm.name} is ${String(vm.state)}; only a Stopped VM can be started` }), () => 'Stopped'),
    {
      name: 'host',
      async run(ctx: StartCtx) {
        const d = ctx.controller;
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        const req: Parameters<typeof allocateHost>[1] = { cpuNum: Number(vm.cpuNum), memorySize: Number(vm.memorySize), l2NetworkUuids: await l2sOf(d, vm.l3NetworkUuids as string[]), hypervisorType: 'KVM' };
        const pinned = (await pinnedHost(d, vm)) ?? ctx.data.hostUuid;
        if (pinned) req.hostUuid = pinned;
        // resumed (maybe on another controller): the store holds the reservation this VM may have
        if (ctx.resumed) req.fromStore = true;
        const a = await allocateHostFor(ctx.store, req, vm);
        ctx.data.hostUuid = a.hostUuid;
        await ctx.save();
        // the host that will serve the VM's DHCP and metadata (flat-reconcile.ts reads hostUuid)
        await ctx.store.update(vm.uuid, { hostUuid: a.hostUuid });
        injectFault('vm-start', 'host');
      },
      async rollback(ctx: StartCtx) {
        if (ctx.data.hostUuid) await releaseHost(ctx.store, ctx.data.hostUuid, ctx.data.vmUuid);
        await ctx.store.update(ctx.data.vmUuid, { hostUuid: undefined });
      },
    },
    {
      name: 'dhcp',
      async run(ctx: StartCtx) {
        const d = ctx.controller;
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        // the host it last ran on stops serving it (hostUuid now wins over lastHostUuid)
        markVm(d.reconcile, vm);
        ctx.data.services = true;
        await ctx.save();
        await addServices(d, vm, ctx.data.hostUuid!);
        injectFault('vm-start', 'dhcp');
      },
      async rollback(ctx: StartCtx) {
        if (ctx.data.services) markVm(ctx.controller.reconcile, { ...(await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance')), hostUuid: ctx.data.hostUuid });
      },
    },
    {
      name: 'start',
      async run(ctx: StartCtx) {
        const vm = await mustGet(ctx.store, ctx.data.vmUuid, 'vm-instance');
        ctx.data.started = true;
        await ctx.save();
        // sent again after a crash, the agent joins or answers the first run (or finds the domain running)
        const spec = await startOnHost(ctx.controller, vm, ctx.data.hostUuid!, {}, { taskId: ctx.taskId('start') });
        if (spec.serialLogPath) ctx.data.serialLogPath = spec.serialLogPath;
        injectFault('vm-start', 'start');
      },
      async rollback(ctx: StartCtx) {
        if (ctx.data.started) await callHost(ctx.controller, ctx.data.hostUuid!, 'kvmagent', K.VmDestroy, { uuid: ctx.data.vmUuid });
      },
    },
    {
      name: 'done',
      async run(ctx: StartCtx) {
        await ctx.save();
        const hostUuid = ctx.data.hostUuid!;
        // a started VM owes no HA restart any more
        ctx.data.vm = await ctx.store.update(ctx.data.vmUuid, { ...ctx.data.patch, serialLogPath: ctx.data.serialLogPath, _bootFromIso: false, state: 'Running', hostUuid, lastHostUuid: hostUuid, _haPending: undefined, haReason: undefined });
        injectFault('vm-start', 'done');
      },
    },
  ],
};

/** How a flow of a job runs: under the job's uuid, its outcome kept, its progress the job's. */
export function runOptsOf(vmUuid: string, job?: JobContext): Parameters<CloudDeps['engine']['run']>[2] {
  const o: Parameters<CloudDeps['engine']['run']>[2] = { lockKeys: [vmUuid] };
  if (job) {
    o.id = job.jobUuid;
    o.keepOutcome = true;
    o.onProgress = (p, m) => job.progress(p, m);
  }
  return o;
}

/** Start a Stopped (or Created) VM on `hostUuid`, else where the allocator places it (the API's start, with its job; HA restarts). */
export async function startStoppedVm(d: CloudDeps, vmUuid: string, hostUuid?: string, patch: Partial<Resource> = {}, job?: JobContext): Promise<Resource> {
  const data: VmStartData = { vmUuid, patch };
  if (hostUuid) data.hostUuid = hostUuid;
  faultPause('vm-start:accepted'); // tests: frozen after the job was acknowledged, before the flow's journal
  return (await d.engine.run(vmStartFlow, data, runOptsOf(vmUuid, job))).vm!;
}

// ---------------------------------------------------------------------------------------------
// stop, reboot, pause, resume

type PowerOp = 'stop' | 'reboot' | 'pause' | 'resume';

const OPS: Record<PowerOp, { from: string[]; via: string; to: string }> = {
  stop: { from: ['Running', 'Paused', 'Unknown'], via: 'Stopping', to: 'Stopped' },
  reboot: { from: ['Running'], via: 'Rebooting', to: 'Running' },
  pause: { from: ['Running'], via: 'Pausing', to: 'Paused' },
  resume: { from: ['Paused'], via: 'Resuming', to: 'Running' },
};

interface VmPowerData extends VmOpData {
  op: PowerOp;
  /** vm/stop's type. */
  stopType?: 'grace' | 'force';
}

export const vmPowerFlow: FlowDef<VmPowerData> = {
  name: 'vm-power',
  onResume: 'complete',
  journal: 'saves',
  steps: [
    stateStep<VmPowerData>(
      (d) => `vm-${d.op}`,
      (d) => ({ ...OPS[d.op], refusal: (vm) => `VM ${vm.name} is ${String(vm.state)}; this needs it ${OPS[d.op].from.join(' or ')}` }),
      (d) => d.from!,
      (d, vm) => void (d.hostUuid = String(vm.hostUuid)),
    ),
    {
      name: 'command',
      async run(ctx) {
        const { op, vmUuid: uuid, hostUuid } = ctx.data;
        const o = { taskId: ctx.taskId(op) };
        const d = ctx.controller;
        if (op === 'stop') await callHost(d, hostUuid!, 'kvmagent', K.VmStop, { uuid, type: ctx.data.stopType ?? 'grace', timeoutMs: 60_000 }, o);
        else await callHost(d, hostUuid!, 'kvmagent', op === 'reboot' ? K.VmReboot : op === 'pause' ? K.VmPause : K.VmResume, { uuid }, o);
        injectFault(`vm-${op}`, 'command');
      },
    },
    {
      name: 'done',
      async run(ctx) {
        await ctx.save();
        const { op, vmUuid, hostUuid } = ctx.data;
        if (op === 'stop') {
          await releaseHost(ctx.store, hostUuid!, vmUuid);
          ctx.data.vm = await ctx.store.update(vmUuid, { state: OPS.stop.to, hostUuid: undefined, lastHostUuid: hostUuid });
        } else ctx.data.vm = await ctx.store.update(vmUuid, { state: OPS[op].to });
        injectFault(`vm-${op}`, 'done');
      },
    },
  ],
};

async function power(d: CloudDeps, vmUuid: string, op: PowerOp, job?: JobContext, stopType?: VmPowerData['stopType']): Promise<Resource> {
  const data: VmPowerData = { vmUuid, op };
  if (stopType) data.stopType = stopType;
  faultPause(`vm-${op}:accepted`); // tests: frozen after the job was acknowledged, before the flow's journal
  return (await d.engine.run(vmPowerFlow, data, runOptsOf(vmUuid, job))).vm!;
}

// ---------------------------------------------------------------------------------------------
// the API's actions

export const startVm = (vm: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> => startStoppedVm(oc, vm.uuid, typeof params.hostUuid === 'string' ? params.hostUuid : undefined, {}, oc.job);

export const stopVm = (vm: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> => power(oc, vm.uuid, 'stop', oc.job, params.type === 'cold' ? 'force' : 'grace');

export const powerAction =
  (op: Exclude<PowerOp, 'stop'>) =>
  (vm: Resource, _p: Record<string, unknown>, oc: OpContext): Promise<Resource> =>
    power(oc, vm.uuid, op, oc.job);
