// A VM's life on this host: start (idempotent: a running VM is reported, not restarted), stop
// (ACPI with a deadline, then force where allowed), destroy, reboot, pause/resume, state and
// sync (state mapping), console, live migration.
import { TStackError } from '../../shared/errors.js';
import * as kvm from '../../shared/protocol/kvm.js';
import { buildDomainXml, canonicalUuid, domainName, vmUuidOfDomain, withVncListen } from '../domain-xml.js';
import type { HypervisorDriver } from '../hypervisor/driver.js';
import type { Req, Res, VmContext } from './context.js';
import { precheck } from './precheck.js';

export async function start(vm: VmContext, req: Req<typeof kvm.VmStart>, signal?: AbortSignal): Promise<Res<typeof kvm.VmStart>> {
  const spec = req.spec;
  const uuid = canonicalUuid(spec.uuid);
  const name = domainName(uuid);
  return vm.watcher.during(uuid, async () => {
    const cur = await vm.driver.get(name);
    if (cur && cur.active) {
      const p = await vm.parsed(name);
      const r: Res<typeof kvm.VmStart> = { uuid, domainName: name, state: cur.state, alreadyRunning: true, devices: p.devices };
      if (p.vnc) r.vnc = p.vnc;
      return r;
    }
    await precheck(vm, spec);
    if (signal?.aborted) throw new TStackError('CANCELLED', 'aborted');
    const xml = buildDomainXml(spec);
    if (cur) await vm.driver.undefine(name); // a stale stopped definition: the spec is the truth
    await vm.driver.defineAndStart(xml, name);
    const after = await vm.driver.get(name);
    const p = await vm.parsed(name);
    const r: Res<typeof kvm.VmStart> = { uuid, domainName: name, state: after?.state ?? 'Unknown', alreadyRunning: false, devices: p.devices };
    if (p.vnc) r.vnc = p.vnc;
    return r;
  });
}

export async function stop(vm: VmContext, req: Req<typeof kvm.VmStop>, signal?: AbortSignal): Promise<Res<typeof kvm.VmStop>> {
  const uuid = canonicalUuid(req.uuid);
  const name = domainName(uuid);
  const timeoutMs = req.timeoutMs ?? 60_000;
  return vm.watcher.during(uuid, async () => {
    const cur = await vm.driver.get(name);
    if (!cur || !cur.active) {
      if (cur) await vm.driver.undefine(name);
      return { uuid, state: 'Stopped' as const, forced: false, wasRunning: false };
    }
    let forced = false;
    if (req.type === 'force' || cur.state === 'Paused') {
      // a paused guest cannot act on the power button
      if (req.type === 'cold' && cur.state === 'Paused') {
        throw new TStackError('CONFLICT', `VM ${uuid} is paused and cannot shut down through ACPI; resume it first, or stop with type 'grace'/'force'`);
      }
      await vm.driver.destroy(name);
      forced = true;
    } else {
      try {
        await vm.driver.shutdown(name);
      } catch (e) {
        // it may have stopped between the check and the call
        const s = await vm.driver.get(name);
        if (s && s.active) throw e;
      }
      const down = await vm.waitInactive(name, timeoutMs, signal);
      if (!down) {
        if (req.type === 'cold') {
          throw new TStackError('TIMEOUT', `VM ${uuid} did not power off within ${timeoutMs} ms after the ACPI power button (the guest may ignore ACPI); retry with type 'grace' or 'force'`, { timeoutMs });
        }
        await vm.driver.destroy(name);
        forced = true;
      }
    }
    await vm.waitInactive(name, 30_000, signal);
    await vm.driver.undefine(name);
    return { uuid, state: 'Stopped' as const, forced, wasRunning: true };
  });
}

export async function destroy(vm: VmContext, req: Req<typeof kvm.VmDestroy>): Promise<Res<typeof kvm.VmDestroy>> {
  const uuid = canonicalUuid(req.uuid);
  const name = domainName(uuid);
  return vm.watcher.during(uuid, async () => {
    const cur = await vm.driver.get(name);
    if (!cur) return { uuid, existed: false };
    await vm.driver.destroy(name);
    await vm.driver.undefine(name);
    return { uuid, existed: true };
  });
}

export async function reboot(vm: VmContext, req: Req<typeof kvm.VmReboot>): Promise<Res<typeof kvm.VmReboot>> {
  const uuid = canonicalUuid(req.uuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'reboot', ['Running']);
    await vm.driver.reboot(name, req.type ?? 'acpi');
    return { uuid, state: (await vm.driver.get(name))?.state ?? 'Unknown' };
  });
}

