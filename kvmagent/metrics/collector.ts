// Per-VM and per-host metrics with ZStack's names and labels (shared/metric-names.ts), sampled
// every `intervalMs` (default 10 s) and served from memory at scrape time: a scrape never
// calls libvirt. Rates (utilisation, bytes/s, ops/s) are computed between two samples, so a
// metric appears from the second sample on.
//
//   ZStack/VM    CPUAverageUsedUtilization, CPUUsedUtilization{CPUNum}, MemoryUsedBytes,
//                MemoryFreeBytes, MemoryUsedInPercent, Disk{Read,Write}{Bytes,Ops}{DiskDeviceLetter},
//                Network{In,Out}{Bytes,Packets,Errors}{NetworkDeviceLetter}         label VMUuid
//   ZStack/Host  the same CPU, memory, disk and network names for the host itself
//
// HostUuid is added by Prometheus from the target's labels (the controller's file SD).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import client from 'prom-client';
import { logger } from '../../shared/log.js';
import { promName } from '../../shared/metric-names.js';
import { DOMAIN_PREFIX } from '../domain-xml.js';
import type { HypervisorDriver } from '../hypervisor/driver.js';
import { parseDiskstats, parseMeminfo, parseNetDev, parseProcStat, type DomainStats } from './stats.js';

const log = logger('metrics');

const VM_GAUGES = ['CPUAverageUsedUtilization', 'CPUUsedUtilization', 'MemoryUsedBytes', 'MemoryFreeBytes', 'MemoryUsedInPercent', 'DiskReadBytes', 'DiskWriteBytes', 'DiskReadOps', 'DiskWriteOps', 'NetworkInBytes', 'NetworkOutBytes', 'NetworkInPackets', 'NetworkOutPackets', 'NetworkInErrors', 'NetworkOutErrors'] as const;
type GaugeName = (typeof VM_GAUGES)[number];

const LABELS: Record<GaugeName, string[]> = {
  CPUAverageUsedUtilization: [],
  CPUUsedUtilization: ['CPUNum'],
  MemoryUsedBytes: [],
  MemoryFreeBytes: [],
  MemoryUsedInPercent: [],
  DiskReadBytes: ['DiskDeviceLetter'],
  DiskWriteBytes: ['DiskDeviceLetter'],
  DiskReadOps: ['DiskDeviceLetter'],
  DiskWriteOps: ['DiskDeviceLetter'],
  NetworkInBytes: ['NetworkDeviceLetter'],
  NetworkOutBytes: ['NetworkDeviceLetter'],
  NetworkInPackets: ['NetworkDeviceLetter'],
  NetworkOutPackets: ['NetworkDeviceLetter'],
  NetworkInErrors: ['NetworkDeviceLetter'],
  NetworkOutErrors: ['NetworkDeviceLetter'],
};

type Point = { labels: Record<string, string>; value: number };
type Values = Map<string, Point[]>;

interface Sample {
  at: number;
  vms: Map<string, DomainStats>;
  host?: { stat: ReturnType<typeof parseProcStat>; mem: ReturnType<typeof parseMeminfo>; net: ReturnType<typeof parseNetDev>; disks: ReturnType<typeof parseDiskstats> };
}

export interface CollectorOptions {
  intervalMs?: number;
  /** Where procfs is (tests point it at fixtures); default /proc. */
  procRoot?: string;
  /** Collect host metrics (default true). */
  host?: boolean;
}

const round = (x: number): number => Math.round(x * 100) / 100;
const rate = (now: number, before: number | undefined, secs: number): number => (before === undefined || now < before || secs <= 0 ? 0 : (now - before) / secs);
/** vda → a, sdb → b, hdc → c; other names as they are. */
export const diskLetter = (dev: string): string => /^(?:vd|sd|hd|xvd)([a-z]+)$/.exec(dev)?.[1] ?? dev;

