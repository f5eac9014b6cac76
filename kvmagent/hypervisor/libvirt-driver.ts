// The real driver: @unraid/libvirt for lifecycle, lookup and XML; `virsh` (through the exec
// helper) for what the binding lacks: device attach/detach, reboot/reset, vCPU/memory changes,
// snapshots and state reasons.
import * as lv from '@unraid/libvirt';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, execOut } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { parseDomstats, type DomainStats } from '../metrics/stats.js';
import { snapshotXml } from '../domain-xml.js';
import { stateFromLibvirt, type DomainSummary, type DiskSnapshotSpec, type HypervisorDriver, type MigrateOptions } from './driver.js';

const log = logger('libvirt');

const NOT_FOUND_RE = /Domain not found|no domain with matching/i;
const NOT_RUNNING_RE = /domain is not running|not active|is not running/i;
const CONN_RE = /not connected|connection (is )?closed|End of file while reading|Cannot recv data|Broken pipe|client socket is closed|unable to connect/i;

export function libvirtError(e: unknown, what: string): TStackError {
  if (e instanceof TStackError) return e;
  const msg = (e as Error)?.message ?? String(e);
  if (NOT_FOUND_RE.test(msg)) return new TStackError('VM_NOT_FOUND', `${what}: ${msg}`, { libvirt: msg });
  return new TStackError('LIBVIRT_ERROR', `${what}: ${msg}`, { libvirt: msg });
}

export class LibvirtDriver implements HypervisorDriver {
  readonly kind = 'libvirt' as const;
  private hv?: lv.Hypervisor;
  private opening?: Promise<lv.Hypervisor>;

  constructor(
    readonly uri = 'qemu:///system',
    /** Deadline of one binding call (define, start, lookup…). */
    readonly callTimeoutMs = 120_000,
  ) {}

  private async conn(): Promise<lv.Hypervisor> {
    if (this.hv) return this.hv;
    this.opening ??= (async () => {
      const h = new lv.Hypervisor({ uri: this.uri });
      await h.connectOpen();
      this.hv = h;
      return h;
    })().finally(() => (this.opening = undefined));
    try {
      return await this.opening;
    } catch (e) {
      throw new TStackError('LIBVIRT_ERROR', `cannot connect to libvirt at ${this.uri}: ${(e as Error).message}; is libvirtd running?`, { uri: this.uri });
    }
  }

