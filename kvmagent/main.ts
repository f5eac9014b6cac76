#!/usr/bin/env node
// tstack-kvmagent: per-host VM agent: libvirt/QEMU, bridges, host facts.
// registerKvmAgent() wires every kvm command onto an AgentServer; tests and the scale
// simulator call it in-process with the fake driver/network, the daemon with the real ones.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import { startAgent } from '../shared/agent/main-helper.js';
import type { AgentServer } from '../shared/agent/server.js';
import * as kvm from '../shared/protocol/kvm.js';
import type { HypervisorDriver } from './hypervisor/driver.js';
import type { NetworkBackend } from './network/bridges.js';
import { StateWatcher } from './watcher.js';
import { VmService, type VmServiceOptions } from './vm/service.js';
import { driverFacts, hostCapacity, hostFacts, l2KernelFeatures } from './facts.js';
import { MetricsCollector } from './metrics/collector.js';
import * as sg from '../shared/protocol/secgroup.js';
import { FakeFirewall, type FirewallBackend } from './secgroup/firewall.js';

export interface KvmAgentOptions extends VmServiceOptions {
  /** State poll interval (default 1000 ms). */
  watchIntervalMs?: number;
  /** Do not start the state watcher (e.g. a simulator with thousands of agents that polls itself). */
  noWatcher?: boolean;
  /** What the kernel can do for L2 networks (default: detected, as in host facts). */
  kernelFeatures?: L2KernelFeatures;
  /** VM and host metrics sample interval (default 10000 ms; 0 with noWatcher); 0: no metrics collection. */
  metricsIntervalMs?: number;
  /** host/facts from the driver alone, named so (the scale simulator), instead of this machine's. */
  driverFactsName?: string;
}

export interface L2KernelFeatures {
  vlan8021q: boolean;
  vxlan: boolean;
}

export interface KvmAgent {
  vms: VmService;
  watcher: StateWatcher;
  driver: HypervisorDriver;
  network: NetworkBackend;
  firewall: FirewallBackend;
  stop(): Promise<void>;
}

/** Everything a kvmagent can do; l2.vlan / l2.vxlan are advertised only when the kernel has them. */
export const KVM_CAPABILITIES = ['vm', 'vm.hotplug.volume', 'vm.hotplug.nic', 'vm.snapshot.external', 'vm.cpu-memory.live', 'vm.iso.live', 'vm.volume.resize.live', 'l2.novlan', 'l2.vlan', 'l2.vxlan', 'state-events', 'secgroup'];

/** The capabilities this host really has: no l2.vlan without 802.1Q, no l2.vxlan without VXLAN. */
export function kvmCapabilities(kf: L2KernelFeatures, caps: readonly string[] = KVM_CAPABILITIES): string[] {
  return caps.filter((c) => (c !== 'l2.vlan' || kf.vlan8021q) && (c !== 'l2.vxlan' || kf.vxlan));
}

