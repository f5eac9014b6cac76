// The agent protocol: versions, capabilities, and every command declared once.
// 2: flat/apply sends each NIC once (nics) instead of parallel dhcp/dns/metadata lists. A host
// whose agents answer another version is re-deployed on reconnect.
export const PROTOCOL_VERSION = 2;

export * from './command.js';
export * from './schema.js';
export * as common from './common.js';

/** Header names of the agent protocol. */
export const Headers = {
  taskId: 'x-task-id',
  callbackUrl: 'x-callback-url',
  /**
   * With a callback URL: the agent may hold the answer this long (ms, at most 1,000) and, if
   * the task finished by then, answer inline (200 with the result, or the error) instead of 202
   * + callback. A fast task then costs one exchange instead of two (and no polls).
   */
  inlineWaitMs: 'x-inline-wait-ms',
  /**
   * Set by the agent on every command answer that passed its token check: what a ping tells
   * (JSON of version, startedAt, bootId, hostUuid), so the host tracker need not ping an agent
   * that answered real requests since its last round (issue 19: pings were a third of the agent
   * requests per VM created).
   */
  agentInfo: 'x-agent-info',
  /** Set by the agent on callbacks so the controller can check the caller. */
  agentToken: 'authorization',
} as const;

/** The X-Agent-Info header's content: the fields of a ping answer the host tracker looks at. */
export interface AgentLiveness {
  version: string;
  startedAt: string;
  bootId: string;
  hostUuid?: string;
}

/** What an agent POSTs to a callback URL or returns from GET /task/<id>. */
export interface TaskResult {
  taskId: string;
  command: string;
  state: 'running' | 'succeeded' | 'failed';
  success?: boolean;
  result?: unknown;
  error?: { code: string; message: string; details?: Record<string, unknown> };
  startedAt: string;
  finishedAt?: string;
}

export * as kvm from './kvm.js';
export * as storage from './storage.js';
export * as vrouter from './vrouter.js';
export * as vpc from './vpc.js';
export * as lb from './lb.js';
export * as baremetal from './baremetal.js';
export * as ipsec from './ipsec.js';
