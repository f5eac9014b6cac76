// Host operations on the inventory: add (deploy over SSH, then Connected; a failed add removes
// the half-made host, so nothing is left Connecting), reconnect (a light reconnect when the
// agents answer with this version, else a re-deploy over SSH with the controller's own key),
// changeState (enable/disable/maintain), delete (stop agents, forget the host).
// One operation at a time per host (in this process); the tracker skips busy hosts.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { PROTOCOL_VERSION, common } from '../../shared/protocol/index.js';
import * as kvm from '../../shared/protocol/kvm.js';
import type { ResponseOf } from '../../shared/protocol/command.js';
import type { Resource } from '../store/types.js';
import { mustKindDef, prepareCreate } from '../model/index.js';
import { deployHost, stopAgents, type DeployedAgent, type DeployResult } from './deploy.js';
import { buildPackage, ownRoot, readVersion, type BuiltPackage } from './package.js';
import { newEd25519KeyPair } from './sshkeys.js';
import type { ControllerContext } from '../context.js';
import type { HostRuntime } from './runtime.js';
import { AGENTS, DEFAULT_AGENT_PORTS, DEFAULT_LAYOUT, type AgentName, type HostLayout } from './render.js';
import { stateTransition, type StateEvent } from './states.js';
import { syncVms } from './vmsync.js';
import { connectSimulatedHost, isSimulated, simulatedAgents } from './simulated.js';

const log = logger('host');

export interface HostOptions {
  /** Where things go on hosts (tests: temp dirs). */
  layout?: Partial<HostLayout>;
  /** The built tree to deploy (default: the controller's own). */
  packageRoot?: string;
  /** Where built agent packages are kept (default <dataDir>/host-packages). Tests point all their
   * controllers at one directory: a package is keyed by version and build stamp, so each is built once. */
  packageCacheDir?: string;
  /** 'bundle' (default): production node_modules (and node, if the host lacks it) ship in the package; 'npm': the host runs npm ci --omit=dev. */
  installMode?: 'bundle' | 'npm';
  ports?: Partial<Record<AgentName, number>>;
  /** Address agents listen on (default 0.0.0.0). */
  listenHost?: string;
  logLevel?: string;
  agentExtra?: Partial<Record<AgentName, Record<string, string | number | boolean>>>;
  healthTimeoutMs?: number;
  allowUnsupportedOs?: boolean;
  /** Tracker: ping interval (default 10 s), misses before Disconnected (3), ping timeout (5 s). */
  pingIntervalMs?: number;
  maxMisses?: number;
  pingTimeoutMs?: number;
  /** Hosts pinged at once by the tracker (default 32). */
  trackerConcurrency?: number;
  /** Shared inventory: how long a controller's hold on tracking a host lasts without renewal (default 3 × the ping interval, ≥ 5 s). */
  trackerLeaseTtlMs?: number;
  /** A Disconnected host (not in Maintenance) is reconnected over SSH this often, restarting dead agents (default 60 s; 0 = never). */
  autoReconnectMs?: number;
}

/**
 * What host operations need: a part of the controller's context (controller/context.ts) plus
 * this controller's host options. `hostRuntime` is the controller's own (busy hosts, queues).
 */
export type HostDeps = Pick<ControllerContext, 'store' | 'agentClient' | 'dataDir' | 'hostRuntime'> &
  Partial<Pick<ControllerContext, 'agents' | 'bus' | 'adminAccountUuid' | 'evacuate' | 'reconcile'>> & {
    /** URL agents reach the controller at (events). */
    controllerUrl: string | (() => string);
    options?: HostOptions;
  };

/** Hidden per-host agent data (fields starting with '_' are never shown by the API). */
export interface HostAgentRecord {
  port: number;
  token: string;
  startedAt?: string;
}
export type HostAgents = Record<AgentName, HostAgentRecord>;

export interface OpHooks {
  progress?: (percent: number, message?: string) => void;
}

/** The controller's in-memory host state (service and tracker of one controller see the same busy set). */
export const runtimeOf = (deps: HostDeps): HostRuntime => deps.hostRuntime;