export async function registerKvmAgent(server: AgentServer, deps: { driver: HypervisorDriver; network: NetworkBackend; firewall?: FirewallBackend }, opts: KvmAgentOptions = {}): Promise<KvmAgent> {
  const { driver, network } = deps;
  // without a real firewall (fake-driver agents) an in-memory one keeps the last applied state
  const firewall = deps.firewall ?? new FakeFirewall();
  const external = new client.Counter({
    name: 'tstack_kvm_external_state_changes_total',
    help: 'VM state changes seen in libvirt that tstack did not cause, by new state',
    labelNames: ['to'],
    registers: [server.metrics.registry],
  });
  const watcher = new StateWatcher(
    driver,
    (type, data) => {
      external.inc({ to: String(data.to) });
      server.events.emit(type, data);
    },
    opts.watchIntervalMs ?? 1000,
  );
  const vms = new VmService(driver, network, watcher, opts);
  const vmKey = (r: { uuid: string }): string => kvm.vmQueueKey(r);
  const netKey = (): string => kvm.networkQueueKey();

  const factsName = opts.driverFactsName;
  server.handle(kvm.HostFacts, () => (factsName !== undefined ? driverFacts(driver, factsName) : hostFacts(driver)));
  server.handle(kvm.HostCapacity, () => hostCapacity(driver));

  server.handle(kvm.VmStart, (req, ctx) => vms.start(req, ctx.signal), { key: (r) => vmKey(r.spec) });
  server.handle(kvm.VmStop, (req, ctx) => vms.stop(req, ctx.signal), { key: vmKey });
  server.handle(kvm.VmReboot, (req) => vms.reboot(req), { key: vmKey });
  server.handle(kvm.VmPause, (req) => vms.pause(req), { key: vmKey });
  server.handle(kvm.VmResume, (req) => vms.resume(req), { key: vmKey });
  server.handle(kvm.VmDestroy, (req) => vms.destroy(req), { key: vmKey });
  server.handle(kvm.VmGetState, (req) => vms.state(req));
  server.handle(kvm.VmSync, (req) => vms.sync(req));
  server.handle(kvm.VmConsole, (req) => vms.console(req));
  server.handle(kvm.VmAttachVolume, (req) => vms.attachVolume(req), { key: vmKey });
  server.handle(kvm.VmDetachVolume, (req, ctx) => vms.detachVolume(req, ctx.signal), { key: vmKey });
  server.handle(kvm.VmAttachNic, (req) => vms.attachNic(req), { key: vmKey });
  server.handle(kvm.VmDetachNic, (req, ctx) => vms.detachNic(req, ctx.signal), { key: vmKey });
  server.handle(kvm.VmSetCpuMemory, (req) => vms.setCpuMemory(req), { key: vmKey });
  server.handle(kvm.VmAttachIso, (req) => vms.attachIso(req), { key: vmKey });
  server.handle(kvm.VmDetachIso, (req) => vms.detachIso(req), { key: vmKey });
  server.handle(kvm.VmResizeVolume, (req) => vms.resizeVolume(req), { key: vmKey });
  server.handle(kvm.VmSetConsolePassword, (req) => vms.setConsolePassword(req), { key: vmKey });
  server.handle(kvm.VmSnapshot, (req) => vms.snapshot(req), { key: vmKey });
  server.handle(kvm.VmMigrate, (req) => vms.migrate(req), { key: vmKey });
  server.handle(kvm.VmSetVolumeQos, (req) => vms.setVolumeQos(req), { key: vmKey });
  server.handle(kvm.VmSetNicQos, (req) => vms.setNicQos(req), { key: vmKey });

  server.handle(kvm.BridgeCreate, (req, ctx) => network.create(req, ctx.signal), { key: netKey });
  server.handle(kvm.BridgeDelete, (req, ctx) => network.delete(req, ctx.signal), { key: netKey });
  server.handle(kvm.BridgeCheck, (req) => network.check(req));

  server.handle(sg.SecurityGroupApply, (req) => firewall.apply(req.firewall), { key: () => 'secgroup' });
  server.handle(sg.SecurityGroupStatus, async () => firewall.current());

  // metrics: VMs by state (from the watcher's last poll: a scrape never calls libvirt)
  new client.Gauge({
    name: 'tstack_kvm_vms',
    help: 'tstack VMs on this host by hypervisor state (as of the last state poll)',
    labelNames: ['state'],
    registers: [server.metrics.registry],
    collect() {
      this.reset();
      const counts = new Map<string, number>();
      for (const s of watcher.states().values()) counts.set(s, (counts.get(s) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });

  // hypervisor versions in ping's AgentInfo.hypervisor (common.ts), and for controllers that
  // predate that field also as capability tokens "version:libvirt=9.0.0", "version:qemu=7.2.22"
  // (host/facts has them too)
  const caps = new Set(kvmCapabilities(opts.kernelFeatures ?? l2KernelFeatures(), [...(server.opts.capabilities ?? []).filter((c) => !c.startsWith('version:')), ...KVM_CAPABILITIES]));
  server.opts.capabilities = [...caps];
  delete server.opts.hypervisor;
  try {
    const v = await driver.versions();
    server.opts.capabilities = [...caps, `version:libvirt=${v.libvirt}`, `version:qemu=${v.qemu}`];
    server.opts.hypervisor = { libvirt: v.libvirt, qemu: v.qemu };
  } catch {
    /* libvirt unreachable now: ping still answers, without versions */
  }

  if (!opts.noWatcher) await watcher.start();
  // ZStack/VM and ZStack/Host metrics on /metrics (kvmagent/metrics)
  // (off by default with noWatcher: a simulator with thousands of agents must not sample each)
  const metricsMs = opts.metricsIntervalMs ?? (opts.noWatcher ? 0 : 10_000);
  const collector = metricsMs === 0 ? undefined : new MetricsCollector(driver, server.metrics.registry, { intervalMs: metricsMs });
  collector?.start();
  return {
    vms,
    watcher,
    driver,
    network,
    firewall,
    stop: async () => {
      collector?.stop();
      watcher.stop();
      await driver.close();
    },
  };
}

function isMain(): boolean {
  try {
    return realpathSync(process.argv[1] ?? '') === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  const { LibvirtDriver } = await import('./hypervisor/libvirt-driver.js');
  const { IpNetwork } = await import('./network/bridges.js');
  const { Firewall } = await import('./secgroup/firewall.js');
  startAgent(
    {
      name: 'tstack-kvmagent',
      port: 7070,
      description: 'per-host VM agent: libvirt/QEMU, bridges, host facts',
      options: [
        ['--libvirt-uri <uri>', 'libvirt connection URI', 'qemu:///system'],
        ['--watch-interval-ms <ms>', 'VM state poll interval', '1000'],
        ['--metrics-interval-ms <ms>', 'VM and host metrics sample interval (0: off)', '10000'],
      ],
    },
    async (server, cfg) => {
      const uri = String(cfg.extra.libvirtUri ?? 'qemu:///system');
      const agent = await registerKvmAgent(server, { driver: new LibvirtDriver(uri), network: new IpNetwork(), firewall: new Firewall() }, { watchIntervalMs: Number(cfg.extra.watchIntervalMs ?? 1000), metricsIntervalMs: Number(cfg.extra.metricsIntervalMs ?? 10_000) });
      return agent.stop;
    },
    { capabilities: KVM_CAPABILITIES },
  );
}
