// In-memory hypervisor for controller tests and the scale simulator. It keeps each domain's XML
// and state, applies hot-plug changes to the XML, and offers hooks to simulate what a guest does
// on its own (power off, crash, I/O-error pause) so state reporting can be exercised.
import { TStackError } from '../../shared/errors.js';
import { domainName, esc, parseDomainXml } from '../domain-xml.js';
import { nfsServerPath, type VmStateT } from '../../shared/protocol/kvm.js';
import type { DomainSummary, DiskSnapshotSpec, HypervisorDriver, MigrateOptions } from './driver.js';
import type { DomainStats } from '../metrics/stats.js';

interface FakeDomain {
  name: string;
  uuid: string;
  xml: string;
  state: VmStateT;
  reason?: string;
  cpuNum: number;
  maxCpuNum: number;
  memoryKiB: number;
  maxMemoryKiB: number;
}

export interface FakeDriverOptions {
  cpus?: number;
  memoryKiB?: number;
  /** Delay of define+start (simulates QEMU start-up). */
  startDelayMs?: number;
  /** How long the guest takes to act on the ACPI power button; -1: it ignores it. */
  shutdownDelayMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const notFound = (name: string): TStackError => new TStackError('VM_NOT_FOUND', `domain ${name} does not exist on this host`, { domain: name });

export class FakeDriver implements HypervisorDriver {
  readonly kind = 'fake' as const;
  readonly domains = new Map<string, FakeDomain>();
  /** Every call, for assertions: [method, domain name]. */
  readonly calls: Array<[string, string]> = [];

  constructor(readonly opts: FakeDriverOptions = {}) {}

  private d(name: string): FakeDomain {
    const d = this.domains.get(name);
    if (!d) throw notFound(name);
    return d;
  }

  private active(d: FakeDomain): boolean {
    return d.state !== 'Stopped' && d.state !== 'Crashed';
  }

  async versions(): Promise<{ libvirt: string; qemu: string }> {
    return { libvirt: 'fake', qemu: 'fake' };
  }

  async nodeInfo(): Promise<{ cpus: number; memoryKiB: number }> {
    return { cpus: this.opts.cpus ?? 64, memoryKiB: this.opts.memoryKiB ?? 256 * 1024 * 1024 };
  }

  private summary(d: FakeDomain): DomainSummary {
    return { name: d.name, uuid: d.uuid, state: d.state, active: this.active(d), persistent: true, cpuNum: d.cpuNum, memoryKiB: d.memoryKiB };
  }

  async list(): Promise<DomainSummary[]> {
    return [...this.domains.values()].map((d) => this.summary(d));
  }

  async get(name: string): Promise<DomainSummary | undefined> {
    const d = this.domains.get(name);
    return d ? this.summary(d) : undefined;
  }

  async reason(name: string): Promise<string | undefined> {
    return this.domains.get(name)?.reason;
  }

  async xml(name: string): Promise<string> {
    return this.d(name).xml;
  }

  async defineAndStart(xml: string, name: string): Promise<void> {
    this.calls.push(['defineAndStart', name]);
    const p = parseDomainXml(xml);
    if (p.name !== name) throw new TStackError('LIBVIRT_ERROR', `XML names ${p.name}, expected ${name}`);
    const maxCpu = Number(/<vcpu[^>]*>(\d+)<\/vcpu>/.exec(xml)?.[1] ?? p.vcpus ?? 1);
    const maxMem = Number(/<memory unit='KiB'>(\d+)<\/memory>/.exec(xml)?.[1] ?? p.memoryKiB ?? 0);
    if (this.opts.startDelayMs) await sleep(this.opts.startDelayMs);
    this.domains.set(name, {
      name,
      uuid: p.uuid,
      xml,
      state: 'Running',
      reason: 'booted',
      cpuNum: p.vcpus ?? 1,
      maxCpuNum: maxCpu,
      memoryKiB: p.memoryKiB ?? maxMem,
      maxMemoryKiB: maxMem,
    });
  }

  /**
   * A Running domain this driver never started, as if the VM had been running all along (the
   * scale bench's preloaded inventory: a VM sync finds the domains the inventory has).
   */
  adopt(vmUuid: string, o: { cpuNum: number; memoryKiB: number }): void {
    const name = domainName(vmUuid);
    const xml = `<domain type='qemu'><name>${esc(name)}</name><uuid>${esc(vmUuid)}</uuid><memory unit='KiB'>${o.memoryKiB}</memory><vcpu>${o.cpuNum}</vcpu></domain>`;
    this.domains.set(name, { name, uuid: vmUuid, xml, state: 'Running', reason: 'booted', cpuNum: o.cpuNum, maxCpuNum: o.cpuNum, memoryKiB: o.memoryKiB, maxMemoryKiB: o.memoryKiB });
  }