export const controllerUrlOf = (d: HostDeps): string => (typeof d.controllerUrl === 'function' ? d.controllerUrl() : d.controllerUrl);
export const layoutOf = (d: HostDeps): HostLayout => ({ ...DEFAULT_LAYOUT, ...(d.options?.layout ?? {}) });
/** Agent ports: the controller's config (default 7070/7171/7272); a host's own non-default agentPort wins for kvmagent. */
export const portsOf = (d: HostDeps, agentPort?: number): Record<AgentName, number> => {
  const p = { ...DEFAULT_AGENT_PORTS, ...(d.options?.ports ?? {}) };
  if (agentPort && agentPort !== DEFAULT_AGENT_PORTS.kvmagent) p.kvmagent = agentPort;
  return p;
};
export const controllerVersion = (d: HostDeps): string => readVersion(d.options?.packageRoot ?? ownRoot());

/** The controller's SSH key pair (<dataDir>/ssh/id_ed25519), created on first use. */
export function controllerKey(dataDir: string): { privateKey: string; publicKey: string } {
  const dir = join(dataDir, 'ssh');
  const priv = join(dir, 'id_ed25519');
  const pub = priv + '.pub';
  if (!existsSync(priv) || !existsSync(pub)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const k = newEd25519KeyPair(`tstack-controller@${hostname().replace(/[^A-Za-z0-9.-]/g, '') || 'controller'}`);
    writeFileSync(priv, k.private, { mode: 0o600 });
    writeFileSync(pub, k.public.trim() + '\n', { mode: 0o644 });
  }
  return { privateKey: readFileSync(priv, 'utf8'), publicKey: readFileSync(pub, 'utf8').trim() };
}

function packageOf(d: HostDeps): Promise<BuiltPackage> {
  const rt = runtimeOf(d);
  const root = d.options?.packageRoot ?? ownRoot();
  const bundle = (d.options?.installMode ?? 'bundle') === 'bundle';
  const key = `${root}|${bundle}`;
  let p = rt.pkgs.get(key);
  if (!p) {
    p = buildPackage({ root, bundleNodeModules: bundle }, d.options?.packageCacheDir ?? join(d.dataDir, 'host-packages')).catch((e: unknown) => {
      rt.pkgs.delete(key);
      throw e;
    });
    rt.pkgs.set(key, p);
  }
  return p;
}

/** Run fn with the host marked busy (the tracker leaves it alone), one at a time per host. */
export async function withHost<T>(d: HostDeps, uuid: string, fn: () => Promise<T>): Promise<T> {
  const rt = runtimeOf(d);
  return rt.queues.run(`host:${uuid}`, async () => {
    rt.busy.add(uuid);
    try {
      return await fn();
    } finally {
      rt.busy.delete(uuid);
    }
  });
}

/** Host fields from a deploy (facts, versions, how it runs). */
function connectedFields(r: DeployResult): Partial<Resource> {
  const f: Partial<Resource> = {
    status: 'Connected',
    statusReason: undefined,
    virtType: r.virtType,
    virtTypeNote: r.virtNote,
    kvmDevice: r.kvmDevice,
    architecture: r.arch,
    osDistribution: r.os.id,
    osVersion: r.os.versionId,
    kernelVersion: r.kernel,
    agentVersion: r.version,
    bootId: r.bootId,
    sshHostKey: r.sshHostKey,
    serviceManager: r.serviceManager,
    lastConnectDate: new Date().toISOString(),
    _agents: Object.fromEntries(AGENTS.map((a) => [a, { port: r.agents[a].port, token: r.agents[a].token, startedAt: r.agents[a].startedAt }])) as HostAgents,
  };
  if (r.facts) {
    f.totalCpu = r.facts.cpu.threads;
    f.cpuSockets = r.facts.cpu.sockets;
    f.cpuModelName = r.facts.cpu.model;
    f.totalMemory = r.facts.memory.total;
    f.hostname = r.facts.hostname;
    f.libvirtVersion = r.facts.hypervisor.libvirtVersion;
    f.qemuVersion = r.facts.hypervisor.qemuVersion;
    // where a VXLAN pool's VTEP CIDR finds this host's tunnel endpoint (network/vxlan.ts)
    f.ipv4Addresses = [...new Set(r.facts.nics.flatMap((n) => n.ipv4))];
  }
  return f;
}

