// VM operations: the policy between the protocol and a hypervisor driver — pre-checks that turn
// bad specs into typed errors before libvirt sees them, idempotency (destroy twice, start a
// running VM, attach an attached volume), waiting (ACPI stop, device release) and state mapping.
import { access, constants } from 'node:fs/promises';
import { dirname } from 'node:path';
import { TStackError } from '../../shared/errors.js';
import type { RequestOf, ResponseOf } from '../../shared/protocol/command.js';
import * as kvm from '../../shared/protocol/kvm.js';
import {
  buildDomainXml,
  canonicalUuid,
  diskXml,
  domainName,
  nicAlias,
  nicInternalName,
  nicXml,
  parseDomainXml,
  specProblems,
  targetDev,
  volumeAlias,
  vmUuidOfDomain,
  withVncListen,
  withVncPassword,
  type ParsedDomain,
  iotuneFields,
  bandwidthKiB,
} from '../domain-xml.js';
import type { DiskSnapshotSpec, HypervisorDriver } from '../hypervisor/driver.js';
import type { NetworkBackend } from '../network/bridges.js';
import type { StateWatcher } from '../watcher.js';

export interface VmServiceOptions {
  /** Check that volume files, ISOs and NIC bridges exist before starting (default true). */
  checkHostResources?: boolean;
  /** Poll interval while waiting for a state or device change (default 200 ms). */
  pollMs?: number;
}