/** The metric values between two samples (pure). */
export function computeValues(prev: Sample | undefined, cur: Sample): { vm: Values; host: Values } {
  const vm: Values = new Map(VM_GAUGES.map((g) => [g, []]));
  const host: Values = new Map(VM_GAUGES.map((g) => [g, []]));
  const secs = prev ? (cur.at - prev.at) / 1000 : 0;
  const push = (m: Values, g: GaugeName, labels: Record<string, string>, value: number): void => void m.get(g)!.push({ labels, value: round(value) });
  for (const [name, d] of cur.vms) {
    if (!name.startsWith(DOMAIN_PREFIX)) continue;
    const VMUuid = name.slice(DOMAIN_PREFIX.length);
    const L = { VMUuid };
    const memUsed = d.availableKiB !== undefined && d.unusedKiB !== undefined ? d.availableKiB - d.unusedKiB : Math.min(d.rssKiB ?? 0, d.memoryKiB);
    const memTotal = d.availableKiB ?? d.memoryKiB;
    push(vm, 'MemoryUsedBytes', L, memUsed * 1024);
    push(vm, 'MemoryFreeBytes', L, Math.max(0, memTotal - memUsed) * 1024);
    push(vm, 'MemoryUsedInPercent', L, memTotal > 0 ? (memUsed / memTotal) * 100 : 0);
    const p = prev?.vms.get(name);
    if (!p || secs <= 0) continue;
    const vcpus = Math.max(1, d.vcpuTimesNs.length);
    push(vm, 'CPUAverageUsedUtilization', L, Math.min(100, (rate(d.cpuTimeNs, p.cpuTimeNs, secs) / 1e9 / vcpus) * 100));
    d.vcpuTimesNs.forEach((t, i) => push(vm, 'CPUUsedUtilization', { ...L, CPUNum: String(i) }, Math.min(100, (rate(t, p.vcpuTimesNs[i], secs) / 1e9) * 100)));
    for (const k of d.disks) {
      const b = p.disks.find((x) => x.dev === k.dev);
      const DL = { ...L, DiskDeviceLetter: diskLetter(k.dev) };
      push(vm, 'DiskReadBytes', DL, rate(k.rdBytes, b?.rdBytes, secs));
      push(vm, 'DiskWriteBytes', DL, rate(k.wrBytes, b?.wrBytes, secs));
      push(vm, 'DiskReadOps', DL, rate(k.rdReqs, b?.rdReqs, secs));
      push(vm, 'DiskWriteOps', DL, rate(k.wrReqs, b?.wrReqs, secs));
    }
    for (const n of d.nics) {
      const b = p.nics.find((x) => x.dev === n.dev);
      const NL = { ...L, NetworkDeviceLetter: n.dev };
      push(vm, 'NetworkInBytes', NL, rate(n.rxBytes, b?.rxBytes, secs));
      push(vm, 'NetworkOutBytes', NL, rate(n.txBytes, b?.txBytes, secs));
      push(vm, 'NetworkInPackets', NL, rate(n.rxPkts, b?.rxPkts, secs));
      push(vm, 'NetworkOutPackets', NL, rate(n.txPkts, b?.txPkts, secs));
      push(vm, 'NetworkInErrors', NL, rate(n.rxErrs, b?.rxErrs, secs));
      push(vm, 'NetworkOutErrors', NL, rate(n.txErrs, b?.txErrs, secs));
    }
  }
  const h = cur.host;
  if (h) {
    push(host, 'MemoryUsedBytes', {}, h.mem.totalBytes - h.mem.availableBytes);
    push(host, 'MemoryFreeBytes', {}, h.mem.availableBytes);
    push(host, 'MemoryUsedInPercent', {}, h.mem.totalBytes > 0 ? ((h.mem.totalBytes - h.mem.availableBytes) / h.mem.totalBytes) * 100 : 0);
    const ph = prev?.host;
    if (ph && secs > 0) {
      const util = (a: { busy: number; total: number }, b: { busy: number; total: number } | undefined): number => (b && a.total > b.total ? ((a.busy - b.busy) / (a.total - b.total)) * 100 : 0);
      push(host, 'CPUAverageUsedUtilization', {}, util(h.stat.all, ph.stat.all));
      h.stat.cpus.forEach((c, i) => push(host, 'CPUUsedUtilization', { CPUNum: String(i) }, util(c, ph.stat.cpus[i])));
      for (const k of h.disks) {
        const b = ph.disks.find((x) => x.dev === k.dev);
        const DL = { DiskDeviceLetter: k.dev };
        push(host, 'DiskReadBytes', DL, rate(k.rdBytes, b?.rdBytes, secs));
        push(host, 'DiskWriteBytes', DL, rate(k.wrBytes, b?.wrBytes, secs));
        push(host, 'DiskReadOps', DL, rate(k.rdReqs, b?.rdReqs, secs));
        push(host, 'DiskWriteOps', DL, rate(k.wrReqs, b?.wrReqs, secs));
      }
      for (const n of h.net) {
        const b = ph.net.find((x) => x.dev === n.dev);
        const NL = { NetworkDeviceLetter: n.dev };
        push(host, 'NetworkInBytes', NL, rate(n.rxBytes, b?.rxBytes, secs));
        push(host, 'NetworkOutBytes', NL, rate(n.txBytes, b?.txBytes, secs));
        push(host, 'NetworkInPackets', NL, rate(n.rxPkts, b?.rxPkts, secs));
        push(host, 'NetworkOutPackets', NL, rate(n.txPkts, b?.txPkts, secs));
        push(host, 'NetworkInErrors', NL, rate(n.rxErrs, b?.rxErrs, secs));
        push(host, 'NetworkOutErrors', NL, rate(n.txErrs, b?.txErrs, secs));
      }
    }
  }
  return { vm, host };
}