interface Credentials {
  password?: string;
  privateKey?: string;
}

async function deploy(d: HostDeps, host: Resource, creds: Credentials, hooks: OpHooks, force = false, partial?: { only: AgentName[]; keep: Partial<Record<AgentName, DeployedAgent>> }): Promise<DeployResult> {
  const pkg = await packageOf(d);
  const eventToken = randomBytes(24).toString('base64url');
  const key = controllerKey(d.dataDir);
  const req: Parameters<typeof deployHost>[0] = {
    hostUuid: host.uuid,
    managementIp: String(host.managementIp),
    sshPort: Number(host.sshPort ?? 22),
    username: String(host.username ?? 'root'),
    ports: portsOf(d, host.agentPort as number | undefined),
    controllerUrl: controllerUrlOf(d),
    eventToken,
    authorizeKey: key.publicKey,
    force,
  };
  if (partial) {
    req.only = partial.only;
    req.keep = partial.keep;
  }
  if (creds.password) req.password = creds.password;
  if (creds.privateKey) req.privateKey = creds.privateKey;
  if (!creds.password && !creds.privateKey) req.privateKey = key.privateKey;
  if (typeof host.sshHostKey === 'string' && host.sshHostKey) req.expectedHostKey = host.sshHostKey;
  if (host.virtType === 'kvm' || host.virtType === 'qemu') req.virtType = (host.requestedVirtType as 'kvm' | 'qemu' | undefined) ?? host.virtType;
  if (d.options?.listenHost) req.listenHost = d.options.listenHost;
  if (d.options?.allowUnsupportedOs) req.allowUnsupportedOs = true;
  const cfg: Parameters<typeof deployHost>[1] = { layout: layoutOf(d), pkg, agentClient: d.agentClient };
  if (d.options?.logLevel) cfg.logLevel = d.options.logLevel;
  if (d.options?.agentExtra) cfg.agentExtra = d.options.agentExtra;
  if (d.options?.healthTimeoutMs) cfg.healthTimeoutMs = d.options.healthTimeoutMs;
  if (hooks.progress) cfg.progress = hooks.progress;
  // the event token must be known before the agents get it at connect
  d.agents?.register(host.uuid, eventToken);
  const r = await deployHost(req, cfg);
  runtimeOf(d).bound.add(host.uuid);
  return r;
}

/**
 * POST /v1/hosts: create the host (status Connecting), deploy and connect. A failed add deletes
 * the host again (like ZStack's AddHost) and throws the typed error (HOST_AUTH_FAILED, …).
 * Body: the model's host create fields, plus `sshPrivateKey` as an alternative to `password`.
 */
