// Shared plumbing of the cloud modules (storage, network, compute): how to reach a host's agents
// and the test-only fault injection. Handlers get the controller's context as their OpContext,
// flow steps as ctx.controller.
import { TStackError } from '../../shared/errors.js';
import { faultPause } from '../../shared/fault-pause.js';
import type { CommandDef, RequestOf, ResponseOf } from '../../shared/protocol/command.js';
import type { AgentEndpoint, CallOptions } from '../agent-client/client.js';
import type { InventoryStore, Resource } from '../store/types.js';
import type { ControllerContext } from '../context.js';
import type { HostAgents } from '../host/service.js';
import type { AgentName } from '../host/render.js';

/** What the cloud modules' code needs: the controller's context (controller/context.ts). */
export type CloudDeps = ControllerContext;

export async function mustGet(store: InventoryStore, uuid: string, kind: string, field?: string): Promise<Resource> {
  const r = await store.get(uuid);
  if (!r || r.kind !== kind) throw new TStackError('NOT_FOUND', `no ${kind} with uuid ${uuid}`, field ? { field, uuid } : { uuid });
  return r;
}

/** URL + token of one agent of a host (from the host record the host module keeps). */
export function agentOf(host: Resource, agent: AgentName): { url: string; token: string } {
  const agents = host._agents as HostAgents | undefined;
  const rec = agents?.[agent];
  if (!rec) throw new TStackError('HOST_NOT_CONNECTED', `host ${host.name} (${host.uuid}) has no ${agent} registered; reconnect the host`, { hostUuid: host.uuid });
  return { url: `http://${String(host.managementIp)}:${rec.port}`, token: rec.token };
}

/** The agent's endpoint, re-read from the inventory if the agent's token rotates mid-call. */
export function refreshable(d: CloudDeps, host: Resource, agent: AgentName): AgentEndpoint {
  return { ...agentOf(host, agent), refresh: async () => agentOf(await mustGet(d.store, host.uuid, 'host'), agent) };
}

/** Call an agent command on a host (looked up fresh: tokens rotate on reconnect). */
/** `o.taskId`: a stable id (FlowContext.taskId) makes a command sent again after a crash join its first run. */
export async function callHost<C extends CommandDef>(d: CloudDeps, hostUuid: string, agent: AgentName, cmd: C, req: RequestOf<C>, o?: CallOptions): Promise<ResponseOf<C>> {
  return callOn(d, await mustGet(d.store, hostUuid, 'host'), agent, cmd, req, o);
}

/**
 * callHost with a host record the caller holds (a flow's, read earlier by it): a token rotated
 * or an agent moved since is met by the agent client, which re-reads the record (refreshable)
 * and sends the request again when the agent refused it or was never reached.
 */
export function callOn<C extends CommandDef>(d: CloudDeps, host: Resource, agent: AgentName, cmd: C, req: RequestOf<C>, o?: CallOptions): Promise<ResponseOf<C>> {
  return d.agentClient.call(cmd, refreshable(d, host, agent), req, o);
}

/**
 * Test-only fault injection: TSTACK_FAULT_INJECT="vm-create:root-volume,vm-create:dhcp" makes
 * the named flow steps fail right after they did their work (so their rollback must undo it).
 * Read at every check, so a test may set and clear it at run time. Never set it in production.
 */
export function injectFault(flow: string, step: string): void {
  // TSTACK_FAULT_PAUSE (shared/fault-pause.ts) freezes the process at the same points instead
  faultPause(`${flow}:${step}`);
  const spec = process.env.TSTACK_FAULT_INJECT;
  if (!spec) return;
  const names = spec.split(',').map((s) => s.trim());
  if (names.includes(`${flow}:${step}`)) throw new TStackError('INJECTED_FAULT', `fault injected at ${flow}:${step} (TSTACK_FAULT_INJECT)`, { flow, step });
}

/** Hosts of a cluster that are Connected. */
export async function connectedHosts(store: InventoryStore, clusterUuid: string): Promise<Resource[]> {
  return (await store.byParent('host', clusterUuid)).filter((h) => h.status === 'Connected');
}

export const tagValue = (r: Resource, key: string): string | undefined => {
  const t = (r.tags ?? []).find((x) => x.startsWith(`${key}::`));
  return t ? t.slice(key.length + 2) : undefined;
};
