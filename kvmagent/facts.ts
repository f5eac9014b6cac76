// Host facts (systeminformation + a few kernel probes) and capacity (what running VMs use).
import si from 'systeminformation';
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { availableParallelism, hostname, totalmem } from 'node:os';
import type { ResponseOf } from '../shared/protocol/command.js';
import type * as kvm from '../shared/protocol/kvm.js';
import type { HypervisorDriver } from './hypervisor/driver.js';

type Facts = ResponseOf<typeof kvm.HostFacts>;
type Capacity = ResponseOf<typeof kvm.HostCapacity>;

let kernelConfig: string | null | undefined;
function kconfig(): string | null {
  if (kernelConfig === undefined) {
    try {
      kernelConfig = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
    } catch {
      kernelConfig = null;
    }
  }
  return kernelConfig;
}

/** Whether the running kernel has a feature: /proc/config.gz, else a module or /proc trace. */
export function kernelHas(option: string, traces: string[]): boolean {
  const c = kconfig();
  if (c !== null) return new RegExp(`^${option}=(y|m)$`, 'm').test(c);
  return traces.some((t) => existsSync(t));
}

/** The kernel's VLAN and VXLAN support (host facts; what the agent advertises as l2.vlan / l2.vxlan). */
export function l2KernelFeatures(): { vlan8021q: boolean; vxlan: boolean } {
  return {
    vlan8021q: kernelHas('CONFIG_VLAN_8021Q', ['/proc/net/vlan', '/sys/module/8021q']),
    vxlan: kernelHas('CONFIG_VXLAN', ['/sys/module/vxlan']),
  };
}

const withTimeout = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> =>
  Promise.race([p.catch(() => fallback), new Promise<T>((r) => setTimeout(() => r(fallback), ms).unref())]);

export async function hostFacts(driver: HypervisorDriver): Promise<Facts> {
  const [cpu, flags, mem, os, nets, disks, versions] = await Promise.all([
    withTimeout(si.cpu(), 15_000, null),
    withTimeout(si.cpuFlags(), 15_000, ''),
    withTimeout(si.mem(), 15_000, null),
    withTimeout(si.osInfo(), 15_000, null),
    withTimeout(si.networkInterfaces(), 15_000, [] as si.Systeminformation.NetworkInterfacesData[]),
    withTimeout(si.blockDevices(), 15_000, [] as si.Systeminformation.BlockDevicesData[]),
    driver.versions().catch(() => ({ libvirt: 'unknown', qemu: 'unknown' })),
  ]);
  const kvmDevice = existsSync('/dev/kvm');
  const netList = Array.isArray(nets) ? nets : [nets];
  return {
    hostname: os?.hostname || hostname(),
    cpu: {
      manufacturer: cpu?.manufacturer ?? '',
      model: cpu?.brand ?? '',
      arch: os?.arch ?? process.arch,
      sockets: cpu?.processors ?? 1,
      // systeminformation can be slower than its timeout on a loaded host: the capacity the
      // allocator needs then comes from Node (0 CPUs would make the host unusable)
      cores: cpu?.physicalCores || availableParallelism(),
      threads: cpu?.cores || availableParallelism(),
      mhz: Math.round((cpu?.speed ?? 0) * 1000),
      flags: String(flags ?? '')
        .split(/\s+/)
        .filter(Boolean),
    },
    memory: { total: mem?.total || totalmem() },
    os: { distro: os?.distro ?? '', release: os?.release ?? '', kernel: os?.kernel ?? '', arch: os?.arch ?? process.arch },
    nics: netList
      .filter((n) => n.iface !== 'lo')
      .map((n) => {
        const o: Facts['nics'][number] = { name: n.iface, mac: n.mac, state: n.operstate, ipv4: n.ip4 ? [n.ip4] : [], virtual: Boolean(n.virtual) };
        if (typeof n.speed === 'number' && n.speed > 0) o.speedMbps = n.speed;
        // a link that vanishes while it is read reports NaN
        if (typeof n.mtu === 'number' && Number.isInteger(n.mtu)) o.mtu = n.mtu;
        return o;
      }),
    disks: disks.filter((d) => d.type === 'disk').map((d) => ({ name: d.name, type: d.type, size: Math.round(d.size ?? 0) })),
    hypervisor: {
      libvirtVersion: versions.libvirt,
      qemuVersion: versions.qemu,
      kvmDevice,
      virtTypes: kvmDevice ? ['kvm', 'qemu'] : ['qemu'],
      defaultVirtType: kvmDevice ? 'kvm' : 'qemu',
    },
    kernelFeatures: {
      ...l2KernelFeatures(),
      bridge: kernelHas('CONFIG_BRIDGE', ['/sys/class/net/bonding_masters', '/sys/module/bridge']),
    },
  };
}

function memAvailableBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export async function hostCapacity(driver: HypervisorDriver): Promise<Capacity> {
  const [node, doms] = await Promise.all([driver.nodeInfo(), driver.list()]);
  const running = doms.filter((d) => d.active);
  return {
    cpuNum: node.cpus,
    cpuUsed: running.reduce((s, d) => s + (d.cpuNum ?? 0), 0),
    totalMemory: node.memoryKiB * 1024,
    usedMemory: running.reduce((s, d) => s + (d.memoryKiB ?? 0) * 1024, 0),
    availableMemory: driver.kind === 'fake' ? node.memoryKiB * 1024 : memAvailableBytes(),
    vmCount: running.length,
  };
}

/**
 * Facts made up from the driver alone (its CPUs and memory), with no look at the machine: for
 * the scale simulator, whose thousands of hosts must neither run systeminformation nor all
 * report this machine's size.
 */
export async function driverFacts(driver: HypervisorDriver, name: string): Promise<Facts> {
  const [node, versions] = await Promise.all([driver.nodeInfo(), driver.versions()]);
  return {
    hostname: name,
    cpu: { manufacturer: 'tstack', model: 'simulated', arch: 'x86_64', sockets: 1, cores: node.cpus, threads: node.cpus, mhz: 2000, flags: [] },
    memory: { total: node.memoryKiB * 1024 },
    os: { distro: 'Debian GNU/Linux', release: '12', kernel: 'simulated', arch: 'x86_64' },
    nics: [{ name: 'eth0', mac: '52:54:00:00:00:01', state: 'up', ipv4: [], virtual: true }],
    disks: [],
    hypervisor: { libvirtVersion: versions.libvirt, qemuVersion: versions.qemu, kvmDevice: false, virtTypes: ['qemu'], defaultVirtType: 'qemu' },
    kernelFeatures: { vlan8021q: true, vxlan: true, bridge: true },
  };
}