export async function addHost(d: HostDeps, body: Record<string, unknown>, hooks: OpHooks = {}): Promise<Resource> {
  const def = mustKindDef('host');
  // sshPrivateKey is a secret field of the model; accepted here too if a model lacks it
  const { sshPrivateKey, ssh, ...rest } = body;
  if (sshPrivateKey !== undefined && (def.createSchema.properties as Record<string, unknown>).sshPrivateKey !== undefined) rest.sshPrivateKey = sshPrivateKey;
  const prepared = await prepareCreate(d.store, def, rest, { ownerAccountUuid: d.adminAccountUuid ?? 'admin' });
  // ssh: false — a tstack-simulator host: no deploy (controller/host/simulated.ts)
  const simAgents = ssh === false ? simulatedAgents(body, prepared.secrets) : undefined;
  if (!simAgents && prepared.secrets.agentToken !== undefined) throw new TStackError('INVALID_ARGUMENT', 'agentToken: only with ssh: false', { field: 'agentToken' });
  const creds: Credentials = {};
  if (typeof prepared.secrets.password === 'string') creds.password = prepared.secrets.password;
  const pk = prepared.secrets.sshPrivateKey ?? sshPrivateKey;
  if (typeof pk === 'string' && pk) creds.privateKey = pk;
  if (!simAgents && !creds.password && !creds.privateKey) throw new TStackError('INVALID_ARGUMENT', 'password: give the SSH password (or sshPrivateKey) of the host', { field: 'password' });
  const ip = String(prepared.resource.managementIp);
  const dup = await d.store.list({ kind: 'host', filters: [{ field: 'managementIp', op: '=', value: ip }], limit: 1 });
  if (dup.total > 0) throw new TStackError('CONFLICT', `a host with managementIp ${ip} exists already (${dup.items[0]!.uuid})`, { field: 'managementIp' });
  const res = prepared.resource;
  res.status = 'Connecting';
  if (res.virtType) res.requestedVirtType = res.virtType;
  if (simAgents) Object.assign(res, { simulated: true, _agents: simAgents, virtType: 'qemu', requestedVirtType: 'qemu' });
  const host = await d.store.create(res);
  return withHost(d, host.uuid, async () => {
    try {
      if (simAgents) return await connectSimulatedHost(d, host, hooks);
      const r = await deploy(d, host, creds, hooks);
      log.info({ host: host.uuid, ip, install: r.install, virtType: r.virtType }, 'host added');
      return await d.store.update(host.uuid, connectedFields(r));
    } catch (e) {
      d.agents?.unregister(host.uuid);
      await d.store.delete(host.uuid).catch(() => undefined);
      log.info({ host: host.uuid, ip, err: (e as Error).message }, 'adding the host failed; removed it');
      throw e;
    }
  });
}

async function setStatus(d: HostDeps, uuid: string, status: string, reason?: string): Promise<Resource> {
  return d.store.update(uuid, { status, statusReason: reason });
}

/** Ping every agent of a host with its stored token; undefined for the ones that don't answer. */
export type AgentInfo = ResponseOf<typeof common.Ping>;
/** `once`: a refused connection is not retried (the tracker, whose rounds count misses). */
export async function pingAgents(d: HostDeps, host: Resource, timeoutMs = 5_000, once = false): Promise<Partial<Record<AgentName, AgentInfo>>> {
  const agents = host._agents as HostAgents | undefined;
  const out: Partial<Record<AgentName, AgentInfo>> = {};
  if (!agents) return out;
  await Promise.all(
    AGENTS.map(async (a) => {
      const rec = agents[a];
      if (!rec) return;
      try {
        out[a] = await d.agentClient.call(common.Ping, endpoint(host, rec), {}, { timeoutMs, once });
      } catch {
        /* no answer */
      }
    }),
  );
  return out;
}

export const endpoint = (host: Resource, rec: HostAgentRecord): { url: string; token: string } => ({ url: `http://${String(host.managementIp)}:${rec.port}`, token: rec.token });

/** Connect the agents again (fresh event token, e.g. after an agent or controller restart). */
export async function rebind(d: HostDeps, host: Resource): Promise<void> {
  const agents = host._agents as HostAgents;
  const eventToken = d.agents?.register(host.uuid) ?? randomBytes(24).toString('base64url');
  // the agents are separate processes: connected side by side
  await Promise.all(AGENTS.map((a) => d.agentClient.call(common.Connect, endpoint(host, agents[a]), { hostUuid: host.uuid, controllerUrl: controllerUrlOf(d), eventToken }, { timeoutMs: 15_000 })));
  runtimeOf(d).bound.add(host.uuid);
}

/**
 * Connect every agent (fresh event token) and return what each answered in `infos`, as
 * pingAgents does (a connect answers the same agent info as a ping); `refused` are the agents
 * that answered with an error (e.g. another protocol version), as opposed to no answer at all.
 * The host counts as bound only when all of them took the connect. Sent once (the tracker's
 * rounds count the misses).
 */