type Res<C> = ResponseOf<C>;
type Req<C> = RequestOf<C>;

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new TStackError('CANCELLED', 'aborted'));
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new TStackError('CANCELLED', 'aborted'));
      },
      { once: true },
    );
  });

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export class VmService {
  private readonly check: boolean;
  private readonly pollMs: number;

  constructor(
    readonly driver: HypervisorDriver,
    readonly network: NetworkBackend,
    readonly watcher: StateWatcher,
    opts: VmServiceOptions = {},
  ) {
    this.check = opts.checkHostResources ?? true;
    this.pollMs = opts.pollMs ?? 200;
  }

  private async parsed(name: string): Promise<ParsedDomain> {
    return parseDomainXml(await this.driver.xml(name));
  }

  /** Typed pre-checks of a spec against this host. Throws the first problem. */
  async precheck(spec: kvm.VmSpecT): Promise<void> {
    const probs = specProblems(spec);
    if (probs.length) {
      const p = probs[0]!;
      throw new TStackError('INVALID_ARGUMENT', `vm/start: field '${p.field}': ${p.reason}`, { field: p.field, reason: p.reason, errors: probs });
    }
    if (!this.check) return;
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
      if (!(await this.network.bridgeExists(n.bridge))) {
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

  async start(req: Req<typeof kvm.VmStart>, signal?: AbortSignal): Promise<Res<typeof kvm.VmStart>> {
    const spec = req.spec;
    const uuid = canonicalUuid(spec.uuid);
    const name = domainName(uuid);
    return this.watcher.during(uuid, async () => {
      const cur = await this.driver.get(name);
      if (cur && cur.active) {
        const p = await this.parsed(name);
        const r: Res<typeof kvm.VmStart> = { uuid, domainName: name, state: cur.state, alreadyRunning: true, devices: p.devices };
        if (p.vnc) r.vnc = p.vnc;
        return r;
      }
      await this.precheck(spec);
      if (signal?.aborted) throw new TStackError('CANCELLED', 'aborted');
      const xml = buildDomainXml(spec);
      if (cur) await this.driver.undefine(name); // a stale stopped definition: the spec is the truth
      await this.driver.defineAndStart(xml, name);
      const after = await this.driver.get(name);
      const p = await this.parsed(name);
      const r: Res<typeof kvm.VmStart> = { uuid, domainName: name, state: after?.state ?? 'Unknown', alreadyRunning: false, devices: p.devices };
      if (p.vnc) r.vnc = p.vnc;
      return r;
    });
  }

  private async waitInactive(name: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.driver.get(name);
      if (!s || !s.active) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())), signal);
    }
  }

  async stop(req: Req<typeof kvm.VmStop>, signal?: AbortSignal): Promise<Res<typeof kvm.VmStop>> {
    const uuid = canonicalUuid(req.uuid);
    const name = domainName(uuid);
    const timeoutMs = req.timeoutMs ?? 60_000;
    return this.watcher.during(uuid, async () => {
      const cur = await this.driver.get(name);
      if (!cur || !cur.active) {
        if (cur) await this.driver.undefine(name);
        return { uuid, state: 'Stopped' as const, forced: false, wasRunning: false };
      }
      let forced = false;
      if (req.type === 'force' || cur.state === 'Paused') {
        // a paused guest cannot act on the power button
        if (req.type === 'cold' && cur.state === 'Paused') {
          throw new TStackError('CONFLICT', `VM ${uuid} is paused and cannot shut down through ACPI; resume it first, or stop with type 'grace'/'force'`);
        }
        await this.driver.destroy(name);
        forced = true;
      } else {
        try {
          await this.driver.shutdown(name);
        } catch (e) {
          // it may have stopped between the check and the call
          const s = await this.driver.get(name);
          if (s && s.active) throw e;
        }
        const down = await this.waitInactive(name, timeoutMs, signal);
        if (!down) {
          if (req.type === 'cold') {
            throw new TStackError('TIMEOUT', `VM ${uuid} did not power off within ${timeoutMs} ms after the ACPI power button (the guest may ignore ACPI); retry with type 'grace' or 'force'`, { timeoutMs });
          }
          await this.driver.destroy(name);
          forced = true;
        }
      }
      await this.waitInactive(name, 30_000, signal);
      await this.driver.undefine(name);
      return { uuid, state: 'Stopped' as const, forced, wasRunning: true };
    });
  }

  async destroy(req: Req<typeof kvm.VmDestroy>): Promise<Res<typeof kvm.VmDestroy>> {
    const uuid = canonicalUuid(req.uuid);
    const name = domainName(uuid);
    return this.watcher.during(uuid, async () => {
      const cur = await this.driver.get(name);
      if (!cur) return { uuid, existed: false };
      await this.driver.destroy(name);
      await this.driver.undefine(name);
      return { uuid, existed: true };
    });
  }

  private async mustRun(uuid: string, what: string, allowed: kvm.VmStateT[] = ['Running', 'Paused']): Promise<string> {
    const name = domainName(uuid);
    const cur = await this.driver.get(name);
    if (!cur || !cur.active) throw new TStackError('VM_NOT_FOUND', `${what}: VM ${uuid} is not running on this host`, { uuid });
    if (!allowed.includes(cur.state)) throw new TStackError('CONFLICT', `${what}: VM ${uuid} is ${cur.state}`, { uuid, state: cur.state });
    return name;
  }

  async reboot(req: Req<typeof kvm.VmReboot>): Promise<Res<typeof kvm.VmReboot>> {
    const uuid = canonicalUuid(req.uuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'reboot', ['Running']);
      await this.driver.reboot(name, req.type ?? 'acpi');
      return { uuid, state: (await this.driver.get(name))?.state ?? 'Unknown' };
    });
  }

  async pause(req: Req<typeof kvm.VmPause>): Promise<Res<typeof kvm.VmPause>> {
    const uuid = canonicalUuid(req.uuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'pause');
      if ((await this.driver.get(name))?.state !== 'Paused') await this.driver.suspend(name);
      return { uuid, state: (await this.driver.get(name))?.state ?? 'Unknown' };
    });
  }

  async resume(req: Req<typeof kvm.VmResume>): Promise<Res<typeof kvm.VmResume>> {
    const uuid = canonicalUuid(req.uuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'resume');
      if ((await this.driver.get(name))?.state === 'Paused') await this.driver.resume(name);
      return { uuid, state: (await this.driver.get(name))?.state ?? 'Unknown' };
    });
  }

  async state(req: Req<typeof kvm.VmGetState>): Promise<Res<typeof kvm.VmGetState>> {
    const uuid = canonicalUuid(req.uuid);
    const name = domainName(uuid);
    const cur = await this.driver.get(name);
    if (!cur) return { uuid, domainName: name, state: 'Stopped' };
    const out: Res<typeof kvm.VmGetState> = { uuid, domainName: name, state: cur.state };
    if (cur.state !== 'Running') {
      const r = await this.driver.reason(name);
      if (r) out.reason = r;
    }
    try {
      const p = await this.parsed(name);
      out.devices = p.devices;
      if (p.vcpus !== undefined) out.cpuNum = p.vcpus;
      if (p.memoryKiB !== undefined) out.memorySize = p.memoryKiB * 1024;
    } catch (e) {
      if (!(e instanceof TStackError && e.code === 'VM_NOT_FOUND')) throw e;
      return { uuid, domainName: name, state: 'Stopped' };
    }
    return out;
  }

  async sync(req: Req<typeof kvm.VmSync>): Promise<Res<typeof kvm.VmSync>> {
    const all = await this.driver.list();
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
          const r = await this.driver.reason(d.name);
          if (r) s.reason = r;
        }
        vms.push(s);
      } else if (req.includeForeign) foreign.push({ name: d.name, uuid: d.uuid, state: d.state });
    }
    return { vms, foreign };
  }

  async console(req: Req<typeof kvm.VmConsole>): Promise<Res<typeof kvm.VmConsole>> {
    const uuid = canonicalUuid(req.uuid);
    const name = await this.mustRun(uuid, 'console');
    const p = await this.parsed(name);
    if (!p.vnc) throw new TStackError('NOT_FOUND', `VM ${uuid} has no VNC console (start it with spec.console)`, { uuid });
    return { uuid, protocol: 'vnc', host: p.vnc.host, port: p.vnc.port };
  }

  /** Live migration to another host (peer-to-peer). The watcher stays quiet: the controller moves the VM. */
  async migrate(req: Req<typeof kvm.VmMigrate>): Promise<Res<typeof kvm.VmMigrate>> {
    const uuid = canonicalUuid(req.uuid);
    const name = await this.mustRun(uuid, 'vm/migrate');
    return this.watcher.during(uuid, async () => {
      const started = Date.now();
      const o: Parameters<HypervisorDriver['migrate']>[1] = {
        destUri: `qemu+tcp://${req.destAddress}/system`,
        migrateUri: `tcp://${req.destAddress}`,
        copyStorage: req.copyStorage ?? false,
        unsafe: req.unsafe ?? false,
        timeoutMs: req.timeoutMs ?? 600_000,
      };
      if (req.destConsoleListen) o.destXml = withVncListen(await this.driver.xmlWith(name, { inactive: false, secure: true, migratable: true }), req.destConsoleListen);
      await this.driver.migrate(name, o);
      return { uuid, durationMs: Date.now() - started };
    });
  }

  private async waitDeviceGone(name: string, pred: (p: ParsedDomain) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!pred(await this.parsed(name))) return true;
      if (Date.now() >= deadline) return false;
      await sleep(this.pollMs, signal);
    }
  }

  async attachVolume(req: Req<typeof kvm.VmAttachVolume>): Promise<Res<typeof kvm.VmAttachVolume>> {
    const uuid = canonicalUuid(req.uuid);
    const v = req.volume;
    const volUuid = canonicalUuid(v.uuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'attach-volume');
      const p = await this.parsed(name);
      const mine = p.devices.volumes.find((d) => d.uuid === volUuid);
      if (mine) return { uuid, volumeUuid: volUuid, target: mine.target, alreadyAttached: true };
      const target = targetDev(v.bus, v.deviceIndex);
      const taken = p.devices.volumes.find((d) => d.target === target);
      if (taken) {
        throw new TStackError('CONFLICT', `device ${target} is already used by ${taken.uuid ? `volume ${taken.uuid}` : taken.source ?? 'another disk'}; choose another deviceIndex`, { field: 'volume.deviceIndex', target });
      }
      if (this.check && v.source.type === 'file' && !(await exists(v.source.path))) {
        throw new TStackError('VOLUME_NOT_FOUND', `volume ${volUuid}: file ${v.source.path} does not exist on this host`, { field: 'volume.source.path', path: v.source.path });
      }
      if (v.bus === 'ide') throw new TStackError('INVALID_ARGUMENT', 'IDE disks cannot be hot-plugged; use bus virtio or scsi', { field: 'volume.bus' });
      await this.driver.attachDevice(name, diskXml(v));
      return { uuid, volumeUuid: volUuid, target, alreadyAttached: false };
    });
  }

  async detachVolume(req: Req<typeof kvm.VmDetachVolume>, signal?: AbortSignal): Promise<Res<typeof kvm.VmDetachVolume>> {
    const uuid = canonicalUuid(req.uuid);
    const volUuid = canonicalUuid(req.volumeUuid);
    return this.watcher.during(uuid, async () => {
      const name = domainName(uuid);
      if (!(await this.driver.get(name))) return { uuid, volumeUuid: volUuid, wasAttached: false };
      const has = (p: ParsedDomain): boolean => p.devices.volumes.some((d) => d.uuid === volUuid);
      if (!has(await this.parsed(name))) return { uuid, volumeUuid: volUuid, wasAttached: false };
      await this.driver.detachDeviceAlias(name, volumeAlias(volUuid));
      const timeoutMs = req.timeoutMs ?? 30_000;
      if (!(await this.waitDeviceGone(name, has, timeoutMs, signal))) {
        throw new TStackError('TIMEOUT', `the guest of VM ${uuid} did not release volume ${volUuid} within ${timeoutMs} ms (no ACPI hot-plug support, or the disk is in use); it stays attached until the guest lets go or the VM stops`, { volumeUuid: volUuid });
      }
      return { uuid, volumeUuid: volUuid, wasAttached: true };
    });
  }

  async attachNic(req: Req<typeof kvm.VmAttachNic>): Promise<Res<typeof kvm.VmAttachNic>> {
    const uuid = canonicalUuid(req.uuid);
    const n = req.nic;
    const nicUuid = canonicalUuid(n.uuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'attach-nic');
      const p = await this.parsed(name);
      const mine = p.devices.nics.find((d) => d.uuid === nicUuid);
      if (mine) return { uuid, nicUuid, internalName: mine.internalName ?? nicInternalName(n), alreadyAttached: true };
      if (p.devices.nics.some((d) => d.mac.toLowerCase() === n.mac.toLowerCase())) {
        throw new TStackError('CONFLICT', `VM ${uuid} already has a NIC with MAC ${n.mac}`, { field: 'nic.mac' });
      }
      if (this.check && !(await this.network.bridgeExists(n.bridge))) {
        throw new TStackError('NETWORK_ERROR', `bridge '${n.bridge}' does not exist on this host; create the L2 network's bridge first`, { field: 'nic.bridge', bridge: n.bridge });
      }
      await this.driver.attachDevice(name, nicXml(n));
      return { uuid, nicUuid, internalName: nicInternalName(n), alreadyAttached: false };
    });
  }

  async detachNic(req: Req<typeof kvm.VmDetachNic>, signal?: AbortSignal): Promise<Res<typeof kvm.VmDetachNic>> {
    const uuid = canonicalUuid(req.uuid);
    const nicUuid = canonicalUuid(req.nicUuid);
    return this.watcher.during(uuid, async () => {
      const name = domainName(uuid);
      if (!(await this.driver.get(name))) return { uuid, nicUuid, wasAttached: false };
      const has = (p: ParsedDomain): boolean => p.devices.nics.some((d) => d.uuid === nicUuid);
      if (!has(await this.parsed(name))) return { uuid, nicUuid, wasAttached: false };
      await this.driver.detachDeviceAlias(name, nicAlias(nicUuid));
      const timeoutMs = req.timeoutMs ?? 30_000;
      if (!(await this.waitDeviceGone(name, has, timeoutMs, signal))) {
        throw new TStackError('TIMEOUT', `the guest of VM ${uuid} did not release NIC ${nicUuid} within ${timeoutMs} ms`, { nicUuid });
      }
      return { uuid, nicUuid, wasAttached: true };
    });
  }

  async setCpuMemory(req: Req<typeof kvm.VmSetCpuMemory>): Promise<Res<typeof kvm.VmSetCpuMemory>> {
    const uuid = canonicalUuid(req.uuid);
    if (req.cpuNum === undefined && req.memorySize === undefined) throw new TStackError('INVALID_ARGUMENT', 'give cpuNum and/or memorySize', { field: 'cpuNum' });
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'set-cpu-memory', ['Running']);
      const xml = await this.driver.xml(name);
      const maxCpu = Number(/<vcpu[^>]*>(\d+)<\/vcpu>/.exec(xml)?.[1] ?? '0');
      const maxMemKiB = Number(/<memory unit='KiB'>(\d+)<\/memory>/.exec(xml)?.[1] ?? '0');
      if (req.cpuNum !== undefined) {
        if (maxCpu && req.cpuNum > maxCpu) {
          throw new TStackError('INVALID_ARGUMENT', `cpuNum ${req.cpuNum} exceeds the VM's maximum of ${maxCpu} vCPUs; raising it needs a restart with a larger spec.maxCpuNum`, { field: 'cpuNum', max: maxCpu });
        }
        try {
          await this.driver.setVcpus(name, req.cpuNum);
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
          await this.driver.setMemory(name, kib);
        } catch (e) {
          const err = TStackError.from(e);
          throw new TStackError(err.code, `changing memory of the running VM failed (needs a virtio balloon the guest drives): ${err.message}`, err.details);
        }
      }
      // the balloon moves in the guest's time: give it a few seconds, then say how far it got
      const warnings: string[] = [];
      let p = await this.parsed(name);
      if (targetKiB !== undefined) {
        const deadline = Date.now() + 5_000;
        while (p.memoryKiB !== targetKiB && Date.now() < deadline) {
          await sleep(this.pollMs);
          p = await this.parsed(name);
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

  private async isoSlots(name: string): Promise<Array<{ slot: number; target: string; source?: string }>> {
    const p = await this.parsed(name);
    return p.devices.volumes
      .filter((v) => v.isoSlot !== undefined)
      .map((v) => {
        const s: { slot: number; target: string; source?: string } = { slot: v.isoSlot!, target: v.target };
        if (v.source !== undefined) s.source = v.source;
        return s;
      })
      .sort((a, b) => a.slot - b.slot);
  }

  async attachIso(req: Req<typeof kvm.VmAttachIso>): Promise<Res<typeof kvm.VmAttachIso>> {
    const uuid = canonicalUuid(req.uuid);
    const name = domainName(uuid);
    return this.watcher.during(uuid, async () => {
      if (!(await this.driver.get(name))) throw new TStackError('VM_NOT_FOUND', `attach-iso: VM ${uuid} has no domain on this host`, { uuid });
      const slots = await this.isoSlots(name);
      const same = slots.find((s) => s.source === req.isoPath && (req.slot === undefined || s.slot === req.slot));
      if (same) return { uuid, slot: same.slot, target: same.target, alreadyAttached: true };
      if (slots.length === 0) {
        throw new TStackError('CONFLICT', `VM ${uuid} has no CD-ROM drive for ISOs; start it with spec.isoSlots (1-3) to attach ISOs later`, { field: 'isoSlots' });
      }
      const slot = req.slot !== undefined ? slots.find((s) => s.slot === req.slot) : slots.find((s) => s.source === undefined);
      if (!slot) {
        throw new TStackError('CONFLICT', req.slot !== undefined ? `VM ${uuid} has no ISO slot ${req.slot} (it has ${slots.length})` : `all ${slots.length} ISO slots of VM ${uuid} are in use; detach one first`, { field: 'slot' });
      }
      if (slot.source !== undefined) throw new TStackError('CONFLICT', `ISO slot ${slot.slot} holds ${slot.source}; detach it first`, { field: 'slot' });
      if (this.check && !(await exists(req.isoPath))) throw new TStackError('IMAGE_NOT_FOUND', `ISO ${req.isoPath} does not exist on this host`, { field: 'isoPath' });
      await this.driver.changeMedia(name, slot.target, req.isoPath);
      return { uuid, slot: slot.slot, target: slot.target, alreadyAttached: false };
    });
  }

  async detachIso(req: Req<typeof kvm.VmDetachIso>): Promise<Res<typeof kvm.VmDetachIso>> {
    const uuid = canonicalUuid(req.uuid);
    const name = domainName(uuid);
    return this.watcher.during(uuid, async () => {
      if (!(await this.driver.get(name))) return { uuid, ejected: [] };
      const ejected: number[] = [];
      for (const s of await this.isoSlots(name)) {
        if (s.source === undefined) continue;
        if (req.slot !== undefined && s.slot !== req.slot) continue;
        if (req.isoPath !== undefined && s.source !== req.isoPath) continue;
        await this.driver.changeMedia(name, s.target, undefined);
        ejected.push(s.slot);
      }
      return { uuid, ejected };
    });
  }

  async resizeVolume(req: Req<typeof kvm.VmResizeVolume>): Promise<Res<typeof kvm.VmResizeVolume>> {
    const uuid = canonicalUuid(req.uuid);
    const volUuid = canonicalUuid(req.volumeUuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'resize-volume');
      const d = (await this.parsed(name)).devices.volumes.find((v) => v.uuid === volUuid);
      if (!d) throw new TStackError('VOLUME_NOT_FOUND', `volume ${volUuid} is not attached to VM ${uuid}`, { volumeUuid: volUuid });
      const cur = await this.driver.blockCapacity(name, d.target);
      if (req.size < cur) {
        throw new TStackError('INVALID_ARGUMENT', `volume ${volUuid} is ${cur} bytes; shrinking to ${req.size} would destroy data and is refused`, { field: 'size', current: cur });
      }
      if (req.size === cur) return { uuid, volumeUuid: volUuid, size: cur, changed: false };
      await this.driver.blockResize(name, d.target, req.size);
      return { uuid, volumeUuid: volUuid, size: await this.driver.blockCapacity(name, d.target), changed: true };
    });
  }

  async setVolumeQos(req: Req<typeof kvm.VmSetVolumeQos>): Promise<Res<typeof kvm.VmSetVolumeQos>> {
    const uuid = canonicalUuid(req.uuid);
    const volUuid = canonicalUuid(req.volumeUuid);
    const q = req.qos;
    if (q.totalBytesSec !== undefined && (q.readBytesSec !== undefined || q.writeBytesSec !== undefined)) {
      throw new TStackError('INVALID_ARGUMENT', 'qos: a total bandwidth excludes read/write bandwidths (QEMU refuses the mix)', { field: 'qos' });
    }
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'set-volume-qos');
      const d = (await this.parsed(name)).devices.volumes.find((v) => v.uuid === volUuid);
      if (!d) throw new TStackError('VOLUME_NOT_FOUND', `volume ${volUuid} is not attached to VM ${uuid}`, { volumeUuid: volUuid });
      // every field is set each time: absent ones go back to 0 (unlimited)
      const tune: Record<string, number> = { total_bytes_sec: 0, read_bytes_sec: 0, write_bytes_sec: 0, total_iops_sec: 0 };
      if (q.totalBytesSec === undefined) delete tune.total_bytes_sec;
      else {
        delete tune.read_bytes_sec;
        delete tune.write_bytes_sec;
      }
      for (const [k, n] of iotuneFields(q)) tune[k] = n;
      await this.driver.blockIoTune(name, d.target, tune);
      return { uuid, volumeUuid: volUuid, qos: q };
    });
  }

  async setNicQos(req: Req<typeof kvm.VmSetNicQos>): Promise<Res<typeof kvm.VmSetNicQos>> {
    const uuid = canonicalUuid(req.uuid);
    const nicUuid = canonicalUuid(req.nicUuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'set-nic-qos');
      const n = (await this.parsed(name)).devices.nics.find((x) => x.uuid === nicUuid);
      if (!n?.internalName) throw new TStackError('NOT_FOUND', `NIC ${nicUuid} is not attached to VM ${uuid}`, { nicUuid });
      const bw = bandwidthKiB(req.qos);
      await this.driver.ifaceTune(name, n.internalName, { inbound: bw.inbound ?? 0, outbound: bw.outbound ?? 0 });
      return { uuid, nicUuid, qos: req.qos };
    });
  }

  async setConsolePassword(req: Req<typeof kvm.VmSetConsolePassword>): Promise<Res<typeof kvm.VmSetConsolePassword>> {
    const uuid = canonicalUuid(req.uuid);
    const name = domainName(uuid);
    return this.watcher.during(uuid, async () => {
      const cur = await this.driver.get(name);
      if (!cur) throw new TStackError('VM_NOT_FOUND', `set-console-password: VM ${uuid} has no domain on this host`, { uuid });
      const scopes: Array<'live' | 'config'> = cur.active ? ['live', 'config'] : ['config'];
      for (const scope of scopes) {
        const xml = await this.driver.xmlWith(name, { inactive: scope === 'config', secure: true });
        const g = withVncPassword(xml, req.password);
        if (!g) throw new TStackError('NOT_FOUND', `VM ${uuid} has no VNC console (start it with spec.console)`, { uuid });
        await this.driver.updateDevice(name, g, scope);
      }
      return { uuid, hasPassword: req.password !== undefined };
    });
  }

  async snapshot(req: Req<typeof kvm.VmSnapshot>): Promise<Res<typeof kvm.VmSnapshot>> {
    const uuid = canonicalUuid(req.uuid);
    return this.watcher.during(uuid, async () => {
      const name = await this.mustRun(uuid, 'snapshot');
      const p = await this.parsed(name);
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
          await this.driver.snapshotDisks(name, plan, { quiesce: true, reuseExternal: reuse });
          quiesced = true;
        } catch (e) {
          const m = (e as Error).message;
          if (q === 'required' || !/agent|quiesce/i.test(m)) throw e;
        }
      }
      if (!quiesced) await this.driver.snapshotDisks(name, plan, { quiesce: false, reuseExternal: reuse });
      return { uuid, quiesced, volumes: result };
    });
  }
}
