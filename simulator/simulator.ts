// N simulated hosts in one process. Each host is a real AgentServer (shared/agent) on its own
// loopback address (127.2.0.1, 127.2.0.2, …) and one port, with its own token; on it run the
// kvmagent's command handlers on the FakeDriver (every VM the controller creates is a domain
// record there, answering vm/list, states and events) plus in-memory storage and vrouter
// answers (simulator/fakes.ts). One server per host serves all three agents' commands (their
// paths are disjoint), so a host costs one listening socket: 1,000 hosts fit one process.
// The controller adds them through POST /v1/hosts with `ssh: false` and talks to them over HTTP.
//
// Faults: per command (or '*' for every command but ping/connect) a latency, a jitter and a
// failure rate; powerOff(i) stops answering (connections refused), powerOn(i) comes back
// as a restarted agent (new startedAt) with the domains kept, as libvirt keeps them.
import { randomBytes } from 'node:crypto';
import { AgentServer } from '../shared/agent/server.js';
import { TStackError } from '../shared/errors.js';
import { tstackVersion } from '../shared/sysinfo.js';
import { FakeDriver } from '../kvmagent/hypervisor/fake-driver.js';
import { FakeNetwork } from '../kvmagent/network/bridges.js';
import { KVM_CAPABILITIES, registerKvmAgent, type KvmAgent } from '../kvmagent/main.js';
import { newStorageState, newVrouterState, registerFakeStorageAndVrouter, type FakeStorageState, type FakeVrouterState } from './fakes.js';
import { Traffic } from './traffic.js';

export interface FaultRule {
  /** Added before the command runs (ms). */
  latencyMs?: number;
  /** Up to this much more, uniformly at random (ms). */
  jitterMs?: number;
  /** Fraction of calls (0..1) that fail with SIMULATED_FAILURE. */
  failRate?: number;
}

/** By command name (e.g. 'vm/start'); '*' applies to every command except ping and connect. */
export type FaultRules = Record<string, FaultRule>;

export interface SimulatorOptions {
  hosts: number;
  /** Address of host 0; host i listens on this + i (default 127.2.0.1). Must be a loopback or local address. */
  firstIp?: string;
  /** The port every host listens on (default 7070). */
  port?: number;
  faults?: FaultRules;
  /** CPU threads and memory each host reports (default 64 / 256 GiB). */
  cpus?: number;
  memoryKiB?: number;
  /** Hosts started at once (default 50). */
  startConcurrency?: number;
}

export interface SimHost {
  index: number;
  managementIp: string;
  port: number;
  token: string;
  powered: boolean;
  driver: FakeDriver;
  storage: FakeStorageState;
  /** The vrouter's state: a fresh one at each power-on (a restarted agent that lost its data). */
  vrouter?: FakeVrouterState;
  server?: AgentServer;
  agent?: KvmAgent;
}

/** The public view of a host (what the bench and tests need to add it to a controller). */
export interface SimHostInfo {
  index: number;
  managementIp: string;
  port: number;
  token: string;
  powered: boolean;
  vms: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** firstIp + n as a dotted quad; refuses to leave 127.0.0.0/8 when firstIp is in it. */
export function nthIp(firstIp: string, n: number): string {
  const m = IPV4.exec(firstIp);
  if (!m || m.slice(1).some((x) => Number(x) > 255)) throw new TStackError('INVALID_ARGUMENT', `firstIp: not an IPv4 address: ${firstIp}`, { field: 'firstIp' });
  const base = m.slice(1).reduce((a, x) => a * 256 + Number(x), 0);
  const v = base + n;
  const ip = [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
  if (firstIp.startsWith('127.') && !ip.startsWith('127.')) throw new TStackError('INVALID_ARGUMENT', `too many hosts for ${firstIp}: host ${n} would leave 127.0.0.0/8`, { field: 'hosts' });
  return ip;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), reject(new TStackError('CANCELLED', 'aborted'))), { once: true });
  });

export class Simulator {
  readonly hosts: SimHost[] = [];
  faults: FaultRules;
  /** Requests the hosts answered (control API GET /traffic). */
  readonly traffic = new Traffic();
  private readonly version = tstackVersion();

  constructor(readonly opts: SimulatorOptions) {
    if (!Number.isInteger(opts.hosts) || opts.hosts < 0 || opts.hosts > 60_000) throw new TStackError('INVALID_ARGUMENT', `hosts: expected 0..60000, got ${opts.hosts}`, { field: 'hosts' });
    this.faults = { ...(opts.faults ?? {}) };
    validateFaults(this.faults);
    const first = opts.firstIp ?? '127.2.0.1';
    for (let i = 0; i < opts.hosts; i++) {
      const d: { cpus?: number; memoryKiB?: number } = {};
      if (opts.cpus !== undefined) d.cpus = opts.cpus;
      if (opts.memoryKiB !== undefined) d.memoryKiB = opts.memoryKiB;
      this.hosts.push({ index: i, managementIp: nthIp(first, i), port: opts.port ?? 7070, token: randomBytes(24).toString('hex'), powered: false, driver: new FakeDriver(d), storage: newStorageState() });
    }
  }

  /** Power every host on (bounded concurrency). */
  async start(): Promise<void> {
    const queue = this.hosts.filter((h) => !h.powered);
    const workers = Array.from({ length: Math.min(this.opts.startConcurrency ?? 50, queue.length) }, async () => {
      for (let h = queue.shift(); h; h = queue.shift()) await this.powerOn(h.index);
    });
    await Promise.all(workers);
  }