export async function connectAgents(d: HostDeps, host: Resource, timeoutMs: number): Promise<{ infos: Partial<Record<AgentName, AgentInfo>>; refused: AgentName[] }> {
  const agents = host._agents as HostAgents | undefined;
  const infos: Partial<Record<AgentName, AgentInfo>> = {};
  const refused: AgentName[] = [];
  if (!agents) return { infos, refused };
  const eventToken = d.agents?.register(host.uuid) ?? randomBytes(24).toString('base64url');
  await Promise.all(
    AGENTS.map(async (a) => {
      if (!agents[a]) return;
      try {
        infos[a] = await d.agentClient.call(common.Connect, endpoint(host, agents[a]), { hostUuid: host.uuid, controllerUrl: controllerUrlOf(d), eventToken }, { timeoutMs, once: true });
      } catch (e) {
        if (!NO_ANSWER.has((e as TStackError).code)) refused.push(a);
      }
    }),
  );
  if (AGENTS.every((a) => infos[a])) runtimeOf(d).bound.add(host.uuid);
  return { infos, refused };
}

/** Agent client errors that mean the agent did not answer at all. */
const NO_ANSWER = new Set(['AGENT_UNREACHABLE', 'TIMEOUT', 'TASK_LOST']);

/**
 * Reconnect: when every agent answers with the controller's version, connect again, refresh
 * facts and sync VM states; otherwise re-deploy over SSH (controller key, known host key).
 * On failure the host ends Disconnected with the reason.
 */
export async function reconnectHost(d: HostDeps, uuid: string, hooks: OpHooks = {}, opts: { redeploy?: boolean } = {}): Promise<Resource> {
  return withHost(d, uuid, async () => {
    const host = await d.store.get(uuid);
    if (!host || host.kind !== 'host') throw new TStackError('NOT_FOUND', `no host ${uuid}`);
    runtimeOf(d).known.forget(uuid);
    await setStatus(d, uuid, 'Connecting');
    try {
      const version = controllerVersion(d);
      const pings = opts.redeploy ? {} : await pingAgents(d, host);
      const current = AGENTS.every((a) => pings[a] && pings[a]!.version === version && pings[a]!.protocolVersion === PROTOCOL_VERSION);
      let updated: Resource;
      if (current) {
        hooks.progress?.(30, 'agents answer with this version: connecting');
        await rebind(d, host);
        const patch: Partial<Resource> = { status: 'Connected', statusReason: undefined, bootId: pings.kvmagent!.bootId, lastConnectDate: new Date().toISOString() };
        const agents = { ...(host._agents as HostAgents) };
        for (const a of AGENTS) agents[a] = { ...agents[a], startedAt: pings[a]!.startedAt };
        patch._agents = agents;
        const facts = await d.agentClient.call(kvm.HostFacts, endpoint(host, agents.kvmagent), {}, { timeoutMs: 70_000 });
        Object.assign(patch, { totalCpu: facts.cpu.threads, cpuSockets: facts.cpu.sockets, cpuModelName: facts.cpu.model, totalMemory: facts.memory.total });
        updated = await d.store.update(uuid, patch);
      } else if (isSimulated(host)) {
        throw new TStackError('HOST_UNREACHABLE', `simulated host ${uuid}: its agents do not answer with this version (${version}); nothing to re-deploy`);
      } else {
        const why = AGENTS.map((a) => (pings[a] ? (pings[a]!.version !== version ? `${a} runs ${pings[a]!.version}` : '') : `${a} does not answer`)).filter(Boolean);
        log.info({ host: uuid, why }, 'reconnect: re-deploying over SSH');
        hooks.progress?.(10, `re-deploying: ${why.join(', ') || 'asked to'}`);
        // agents that answer with this version keep running (work in flight survives); the rest restart
        const stored = host._agents as HostAgents | undefined;
        const healthy = AGENTS.filter((a) => stored?.[a] && pings[a] && pings[a]!.version === version && pings[a]!.protocolVersion === PROTOCOL_VERSION);
        let partial: { only: AgentName[]; keep: Partial<Record<AgentName, DeployedAgent>> } | undefined;
        if (healthy.length > 0 && !opts.redeploy) {
          const keep: Partial<Record<AgentName, DeployedAgent>> = {};
          for (const a of healthy) {
            const p = pings[a]!;
            keep[a] = { url: endpoint(host, stored![a]).url, port: stored![a].port, token: stored![a].token, version: p.version, bootId: p.bootId, startedAt: p.startedAt };
          }
          partial = { only: AGENTS.filter((a) => !healthy.includes(a)), keep };
        }
        const r = await deploy(d, host, {}, hooks, false, partial);
        if (partial) await rebind(d, { ...host, _agents: connectedFields(r)._agents });
        updated = await d.store.update(uuid, connectedFields(r));
      }
      await syncVms(d, updated).catch((e: unknown) => log.warn({ host: uuid, err: (e as Error).message }, 'vm sync after reconnect failed'));
      return updated;
    } catch (e) {
      await setStatus(d, uuid, 'Disconnected', `reconnect failed: ${(e as Error).message}`).catch(() => undefined);
      throw e;
    }
  });
}