export class MetricsCollector {
  private prev?: Sample;
  private timer?: NodeJS.Timeout;
  private sampling?: Promise<void>;
  private readonly vmGauges = new Map<GaugeName, client.Gauge>();
  private readonly hostGauges = new Map<GaugeName, client.Gauge>();
  readonly intervalMs: number;

  constructor(
    private readonly driver: HypervisorDriver,
    registry: client.Registry,
    private readonly o: CollectorOptions = {},
  ) {
    this.intervalMs = o.intervalMs ?? 10_000;
    for (const g of VM_GAUGES) {
      this.vmGauges.set(g, new client.Gauge({ name: promName('ZStack/VM', g), help: `ZStack/VM ${g}`, labelNames: ['VMUuid', ...LABELS[g]], registers: [registry] }));
      this.hostGauges.set(g, new client.Gauge({ name: promName('ZStack/Host', g), help: `ZStack/Host ${g}`, labelNames: LABELS[g], registers: [registry] }));
    }
  }

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Take a sample and publish the values (one at a time; an overlapping call waits for it). */
  sample(): Promise<void> {
    this.sampling ??= this.doSample()
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'metrics sample failed'))
      .finally(() => (this.sampling = undefined));
    return this.sampling;
  }

  private async doSample(): Promise<void> {
    const stats = this.driver.domainStats ? await this.driver.domainStats() : [];
    const cur: Sample = { at: Date.now(), vms: new Map(stats.map((s) => [s.name, s])) };
    if (this.o.host !== false) {
      const root = this.o.procRoot ?? '/proc';
      const rd = (f: string): Promise<string> => readFile(join(root, f), 'utf8').catch(() => '');
      const [stat, mem, net, disks] = await Promise.all([rd('stat'), rd('meminfo'), rd('net/dev'), rd('diskstats')]);
      cur.host = { stat: parseProcStat(stat), mem: parseMeminfo(mem), net: parseNetDev(net), disks: parseDiskstats(disks) };
    }
    const v = computeValues(this.prev, cur);
    this.prev = cur;
    // reset and set in one synchronous stretch: a scrape sees a whole sample
    for (const [g, points] of v.vm) {
      const gauge = this.vmGauges.get(g as GaugeName)!;
      gauge.reset();
      for (const p of points) gauge.set(p.labels, p.value);
    }
    for (const [g, points] of v.host) {
      const gauge = this.hostGauges.get(g as GaugeName)!;
      gauge.reset();
      for (const p of points) gauge.set(p.labels, p.value);
    }
  }
}
