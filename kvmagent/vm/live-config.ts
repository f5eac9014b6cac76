// Settings changed on a running VM: vCPUs and memory (within the maxima it was started with; the
// result says how far the guest followed) and the VNC console password (live and in the config).
import { TStackError } from '../../shared/errors.js';
import type * as kvm from '../../shared/protocol/kvm.js';
import { canonicalUuid, domainName, withVncPassword } from '../domain-xml.js';
import { sleep, type Req, type Res, type VmContext } from './context.js';

export async function setCpuMemory(vm: VmContext, req: Req<typeof kvm.VmSetCpuMemory>): Promise<Res<typeof kvm.VmSetCpuMemory>> {
  const uuid = canonicalUuid(req.uuid);
  if (req.cpuNum === undefined && req.memorySize === undefined) throw new TStackError('INVALID_ARGUMENT', 'give cpuNum and/or memorySize', { field: 'cpuNum' });
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'set-cpu-memory', ['Running']);
    const xml = await vm.driver.xml(name);
    const maxCpu = Number(/<vcpu[^>]*>(\d+)<\/vcpu>/.exec(xml)?.[1] ?? '0');
    const maxMemKiB = Number(/<memory unit='KiB'>(\d+)<\/memory>/.exec(xml)?.[1] ?? '0');
    if (req.cpuNum !== undefined) {
      if (maxCpu && req.cpuNum > maxCpu) {
        throw new TStackError('INVALID_ARGUMENT', `cpuNum ${req.cpuNum} exceeds the VM's maximum of ${maxCpu} vCPUs; raising it needs a restart with a larger spec.maxCpuNum`, { field: 'cpuNum', max: maxCpu });
      }
      try {
        await vm.driver.setVcpus(name, req.cpuNum);
      } catch (e) {
        const err = TStackError.from(e);
        throw new TStackError(err.code, `changing vCPUs of the running VM failed (the guest or machine type may not support CPU hot-(un)plug; lowering vCPUs needs guest cooperation): ${err.message}`, err.details);
      }
    }
    let targetKiB: number | undefined;
    if (req.memorySize !== undefined) {
      const kib = Math.ceil(req.memorySize / 1024);
      targetKiB = kib;
      if (maxMemKiB && kib > maxMemKiB) {
        throw new TStackError('INVALID_ARGUMENT', `memorySize exceeds the VM's maximum of ${maxMemKiB * 1024} bytes; raising it needs a restart with a larger spec.maxMemorySize`, { field: 'memorySize', max: maxMemKiB * 1024 });
      }
      try {
        await vm.driver.setMemory(name, kib);
      } catch (e) {
        const err = TStackError.from(e);
        throw new TStackError(err.code, `changing memory of the running VM failed (needs a virtio balloon the guest drives): ${err.message}`, err.details);
      }
    }
    // the balloon moves in the guest's time: give it a few seconds, then say how far it got
    const warnings: string[] = [];
    let p = await vm.parsed(name);
    if (targetKiB !== undefined) {
      const deadline = Date.now() + 5_000;
      while (p.memoryKiB !== targetKiB && Date.now() < deadline) {
        await sleep(vm.pollMs);
        p = await vm.parsed(name);
      }
      if (p.memoryKiB !== targetKiB) {
        warnings.push(
          `the guest has ${(p.memoryKiB ?? 0) * 1024} bytes, not the ${targetKiB * 1024} asked for: it does not drive the virtio balloon (no virtio_balloon driver?); the target is set and stays in the VM's config`,
        );
      }
    }
    if (req.cpuNum !== undefined && p.vcpus !== req.cpuNum) warnings.push(`the VM has ${p.vcpus} vCPUs, not ${req.cpuNum}: the guest did not release the vCPUs`);
    return { uuid, cpuNum: p.vcpus ?? 0, memorySize: (p.memoryKiB ?? 0) * 1024, memoryTarget: (targetKiB ?? p.memoryKiB ?? 0) * 1024, warnings };
  });
}

export async function setConsolePassword(vm: VmContext, req: Req<typeof kvm.VmSetConsolePassword>): Promise<Res<typeof kvm.VmSetConsolePassword>> {
  const uuid = canonicalUuid(req.uuid);
  const name = domainName(uuid);
  return vm.watcher.during(uuid, async () => {
    const cur = await vm.driver.get(name);
    if (!cur) throw new TStackError('VM_NOT_FOUND', `set-console-password: VM ${uuid} has no domain on this host`, { uuid });
    const scopes: Array<'live' | 'config'> = cur.active ? ['live', 'config'] : ['config'];
    for (const scope of scopes) {
      const xml = await vm.driver.xmlWith(name, { inactive: scope === 'config', secure: true });
      const g = withVncPassword(xml, req.password);
      if (!g) throw new TStackError('NOT_FOUND', `VM ${uuid} has no VNC console (start it with spec.console)`, { uuid });
      await vm.driver.updateDevice(name, g, scope);
    }
    return { uuid, hasPassword: req.password !== undefined };
  });
}
