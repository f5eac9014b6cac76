// Hosts of tstack-simulator (POST /v1/hosts with `ssh: false`): their agents already run, so
// adding one skips the SSH deploy: the controller pings the agents at managementIp:agentPort
// with the given token (all three agents answer on that one port), requires this controller's
// agent version, connects them (event token, controller URL), reads the facts, and the host is
// Connected. From then on the tracker and every flow treat it like any host; reconnect never
// re-deploys it (there is nothing to deploy to) and delete does not log in to stop agents.
// Only admins add hosts (the kind is adminOnly); the fields are validated by the host schema.
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/index.js';
import * as kvm from '../../shared/protocol/kvm.js';
import type { Resource } from '../store/types.js';
import { AGENTS } from './render.js';
import { controllerVersion, endpoint, pingAgents, rebind, type HostAgents, type HostDeps, type OpHooks } from './service.js';

const log = logger('host');

export const isSimulated = (host: Resource): boolean => host.simulated === true;

/** Check the body of a simulated-host add; returns the agents record to store. */
export function simulatedAgents(body: Record<string, unknown>, secrets: Record<string, unknown>): HostAgents {
  for (const f of ['password', 'sshPrivateKey'] as const) {
    if (body[f] !== undefined || secrets[f] !== undefined) throw new TStackError('INVALID_ARGUMENT', `${f}: not with ssh: false (a simulated host is not logged in to)`, { field: f });
  }
  const token = secrets.agentToken;
  if (typeof token !== 'string') throw new TStackError('INVALID_ARGUMENT', 'agentToken: required with ssh: false (the token of the simulated host, from tstack-simulator)', { field: 'agentToken' });
  const port = Number(body.agentPort ?? 7070);
  return Object.fromEntries(AGENTS.map((a) => [a, { port, token }])) as HostAgents;
}

/** Connect a simulated host created Connecting with its `_agents`; returns the Connected host. */
export async function connectSimulatedHost(d: HostDeps, host: Resource, hooks: OpHooks = {}): Promise<Resource> {
  const agents = host._agents as HostAgents;
  const pings = await pingAgents(d, host, 10_000);
  const silent = AGENTS.filter((a) => !pings[a]);
  if (silent.length) throw new TStackError('HOST_UNREACHABLE', `simulated host ${String(host.managementIp)}:${agents.kvmagent.port} does not answer (or refuses the token) for ${silent.join(', ')}`, { field: 'managementIp' });
  const version = controllerVersion(d);
  const k = pings.kvmagent!;
  if (k.version !== version || k.protocolVersion !== PROTOCOL_VERSION) {
    throw new TStackError('CONFLICT', `simulated host ${String(host.managementIp)} runs ${k.version} (protocol ${k.protocolVersion}); this controller needs ${version} (protocol ${PROTOCOL_VERSION})`, { field: 'managementIp' });
  }
  hooks.progress?.(40, 'agents answer: connecting');
  await rebind(d, host);
  const facts = await d.agentClient.call(kvm.HostFacts, endpoint(host, agents.kvmagent), {}, { timeoutMs: 70_000 });
  const withStart = Object.fromEntries(AGENTS.map((a) => [a, { ...agents[a], startedAt: pings[a]!.startedAt }])) as HostAgents;
  log.info({ host: host.uuid, ip: host.managementIp }, 'simulated host added');
  return d.store.update(host.uuid, {
    status: 'Connected',
    statusReason: undefined,
    virtType: 'qemu',
    agentVersion: k.version,
    bootId: k.bootId,
    lastConnectDate: new Date().toISOString(),
    _agents: withStart,
    totalCpu: facts.cpu.threads,
    cpuSockets: facts.cpu.sockets,
    cpuModelName: facts.cpu.model,
    totalMemory: facts.memory.total,
    hostname: facts.hostname,
    libvirtVersion: facts.hypervisor.libvirtVersion,
    qemuVersion: facts.hypervisor.qemuVersion,
  });
}