  async shutdown(name: string): Promise<void> {
    this.calls.push(['shutdown', name]);
    const d = this.d(name);
    if (!this.active(d)) throw new TStackError('LIBVIRT_ERROR', `domain ${name} is not running`);
    const delay = this.opts.shutdownDelayMs ?? 0;
    if (delay < 0) return;
    const off = (): void => {
      if (this.domains.get(name) === d && this.active(d)) {
        d.state = 'Stopped';
        d.reason = 'shutdown';
      }
    };
    if (delay === 0) off();
    else setTimeout(off, delay).unref();
  }

  async destroy(name: string): Promise<void> {
    this.calls.push(['destroy', name]);
    const d = this.domains.get(name);
    if (!d) return;
    d.state = 'Stopped';
    d.reason = 'destroyed';
  }

  async undefine(name: string): Promise<void> {
    this.calls.push(['undefine', name]);
    this.domains.delete(name);
  }

  async suspend(name: string): Promise<void> {
    const d = this.d(name);
    if (d.state !== 'Running') throw new TStackError('LIBVIRT_ERROR', `domain ${name} is not running`);
    d.state = 'Paused';
    d.reason = 'user';
  }

  async resume(name: string): Promise<void> {
    const d = this.d(name);
    if (d.state !== 'Paused') throw new TStackError('LIBVIRT_ERROR', `domain ${name} is not paused`);
    d.state = 'Running';
    d.reason = 'unpaused';
  }

  async reboot(name: string): Promise<void> {
    this.calls.push(['reboot', name]);
    const d = this.d(name);
    if (!this.active(d)) throw new TStackError('LIBVIRT_ERROR', `domain ${name} is not running`);
  }

  async attachDevice(name: string, deviceXml: string): Promise<void> {
    this.calls.push(['attachDevice', name]);
    const d = this.d(name);
    d.xml = d.xml.replace('</devices>', `${deviceXml}\n  </devices>`);
  }

  async detachDeviceAlias(name: string, alias: string): Promise<void> {
    this.calls.push(['detachDevice', name]);
    const d = this.d(name);
    const re = new RegExp(`\\s*<(disk|interface)\\b(?:(?!</\\1>)[\\s\\S])*?<alias name='${alias.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'/>[\\s\\S]*?</\\1>`);
    if (!re.test(d.xml)) throw new TStackError('LIBVIRT_ERROR', `no device with alias ${alias}`);
    d.xml = d.xml.replace(re, '');
  }

  /** Disk sizes by "<domain>/<target>" (default 1 GiB). */
  readonly sizes = new Map<string, number>();

  async changeMedia(name: string, target: string, path: string | undefined): Promise<void> {
    const d = this.d(name);
    const re = new RegExp(`(<disk type='file' device='cdrom'>\\s*<driver[^>]*/>)(\\s*<source file='[^']*'/>)?(\\s*<target dev='${target}')`);
    if (!re.test(d.xml)) throw new TStackError('LIBVIRT_ERROR', `no CD-ROM ${target}`);
    d.xml = d.xml.replace(re, (_m, a: string, _src: string | undefined, t: string) => `${a}${path !== undefined ? `\n      <source file='${esc(path)}'/>` : ''}${t}`);
  }

  async blockCapacity(name: string, target: string): Promise<number> {
    this.d(name);
    return this.sizes.get(`${name}/${target}`) ?? 1024 ** 3;
  }

  async blockResize(name: string, target: string, bytes: number): Promise<void> {
    this.d(name);
    this.sizes.set(`${name}/${target}`, bytes);
  }

  /** what blockIoTune / ifaceTune last set, by "<domain>/<device>" */
  readonly tunes = new Map<string, unknown>();

  async blockIoTune(name: string, target: string, tune: Record<string, number>): Promise<void> {
    this.d(name);
    this.tunes.set(`${name}/${target}`, tune);
  }

  async ifaceTune(name: string, iface: string, kib: { inbound: number; outbound: number }): Promise<void> {
    this.d(name);
    this.tunes.set(`${name}/${iface}`, kib);
  }

  async xmlWith(name: string): Promise<string> {
    return this.d(name).xml;
  }

