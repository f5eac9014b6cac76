// NICs of a running VM: hot-plug (idempotent attach, detach waiting for the guest) and bandwidth.
import { TStackError } from '../../shared/errors.js';
import type * as kvm from '../../shared/protocol/kvm.js';
import { bandwidthKiB, canonicalUuid, domainName, nicAlias, nicInternalName, nicXml, type ParsedDomain } from '../domain-xml.js';
import type { Req, Res, VmContext } from './context.js';

export async function attachNic(vm: VmContext, req: Req<typeof kvm.VmAttachNic>): Promise<Res<typeof kvm.VmAttachNic>> {
  const uuid = canonicalUuid(req.uuid);
  const n = req.nic;
  const nicUuid = canonicalUuid(n.uuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'attach-nic');
    const p = await vm.parsed(name);
    const mine = p.devices.nics.find((d) => d.uuid === nicUuid);
    if (mine) return { uuid, nicUuid, internalName: mine.internalName ?? nicInternalName(n), alreadyAttached: true };
    if (p.devices.nics.some((d) => d.mac.toLowerCase() === n.mac.toLowerCase())) {
      throw new TStackError('CONFLICT', `VM ${uuid} already has a NIC with MAC ${n.mac}`, { field: 'nic.mac' });
    }
    if (vm.check && !(await vm.network.bridgeExists(n.bridge))) {
      throw new TStackError('NETWORK_ERROR', `bridge '${n.bridge}' does not exist on this host; create the L2 network's bridge first`, { field: 'nic.bridge', bridge: n.bridge });
    }
    await vm.driver.attachDevice(name, nicXml(n));
    return { uuid, nicUuid, internalName: nicInternalName(n), alreadyAttached: false };
  });
}

export async function detachNic(vm: VmContext, req: Req<typeof kvm.VmDetachNic>, signal?: AbortSignal): Promise<Res<typeof kvm.VmDetachNic>> {
  const uuid = canonicalUuid(req.uuid);
  const nicUuid = canonicalUuid(req.nicUuid);
  return vm.watcher.during(uuid, async () => {
    const name = domainName(uuid);
    if (!(await vm.driver.get(name))) return { uuid, nicUuid, wasAttached: false };
    const has = (p: ParsedDomain): boolean => p.devices.nics.some((d) => d.uuid === nicUuid);
    if (!has(await vm.parsed(name))) return { uuid, nicUuid, wasAttached: false };
    await vm.driver.detachDeviceAlias(name, nicAlias(nicUuid));
    const timeoutMs = req.timeoutMs ?? 30_000;
    if (!(await vm.waitDeviceGone(name, has, timeoutMs, signal))) {
      throw new TStackError('TIMEOUT', `the guest of VM ${uuid} did not release NIC ${nicUuid} within ${timeoutMs} ms`, { nicUuid });
    }
    return { uuid, nicUuid, wasAttached: true };
  });
}

export async function setNicQos(vm: VmContext, req: Req<typeof kvm.VmSetNicQos>): Promise<Res<typeof kvm.VmSetNicQos>> {
  const uuid = canonicalUuid(req.uuid);
  const nicUuid = canonicalUuid(req.nicUuid);
  return vm.watcher.during(uuid, async () => {
    const name = await vm.mustRun(uuid, 'set-nic-qos');
    const n = (await vm.parsed(name)).devices.nics.find((x) => x.uuid === nicUuid);
    if (!n?.internalName) throw new TStackError('NOT_FOUND', `NIC ${nicUuid} is not attached to VM ${uuid}`, { nicUuid });
    const bw = bandwidthKiB(req.qos);
    await vm.driver.ifaceTune(name, n.internalName, { inbound: bw.inbound ?? 0, outbound: bw.outbound ?? 0 });
    return { uuid, nicUuid, qos: req.qos };
  });
}