export async function pause(vm: VmContext, req: Req<typeof kvm.VmPause>): Promise<Res<typeof kvm.VmPause>> {
  const uuid = canonicalUuid(req.uuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'pause');
    if ((await vm.driver.get(name))?.state !== 'Paused') await vm.driver.suspend(name);
    return { uuid, state: (await vm.driver.get(name))?.state ?? 'Unknown' };
  });
}

export async function resume(vm: VmContext, req: Req<typeof kvm.VmResume>): Promise<Res<typeof kvm.VmResume>> {
  const uuid = canonicalUuid(req.uuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'resume');
    if ((await vm.driver.get(name))?.state === 'Paused') await vm.driver.resume(name);
    return { uuid, state: (await vm.driver.get(name))?.state ?? 'Unknown' };
  });
}

export async function state(vm: VmContext, req: Req<typeof kvm.VmGetState>): Promise<Res<typeof kvm.VmGetState>> {
  const uuid = canonicalUuid(req.uuid);
  const name = domainName(uuid);
  const cur = await vm.driver.get(name);
  if (!cur) return { uuid, domainName: name, state: 'Stopped' };
  const out: Res<typeof kvm.VmGetState> = { uuid, domainName: name, state: cur.state };
  if (cur.state !== 'Running') {
    const r = await vm.driver.reason(name);
    if (r) out.reason = r;
  }
  try {
    const p = await vm.parsed(name);
    out.devices = p.devices;
    if (p.vcpus !== undefined) out.cpuNum = p.vcpus;
    if (p.memoryKiB !== undefined) out.memorySize = p.memoryKiB * 1024;
  } catch (e) {
    if (!(e instanceof TStackError && e.code === 'VM_NOT_FOUND')) throw e;
    return { uuid, domainName: name, state: 'Stopped' };
  }
  return out;
}

export async function sync(vm: VmContext, req: Req<typeof kvm.VmSync>): Promise<Res<typeof kvm.VmSync>> {
  const all = await vm.driver.list();
  const vms: Res<typeof kvm.VmSync>['vms'] = [];
  const foreign: Res<typeof kvm.VmSync>['foreign'] = [];
  for (const d of all) {
    const u = vmUuidOfDomain(d.name);
    if (u) {
      const s: Res<typeof kvm.VmSync>['vms'][number] = { uuid: u, domainName: d.name, state: d.state };
      if (d.cpuNum !== undefined) s.cpuNum = d.cpuNum;
      if (d.memoryKiB !== undefined) s.memorySize = d.memoryKiB * 1024;
      if (d.state !== 'Running') {
        // why it is not running (crashed, ioerror, shutdown…): what an operator needs to act
        const r = await vm.driver.reason(d.name);
        if (r) s.reason = r;
      }
      vms.push(s);
    } else if (req.includeForeign) foreign.push({ name: d.name, uuid: d.uuid, state: d.state });
  }
  return { vms, foreign };
}

export async function console(vm: VmContext, req: Req<typeof kvm.VmConsole>): Promise<Res<typeof kvm.VmConsole>> {
  const uuid = canonicalUuid(req.uuid);
  const name = await vm.mustRun(uuid, 'console');
  const p = await vm.parsed(name);
  if (!p.vnc) throw new TStackError('NOT_FOUND', `VM ${uuid} has no VNC console (start it with spec.console)`, { uuid });
  return { uuid, protocol: 'vnc', host: p.vnc.host, port: p.vnc.port };
}

/** Live migration to another host (peer-to-peer). The watcher stays quiet: the controller moves the VM. */
export async function migrate(vm: VmContext, req: Req<typeof kvm.VmMigrate>): Promise<Res<typeof kvm.VmMigrate>> {
  const uuid = canonicalUuid(req.uuid);
  const name = await vm.mustRun(uuid, 'vm/migrate');
  return vm.watcher.during(uuid, async () => {
    const started = Date.now();
    const o: Parameters<HypervisorDriver['migrate']>[1] = {
      destUri: `qemu+tcp://${req.destAddress}/system`,
      migrateUri: `tcp://${req.destAddress}`,
      copyStorage: req.copyStorage ?? false,
      unsafe: req.unsafe ?? false,
      timeoutMs: req.timeoutMs ?? 600_000,
    };
    if (req.destConsoleListen) o.destXml = withVncListen(await vm.driver.xmlWith(name, { inactive: false, secure: true, migratable: true }), req.destConsoleListen);
    await vm.driver.migrate(name, o);
    return { uuid, durationMs: Date.now() - started };
  });
}