  async updateDevice(name: string, deviceXml: string): Promise<void> {
    const d = this.d(name);
    if (!deviceXml.startsWith("<graphics type='vnc'")) throw new TStackError('LIBVIRT_ERROR', 'fake: only VNC graphics can be updated');
    d.xml = d.xml.replace(/<graphics type='vnc'[^>]*?(\/>|>[\s\S]*?<\/graphics>)/, deviceXml);
  }

  async setVcpus(name: string, n: number): Promise<void> {
    const d = this.d(name);
    if (n > d.maxCpuNum) throw new TStackError('LIBVIRT_ERROR', `requested vcpus is greater than max allowable vcpus for the live domain: ${n} > ${d.maxCpuNum}`);
    d.cpuNum = n;
    d.xml = d.xml.replace(/<vcpu[^>]*>(\d+)<\/vcpu>/, `<vcpu placement='static' current='${n}'>$1</vcpu>`);
  }

  async setMemory(name: string, kib: number): Promise<void> {
    const d = this.d(name);
    if (kib > d.maxMemoryKiB) throw new TStackError('LIBVIRT_ERROR', `cannot set memory higher than max memory`);
    d.memoryKiB = kib;
    d.xml = d.xml.replace(/<currentMemory unit='KiB'>\d+<\/currentMemory>/, `<currentMemory unit='KiB'>${kib}</currentMemory>`);
  }

  async snapshotDisks(name: string, disks: DiskSnapshotSpec[], o: { quiesce: boolean }): Promise<void> {
    const d = this.d(name);
    if (o.quiesce) throw new TStackError('LIBVIRT_ERROR', 'QEMU guest agent is not connected');
    for (const s of disks) {
      if (s.nfs) {
        const re = new RegExp(`(<source protocol='nfs' name=')[^']*('>(?:(?!</disk>)[\\s\\S])*?<target dev='${s.target}')`);
        d.xml = d.xml.replace(re, `$1${nfsServerPath(s.nfs)}$2`);
      }
      if (!s.file) continue;
      const re = new RegExp(`(<source file=')[^']*('/>\\s*<target dev='${s.target}')`);
      d.xml = d.xml.replace(re, `$1${s.file}$2`);
    }
  }

  private statsSince = new Map<string, number>();

  /** Synthetic counters that grow with the time a domain has been seen active (about 5 % CPU). */
  async domainStats(): Promise<DomainStats[]> {
    const now = Date.now();
    const out: DomainStats[] = [];
    for (const d of this.domains.values()) {
      if (!this.active(d)) {
        this.statsSince.delete(d.name);
        continue;
      }
      const t0 = this.statsSince.get(d.name) ?? now;
      this.statsSince.set(d.name, t0);
      const s = (now - t0) / 1000;
      const vcpu = Math.round(s * 0.05 * 1e9);
      out.push({
        name: d.name,
        cpuTimeNs: vcpu * d.cpuNum,
        vcpuTimesNs: Array.from({ length: d.cpuNum }, () => vcpu),
        memoryKiB: d.memoryKiB,
        rssKiB: Math.round(d.memoryKiB / 2),
        disks: [{ dev: 'vda', rdBytes: Math.round(s * 4096), wrBytes: Math.round(s * 8192), rdReqs: Math.round(s), wrReqs: Math.round(s * 2) }],
        nics: [{ dev: `vn${d.uuid.slice(0, 8)}`, rxBytes: Math.round(s * 1000), txBytes: Math.round(s * 500), rxPkts: Math.round(s * 10), txPkts: Math.round(s * 5), rxErrs: 0, txErrs: 0 }],
      });
    }
    return out;
  }

  /** The domain leaves this fake host (a peer fake host is not modelled). */
  async migrate(name: string, o: MigrateOptions): Promise<void> {
    this.calls.push(['migrate', `${name} -> ${o.destUri}`]);
    const d = this.domains.get(name);
    if (!d || d.state !== 'Running') throw new TStackError('LIBVIRT_ERROR', `migrate ${name}: domain is not running`);
    this.domains.delete(name);
  }

  async close(): Promise<void> {}

  // --- simulation hooks ----------------------------------------------------------------------

  /** The guest powers itself off (reason 'shutdown'). */
  guestPowerOff(name: string): void {
    const d = this.d(name);
    d.state = 'Stopped';
    d.reason = 'shutdown';
  }

  crash(name: string): void {
    const d = this.d(name);
    d.state = 'Crashed';
    d.reason = 'panicked';
  }

  ioErrorPause(name: string): void {
    const d = this.d(name);
    d.state = 'Paused';
    d.reason = 'ioerror';
  }
}
