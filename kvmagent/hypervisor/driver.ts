// The one interface between kvmagent's VM logic and a hypervisor. The libvirt driver talks to
// libvirtd; the fake driver keeps domains in memory (controller tests, scale simulator). All
// policy (pre-checks, waiting, state mapping, idempotency) lives above this, in vm/service.ts,
// so both drivers behave the same way through the protocol.
import type { VmStateT } from '../../shared/protocol/kvm.js';
import type { DomainStats } from '../metrics/stats.js';

export interface DomainSummary {
  name: string;
  /** libvirt's domain uuid (for tstack domains: the VM uuid). */
  uuid: string;
  state: VmStateT;
  active: boolean;
  persistent?: boolean;
  cpuNum?: number;
  memoryKiB?: number;
}

export interface DiskSnapshotSpec {
  target: string;
  /** The new top on this host. Neither this nor nfs: this disk is not snapshotted. */
  file?: string;
  /** The new top on NFS, opened by QEMU itself (libnfs). */
  nfs?: { server: string; export: string; path: string };
}

export interface MigrateOptions {
  /** libvirt URI of the destination (qemu+tcp://<address>/system). */
  destUri: string;
  /** QEMU migration stream address (tcp://<address>): else the destination advertises its host name. */
  migrateUri: string;
  /** Domain XML for the destination (same ABI, e.g. another VNC listen address). */
  destXml?: string;
  copyStorage: boolean;
  unsafe: boolean;
  timeoutMs: number;
}

export interface HypervisorDriver {
  readonly kind: 'libvirt' | 'fake';
  versions(): Promise<{ libvirt: string; qemu: string }>;
  nodeInfo(): Promise<{ cpus: number; memoryKiB: number }>;
  /** Every domain libvirt knows (active and defined). */
  list(): Promise<DomainSummary[]>;
  /** One domain by name; undefined when absent. */
  get(name: string): Promise<DomainSummary | undefined>;
  /** libvirt's reason for the current state ("shutdown", "crashed", "ioerror", …), best effort. */
  reason(name: string): Promise<string | undefined>;
  /** Live XML (inactive XML for a defined, stopped domain). */
  xml(name: string): Promise<string>;
  /** Define a persistent domain and start it. */
  defineAndStart(xml: string, name: string): Promise<void>;
  /** ACPI power button. */
  shutdown(name: string): Promise<void>;
  /** Power off at once; no error when it is not running. */
  destroy(name: string): Promise<void>;
  /** Remove the definition; no error when it is absent. */
  undefine(name: string): Promise<void>;
  suspend(name: string): Promise<void>;
  resume(name: string): Promise<void>;
  reboot(name: string, mode: 'acpi' | 'reset'): Promise<void>;
  /** Hot-plug a device: live when the domain runs, and into its persistent config. */
  attachDevice(name: string, deviceXml: string): Promise<void>;
  /** Ask to remove a device by its alias (the guest may take a while to release it). */
  detachDeviceAlias(name: string, alias: string): Promise<void>;
  /** Insert (path) or eject (undefined) the medium of a CD-ROM drive. */
  changeMedia(name: string, target: string, path: string | undefined): Promise<void>;
  /** Virtual size in bytes of a disk as QEMU sees it. */
  blockCapacity(name: string, target: string): Promise<number>;
  /** Grow a disk of a running domain. */
  blockResize(name: string, target: string, bytes: number): Promise<void>;
  /** Set a disk's I/O limits live and in the config (libvirt's iotune names; 0 = unlimited). */
  blockIoTune(name: string, target: string, tune: Record<string, number>): Promise<void>;
  /** Set a NIC's average bandwidth (KiB/s; 0 = unlimited) live and in the config. */
  ifaceTune(name: string, iface: string, kib: { inbound: number; outbound: number }): Promise<void>;
  /** XML of the persistent definition (with secrets when `secure`); live XML with secrets otherwise. */
  xmlWith(name: string, o: { inactive: boolean; secure: boolean; migratable?: boolean }): Promise<string>;
  /** Replace a device (e.g. <graphics>) live and/or in the persistent config. */
  updateDevice(name: string, deviceXml: string, scope: 'live' | 'config'): Promise<void>;
  setVcpus(name: string, n: number): Promise<void>;
  setMemory(name: string, kib: number): Promise<void>;
  /** External, disk-only, atomic snapshot without libvirt metadata. */
  snapshotDisks(name: string, disks: DiskSnapshotSpec[], o: { quiesce: boolean; reuseExternal: boolean }): Promise<void>;
  /** Counters of every running domain (CPU, balloon, block, interface), for metrics. */
  domainStats?(): Promise<DomainStats[]>;
  /** Live, peer-to-peer; on success the domain is persistent on the destination and undefined here. */
  migrate(name: string, o: MigrateOptions): Promise<void>;
  close(): Promise<void>;
}

/** libvirt's numeric domain states → tstack's names. */
export function stateFromLibvirt(n: number): VmStateT {
  switch (n) {
    case 1: // running
    case 2: // blocked
      return 'Running';
    case 3:
      return 'Paused';
    case 4:
      return 'Stopping';
    case 5:
      return 'Stopped';
    case 6:
      return 'Crashed';
    case 7:
      return 'Suspended';
    default:
      return 'Unknown';
  }
}
