// Raw counters of running domains and of the host, and their parsers (pure; unit-tested):
// `virsh domstats --raw` output, /proc/stat, /proc/meminfo, /proc/net/dev, /proc/diskstats.

export interface DomainStats {
  name: string;
  /** Cumulative guest CPU time, ns. */
  cpuTimeNs: number;
  vcpuTimesNs: number[];
  /** Memory given to the guest (balloon.current), KiB. */
  memoryKiB: number;
  /** Guest-reported (balloon driver) available/unused, KiB, when the guest reports them. */
  availableKiB?: number;
  unusedKiB?: number;
  /** Host RSS of the QEMU process, KiB. */
  rssKiB?: number;
  disks: Array<{ dev: string; rdBytes: number; wrBytes: number; rdReqs: number; wrReqs: number }>;
  /** rx/tx from the guest's point of view (libvirt swaps them for tap devices). */
  nics: Array<{ dev: string; rxBytes: number; txBytes: number; rxPkts: number; txPkts: number; rxErrs: number; txErrs: number }>;
}

const num = (v: string | undefined): number => {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
};

/** Parse `virsh domstats --raw` (every domain it printed). */
export function parseDomstats(text: string): DomainStats[] {
  const out: DomainStats[] = [];
  let kv: Map<string, string> | undefined;
  let name = '';
  const flush = (): void => {
    if (!kv) return;
    const d: DomainStats = { name, cpuTimeNs: num(kv.get('cpu.time')), vcpuTimesNs: [], memoryKiB: num(kv.get('balloon.current')), disks: [], nics: [] };
    if (kv.has('balloon.available')) d.availableKiB = num(kv.get('balloon.available'));
    if (kv.has('balloon.unused')) d.unusedKiB = num(kv.get('balloon.unused'));
    if (kv.has('balloon.rss')) d.rssKiB = num(kv.get('balloon.rss'));
    const vcpus = num(kv.get('vcpu.maximum') ?? kv.get('vcpu.current'));
    for (let i = 0; i < vcpus; i++) if (kv.has(`vcpu.${i}.time`)) d.vcpuTimesNs[i] = num(kv.get(`vcpu.${i}.time`));
    for (let i = 0; i < num(kv.get('block.count')); i++) {
      const dev = kv.get(`block.${i}.name`);
      // a backing-chain element repeats the device name; the first entry is the active layer
      if (!dev || d.disks.some((x) => x.dev === dev)) continue;
      d.disks.push({ dev, rdBytes: num(kv.get(`block.${i}.rd.bytes`)), wrBytes: num(kv.get(`block.${i}.wr.bytes`)), rdReqs: num(kv.get(`block.${i}.rd.reqs`)), wrReqs: num(kv.get(`block.${i}.wr.reqs`)) });
    }
    for (let i = 0; i < num(kv.get('net.count')); i++) {
      const dev = kv.get(`net.${i}.name`);
      if (!dev) continue;
      const g = (k: string): number => num(kv!.get(`net.${i}.${k}`));
      d.nics.push({ dev, rxBytes: g('rx.bytes'), txBytes: g('tx.bytes'), rxPkts: g('rx.pkts'), txPkts: g('tx.pkts'), rxErrs: g('rx.errs'), txErrs: g('tx.errs') });
    }
    out.push(d);
  };
  for (const line of text.split('\n')) {
    const m = /^Domain: '(.*)'\s*$/.exec(line);
    if (m) {
      flush();
      name = m[1]!;
      kv = new Map();
      continue;
    }
    const eq = line.indexOf('=');
    if (kv && eq > 0) kv.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  flush();
  return out;
}

export interface CpuTimes {
  /** Jiffies: busy (everything but idle and iowait) and total. */
  busy: number;
  total: number;
}

/** /proc/stat: the aggregate line ('all') and each cpuN. */
export function parseProcStat(text: string): { all: CpuTimes; cpus: CpuTimes[] } {
  let all: CpuTimes = { busy: 0, total: 0 };
  const cpus: CpuTimes[] = [];
  for (const line of text.split('\n')) {
    const m = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const total = f.slice(0, 8).reduce((s, x) => s + (Number.isFinite(x) ? x : 0), 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const t = { busy: total - idle, total };
    if (m[1] === '') all = t;
    else cpus[Number(m[1])] = t;
  }
  return { all, cpus };
}

/** /proc/meminfo: total and available, bytes. */
export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } {
  const get = (k: string): number => num(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1]) * 1024;
  return { totalBytes: get('MemTotal'), availableBytes: get('MemAvailable') };
}

export interface IfCounters {
  dev: string;
  rxBytes: number;
  rxPkts: number;
  rxErrs: number;
  txBytes: number;
  txPkts: number;
  txErrs: number;
}

/** /proc/net/dev, without loopback and the VMs' own taps/bridges (counted per VM). */
export function parseNetDev(text: string): IfCounters[] {
  const out: IfCounters[] = [];
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const dev = m[1]!;
    if (dev === 'lo' || /^(vn|vnet|tap|virbr|br|veth|vx)/.test(dev)) continue;
    const f = m[2]!.split(/\s+/).map(Number);
    out.push({ dev, rxBytes: f[0] ?? 0, rxPkts: f[1] ?? 0, rxErrs: f[2] ?? 0, txBytes: f[8] ?? 0, txPkts: f[9] ?? 0, txErrs: f[10] ?? 0 });
  }
  return out;
}

export interface DiskCounters {
  dev: string;
  rdReqs: number;
  rdBytes: number;
  wrReqs: number;
  wrBytes: number;
}

/** /proc/diskstats: whole physical disks only (no partitions, loop, ram, device-mapper, rbd, nbd). */
export function parseDiskstats(text: string): DiskCounters[] {
  const out: DiskCounters[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const dev = f[2];
    if (!dev || f.length < 10) continue;
    if (/^(loop|ram|dm-|sr|nbd|rbd|zram|md)/.test(dev)) continue;
    if (/^(sd|vd|xvd|hd)[a-z]+\d+$/.test(dev) || /^nvme\d+n\d+p\d+$/.test(dev) || /^mmcblk\d+p\d+$/.test(dev)) continue;
    out.push({ dev, rdReqs: num(f[3]), rdBytes: num(f[5]) * 512, wrReqs: num(f[7]), wrBytes: num(f[9]) * 512 });
  }
  return out;
}