  /**
   * Run a binding call with a deadline (a hung libvirtd must not hang the agent's per-VM queues
   * forever: the caller gets TIMEOUT and the queue moves on); reconnect once if libvirtd went
   * away (restarted) meanwhile.
   */
  private async call<T>(what: string, fn: (h: lv.Hypervisor) => Promise<T>): Promise<T> {
    const bounded = async (): Promise<T> => {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TStackError('TIMEOUT', `${what}: libvirt did not answer within ${this.callTimeoutMs} ms (is libvirtd hung?)`, { uri: this.uri })), this.callTimeoutMs);
        timer.unref();
      });
      try {
        return await Promise.race([fn(await this.conn()), deadline]);
      } finally {
        clearTimeout(timer);
      }
    };
    try {
      return await bounded();
    } catch (e) {
      if (CONN_RE.test((e as Error)?.message ?? '')) {
        log.warn({ err: (e as Error).message }, 'libvirt connection lost; reconnecting');
        this.hv = undefined;
        try {
          return await bounded();
        } catch (e2) {
          throw libvirtError(e2, what);
        }
      }
      throw libvirtError(e, what);
    }
  }

  async domainStats(): Promise<DomainStats[]> {
    const out = await this.virsh(['domstats', '--raw', '--list-active', '--cpu-total', '--vcpu', '--balloon', '--block', '--interface'], 'virsh domstats', 30_000);
    return parseDomstats(out);
  }

  private virsh(args: string[], what: string, timeoutMs = 60_000): Promise<string> {
    return execOut('virsh', ['-c', this.uri, ...args], { timeoutMs, errorCode: 'LIBVIRT_ERROR' }).catch((e: unknown) => {
      const err = TStackError.from(e);
      const stderr = String(err.details?.stderr ?? err.message).replace(/^error: /gm, '').replace(/\n+/g, '; ');
      if (err.code === 'TIMEOUT') throw err;
      throw new TStackError(NOT_FOUND_RE.test(stderr) ? 'VM_NOT_FOUND' : 'LIBVIRT_ERROR', `${what}: ${stderr}`, { ...err.details, libvirt: stderr });
    });
  }

  async versions(): Promise<{ libvirt: string; qemu: string }> {
    const out = await this.virsh(['version'], 'virsh version', 15_000);
    return {
      libvirt: /Using library: libvirt ([\d.]+)/.exec(out)?.[1] ?? 'unknown',
      qemu: /Running hypervisor: QEMU ([\d.]+)/.exec(out)?.[1] ?? 'unknown',
    };
  }

  async nodeInfo(): Promise<{ cpus: number; memoryKiB: number }> {
    const i = await this.call('node info', (h) => h.nodeGetInfo());
    return { cpus: i.cpus, memoryKiB: i.memory };
  }

  private async summary(d: lv.Domain): Promise<DomainSummary | undefined> {
    try {
      const [name, uuid, info] = await Promise.all([d.getName(), d.getUUIDString(), d.getInfo()]);
      const state = stateFromLibvirt(info.state);
      return {
        name,
        uuid,
        state,
        active: state !== 'Stopped' && state !== 'Crashed',
        cpuNum: info.nrVirtCpu,
        memoryKiB: info.memory,
      };
    } catch (e) {
      // the domain vanished between listing and reading it (transient domain shut down)
      if (NOT_FOUND_RE.test((e as Error)?.message ?? '')) return undefined;
      throw libvirtError(e, 'read domain');
    }
  }

  async list(): Promise<DomainSummary[]> {
    const doms = await this.call('list domains', (h) => h.connectListAllDomains());
    const out = await Promise.all(doms.map((d) => this.summary(d)));
    return out.filter((s): s is DomainSummary => s !== undefined);
  }

  private async lookup(name: string): Promise<lv.Domain | undefined> {
    try {
      return await this.call(`look up ${name}`, (h) => h.domainLookupByName(name));
    } catch (e) {
      if (e instanceof TStackError && e.code === 'VM_NOT_FOUND') return undefined;
      throw e;
    }
  }

  private async must(name: string): Promise<lv.Domain> {
    const d = await this.lookup(name);
    if (!d) throw new TStackError('VM_NOT_FOUND', `domain ${name} does not exist on this host`, { domain: name });
    return d;
  }

  async get(name: string): Promise<DomainSummary | undefined> {
    const d = await this.lookup(name);
    return d ? this.summary(d) : undefined;
  }

  async reason(name: string): Promise<string | undefined> {
    try {
      const out = await execOut('virsh', ['-c', this.uri, 'domstate', '--reason', name], { timeoutMs: 15_000 });
      return /\(([^)]+)\)/.exec(out)?.[1];
    } catch {
      return undefined;
    }
  }

  async xml(name: string): Promise<string> {
    const d = await this.must(name);
    return this.call(`XML of ${name}`, () => d.getXMLDesc());
  }

  async defineAndStart(xml: string, name: string): Promise<void> {
    const d = await this.call(`define ${name}`, (h) => h.domainDefineXML(xml));
    try {
      await this.call(`start ${name}`, () => d.create());
    } catch (e) {
      await this.call(`undefine ${name}`, () => d.undefine()).catch(() => undefined);
      throw e;
    }
  }

  async shutdown(name: string): Promise<void> {
    const d = await this.must(name);
    await this.call(`shut down ${name}`, () => d.shutdown());
  }

  async destroy(name: string): Promise<void> {
    const d = await this.lookup(name);
    if (!d) return;
    try {
      await this.call(`destroy ${name}`, () => d.destroy());
    } catch (e) {
      const m = (e as Error).message;
      if (NOT_RUNNING_RE.test(m) || (e instanceof TStackError && e.code === 'VM_NOT_FOUND')) return;
      throw e;
    }
  }

  async undefine(name: string): Promise<void> {
    const d = await this.lookup(name);
    if (!d) return;
    try {
      await this.call(`undefine ${name}`, () => d.undefine());
    } catch (e) {
      if (e instanceof TStackError && e.code === 'VM_NOT_FOUND') return;
      // a transient domain cannot be undefined: fine, destroy removed it
      if (/transient domain|not persistent/i.test((e as Error).message)) return;
      throw e;
    }
  }

  async suspend(name: string): Promise<void> {
    const d = await this.must(name);
    await this.call(`pause ${name}`, () => d.suspend());
  }

  async resume(name: string): Promise<void> {
    const d = await this.must(name);
    await this.call(`resume ${name}`, () => d.resume());
  }

  async reboot(name: string, mode: 'acpi' | 'reset'): Promise<void> {
    if (mode === 'reset') await this.virsh(['reset', name], `reset ${name}`);
    else await this.virsh(['reboot', name, '--mode', 'acpi'], `reboot ${name}`);
  }

  private async withFile<T>(content: string, fn: (file: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'tstack-kvm-'));
    try {
      const f = join(dir, 'device.xml');
      await writeFile(f, content, { mode: 0o600 });
      return await fn(f);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async scopeFlags(name: string): Promise<string[]> {
    const s = await this.get(name);
    if (!s) throw new TStackError('VM_NOT_FOUND', `domain ${name} does not exist on this host`, { domain: name });
    return s.active ? ['--live', '--config'] : ['--config'];
  }

  async attachDevice(name: string, deviceXml: string): Promise<void> {
    const flags = await this.scopeFlags(name);
    await this.withFile(deviceXml, (f) => this.virsh(['attach-device', name, f, ...flags], `attach device to ${name}`));
  }

  async detachDeviceAlias(name: string, alias: string): Promise<void> {
    const flags = await this.scopeFlags(name);
    await this.virsh(['detach-device-alias', name, alias, ...flags], `detach ${alias} from ${name}`);
  }

  async changeMedia(name: string, target: string, path: string | undefined): Promise<void> {
    const flags = await this.scopeFlags(name);
    if (path === undefined) await this.virsh(['change-media', name, target, '--eject', ...flags], `eject ${target} of ${name}`);
    else await this.virsh(['change-media', name, target, path, '--update', ...flags], `insert ${path} into ${target} of ${name}`);
  }

  async blockCapacity(name: string, target: string): Promise<number> {
    const out = await this.virsh(['domblkinfo', name, target], `size of ${target} of ${name}`);
    const m = /^Capacity:\s+(\d+)/m.exec(out);
    if (!m) throw new TStackError('LIBVIRT_ERROR', `cannot read the capacity of ${target} of ${name}: ${out}`);
    return Number(m[1]);
  }

  async blockResize(name: string, target: string, bytes: number): Promise<void> {
    await this.virsh(['blockresize', name, target, `${bytes}B`], `resize ${target} of ${name}`);
  }

  async blockIoTune(name: string, target: string, tune: Record<string, number>): Promise<void> {
    const args = ['blkdeviotune', name, target];
    for (const [k, v] of Object.entries(tune)) args.push(`--${k.replace(/_/g, '-')}`, String(v));
    await this.virsh([...args, '--live', '--config'], `I/O limits of ${target} of ${name}`);
  }

  async ifaceTune(name: string, iface: string, kib: { inbound: number; outbound: number }): Promise<void> {
    await this.virsh(['domiftune', name, iface, '--inbound', String(kib.inbound), '--outbound', String(kib.outbound), '--live', '--config'], `bandwidth of ${iface} of ${name}`);
  }

  async xmlWith(name: string, o: { inactive: boolean; secure: boolean; migratable?: boolean }): Promise<string> {
    const d = await this.must(name);
    const flags = (o.inactive ? lv.DomainGetXMLDescFlags.INACTIVE : 0) | (o.secure ? lv.DomainGetXMLDescFlags.SECURE : 0) | (o.migratable ? lv.DomainGetXMLDescFlags.MIGRATABLE : 0);
    return this.call(`XML of ${name}`, () => d.getXMLDesc(flags));
  }

  async updateDevice(name: string, deviceXml: string, scope: 'live' | 'config'): Promise<void> {
    await this.withFile(deviceXml, (f) => this.virsh(['update-device', name, f, `--${scope}`], `update device of ${name}`));
  }

  async setVcpus(name: string, n: number): Promise<void> {
    await this.virsh(['setvcpus', name, String(n), '--live', '--config'], `set vCPUs of ${name}`);
  }

  async setMemory(name: string, kib: number): Promise<void> {
    await this.virsh(['setmem', name, `${kib}KiB`, '--live', '--config'], `set memory of ${name}`);
  }

  async snapshotDisks(name: string, disks: DiskSnapshotSpec[], o: { quiesce: boolean; reuseExternal: boolean }): Promise<void> {
    const flags = ['--disk-only', '--atomic', '--no-metadata', ...(o.quiesce ? ['--quiesce'] : []), ...(o.reuseExternal ? ['--reuse-external'] : [])];
    if (disks.some((d) => d.nfs)) {
      // a network target (NFS opened by QEMU) has no --diskspec form: snapshot XML
      await this.withFile(snapshotXml(disks), (f) => this.virsh(['snapshot-create', name, f, ...flags], `snapshot ${name}`, 5 * 60_000));
      return;
    }
    const args = ['snapshot-create-as', name, '--name', `tstack-${Date.now()}`, ...flags];
    for (const d of disks) {
      // virsh splits diskspec on ',', and ',,' stands for a literal comma
      args.push('--diskspec', d.file ? `${d.target},snapshot=external,file=${d.file.replace(/,/g, ',,')}` : `${d.target},snapshot=no`);
    }
    await this.virsh(args, `snapshot ${name}`, 5 * 60_000);
  }

  async migrate(name: string, o: MigrateOptions): Promise<void> {
    // --p2p: the source libvirtd opens the destination itself, so the agent needs no credentials
    const args = ['migrate', '--live', '--p2p', '--persistent', '--undefinesource'];
    if (o.copyStorage) args.push('--copy-storage-all');
    if (o.unsafe) args.push('--unsafe');
    const run = (xmlFile?: string): Promise<string> =>
      this.virsh([...args, ...(xmlFile ? ['--xml', xmlFile, '--persistent-xml', xmlFile] : []), name, o.destUri, '--migrateuri', o.migrateUri], `migrate ${name} to ${o.destUri}`, o.timeoutMs).catch(async (e: unknown) => {
        // virsh killed at the deadline: make sure libvirt's job does not go on without us
        await execOut('virsh', ['-c', this.uri, 'domjobabort', name], { timeoutMs: 15_000, quiet: true }).catch(() => undefined);
        throw e;
      });
    if (o.destXml) await this.withFile(o.destXml, run);
    else await run();
  }

  async close(): Promise<void> {
    const h = this.hv;
    this.hv = undefined;
    if (h) await h.connectClose().catch(() => undefined);
  }
}

/** Is `virsh` usable (libvirt-clients installed)? */
export async function virshAvailable(): Promise<boolean> {
  try {
    await exec('virsh', ['--version'], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}