/** enable / disable / maintain (maintain first empties the host through the evacuator, when one is installed). */
export async function changeHostState(d: HostDeps, uuid: string, event: StateEvent): Promise<Resource> {
  return withHost(d, uuid, async () => {
    const host = await d.store.get(uuid);
    if (!host || host.kind !== 'host') throw new TStackError('NOT_FOUND', `no host ${uuid}`);
    const t = stateTransition(event);
    if (!t.from.includes(host.state as never)) {
      throw new TStackError('CONFLICT', `cannot ${event} host ${uuid}: it is ${host.state} (allowed from ${t.from.join(', ')})`, { state: host.state });
    }
    const evacuate = d.evacuate;
    const before = String(host.state ?? 'Enabled');
    if (event === 'maintain' && evacuate) {
      // PreMaintenance: the allocator gives it no new VMs while its VMs move away
      await d.store.transition(uuid, before, 'PreMaintenance');
      try {
        await evacuate(uuid);
      } catch (e) {
        await d.store.update(uuid, { state: before }).catch(() => undefined);
        throw e;
      }
      host.state = 'PreMaintenance';
    }
    if (event === 'maintain') {
      const vms = await d.store.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: uuid }, { field: 'state', op: '?=', value: ['Running', 'Paused', 'Starting', 'Stopping', 'Rebooting', 'Pausing', 'Resuming', 'Migrating', 'Unknown'] }], limit: 5 });
      if (vms.total > 0) {
        if (host.state === 'PreMaintenance') await d.store.update(uuid, { state: before });
        throw new TStackError('CONFLICT', `host ${uuid} still has ${vms.total} VM(s) on it (${vms.items.map((v) => v.uuid).join(', ')}${vms.total > 5 ? ', …' : ''}); stop or migrate them, then enter maintenance`, { vmCount: vms.total });
      }
    }
    return d.store.transition(uuid, host.state ?? 'Enabled', t.to);
  });
}

/** Delete: only Disconnected hosts or hosts in Maintenance (ZStack's rule). Agents are stopped when reachable. */
export async function deleteHost(d: HostDeps, uuid: string): Promise<Resource> {
  return withHost(d, uuid, async () => {
    const host = await d.store.get(uuid);
    if (!host || host.kind !== 'host') throw new TStackError('NOT_FOUND', `no host ${uuid}`);
    if (host.state !== 'Maintenance' && host.status !== 'Disconnected') {
      throw new TStackError('CONFLICT', `host ${uuid} is ${host.state}/${host.status}: put it in maintenance (or let it be Disconnected) before deleting it`);
    }
    try {
      if (isSimulated(host)) throw new Error('a simulated host: nothing to log in to');
      const key = controllerKey(d.dataDir);
      const target = { host: String(host.managementIp), port: Number(host.sshPort ?? 22), username: String(host.username ?? 'root'), privateKey: key.privateKey, readyTimeoutMs: 10_000 } as Parameters<typeof stopAgents>[0];
      if (typeof host.sshHostKey === 'string') target.expectedHostKey = host.sshHostKey;
      await stopAgents(target, layoutOf(d));
    } catch (e) {
      log.warn({ host: uuid, err: (e as Error).message }, 'could not stop the agents of a deleted host');
    }
    d.agents?.unregister(uuid);
    await d.store.delete(uuid);
    return host;
  });
}