  async stop(): Promise<void> {
    await Promise.all(this.hosts.filter((h) => h.powered).map((h) => this.powerOff(h.index)));
  }

  private host(i: number): SimHost {
    const h = this.hosts[i];
    if (!h) throw new TStackError('NOT_FOUND', `no simulated host ${i} (there are ${this.hosts.length})`);
    return h;
  }

  /** Start answering: a fresh agent server (new startedAt) on the host's address, same domains. */
  async powerOn(i: number): Promise<void> {
    const h = this.host(i);
    if (h.powered) return;
    const server = new AgentServer({
      agent: 'tstack-kvmagent',
      version: this.version,
      token: h.token,
      capabilities: KVM_CAPABILITIES,
      // results are read by callback or at once; a short retention keeps 1,000 hosts' memory flat
      retentionMs: 5 * 60_000,
      intercept: (command, task) => this.intercept(command, task),
      observe: this.traffic.observer(h.index),
    });
    const agent = await registerKvmAgent(server, { driver: h.driver, network: new FakeNetwork(['eth0']) }, { noWatcher: true, checkHostResources: false, kernelFeatures: { vlan8021q: true, vxlan: true }, driverFactsName: `sim-${h.index}` });
    const vrouter = newVrouterState();
    registerFakeStorageAndVrouter(server, h.storage, vrouter);
    try {
      await server.listen(h.managementIp, h.port);
    } catch (e) {
      await agent.stop();
      await server.close();
      throw new TStackError('SIMULATOR_ERROR', `host ${i}: cannot listen on ${h.managementIp}:${h.port}: ${(e as Error).message}`);
    }
    Object.assign(h, { server, agent, vrouter, powered: true });
  }

  /** Stop answering (connections refused); the domains stay in the fake driver. */
  async powerOff(i: number): Promise<void> {
    const h = this.host(i);
    if (!h.powered) return;
    h.powered = false;
    await h.agent?.stop();
    await h.server?.close();
    delete h.server;
    delete h.agent;
  }

  /** Running domains for VMs the controller's inventory has on host i but this simulator never started (the bench's preloaded inventory). */
  adopt(i: number, vmUuids: readonly string[], o: { cpuNum: number; memoryKiB: number }): void {
    const h = this.hosts[i];
    if (!h) throw new TStackError('NOT_FOUND', `no simulated host ${i}`);
    for (const u of vmUuids) h.driver.adopt(u, o);
  }

  setFaults(rules: FaultRules): void {
    validateFaults(rules);
    this.faults = { ...rules };
  }

  info(h: SimHost): SimHostInfo {
    return { index: h.index, managementIp: h.managementIp, port: h.port, token: h.token, powered: h.powered, vms: h.driver.domains.size };
  }

  /** Totals over all hosts: domains by state. */
  stats(): { hosts: number; powered: number; vms: number; byState: Record<string, number> } {
    const byState: Record<string, number> = {};
    let vms = 0;
    for (const h of this.hosts) {
      for (const d of h.driver.domains.values()) {
        vms++;
        byState[d.state] = (byState[d.state] ?? 0) + 1;
      }
    }
    return { hosts: this.hosts.length, powered: this.hosts.filter((h) => h.powered).length, vms, byState };
  }

  private async intercept(command: string, task: { readonly signal: AbortSignal }): Promise<void> {
    const rule = this.faults[command] ?? (command === 'ping' || command === 'connect' ? undefined : this.faults['*']);
    if (!rule) return;
    const ms = (rule.latencyMs ?? 0) + Math.random() * (rule.jitterMs ?? 0);
    if (ms > 0) await sleep(ms, task.signal);
    if (rule.failRate && Math.random() < rule.failRate) throw new TStackError('SIMULATED_FAILURE', `${command}: failure injected by the simulator (failRate ${rule.failRate})`);
  }
}

export function validateFaults(rules: unknown): asserts rules is FaultRules {
  if (typeof rules !== 'object' || rules === null || Array.isArray(rules)) throw new TStackError('INVALID_ARGUMENT', 'faults: expected an object of command → {latencyMs, jitterMs, failRate}', { field: 'faults' });
  for (const [cmd, r] of Object.entries(rules as Record<string, unknown>)) {
    if (!/^(\*|[a-z0-9][a-z0-9/_.-]{0,127})$/.test(cmd)) throw new TStackError('INVALID_ARGUMENT', `faults: bad command name ${JSON.stringify(cmd)}`, { field: 'faults' });
    if (typeof r !== 'object' || r === null) throw new TStackError('INVALID_ARGUMENT', `faults.${cmd}: expected an object`, { field: `faults.${cmd}` });
    for (const [k, v] of Object.entries(r)) {
      const max = k === 'failRate' ? 1 : 600_000;
      if (!['latencyMs', 'jitterMs', 'failRate'].includes(k)) throw new TStackError('INVALID_ARGUMENT', `faults.${cmd}.${k}: unknown field`, { field: `faults.${cmd}.${k}` });
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) throw new TStackError('INVALID_ARGUMENT', `faults.${cmd}.${k}: expected a number 0..${max}`, { field: `faults.${cmd}.${k}` });
    }
  }
}
