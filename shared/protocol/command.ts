// An agent command is declared once: path, request schema, response schema, and how it runs.
// Controller and agents import the same declaration; types are derived, never written twice.
import type { Static, TSchema } from './schema.js';

export type AgentKind = 'kvm' | 'storage' | 'vrouter' | 'any';

export interface CommandDef<Req extends TSchema = TSchema, Res extends TSchema = TSchema> {
  /** Stable name, e.g. "vm/start". */
  readonly name: string;
  /** HTTP path on the agent, e.g. "/vm/start". */
  readonly path: string;
  readonly agent: AgentKind;
  readonly request: Req;
  readonly response: Res;
  /** 'sync' commands answer inline; 'async' ones take a callback URL and answer 202. */
  readonly mode: 'sync' | 'async';
  /** The agent aborts the work after this long (TIMEOUT). */
  readonly timeoutMs: number;
  readonly description: string;
}

export type RequestOf<C> = C extends CommandDef<infer Q, TSchema> ? Static<Q> : never;
export type ResponseOf<C> = C extends CommandDef<TSchema, infer R> ? Static<R> : never;

export function defineCommand<Req extends TSchema, Res extends TSchema>(def: {
  name: string;
  agent: AgentKind;
  request: Req;
  response: Res;
  mode?: 'sync' | 'async';
  timeoutMs?: number;
  description?: string;
  path?: string;
}): CommandDef<Req, Res> {
  return {
    name: def.name,
    path: def.path ?? `/${def.name}`,
    agent: def.agent,
    request: def.request,
    response: def.response,
    mode: def.mode ?? 'async',
    timeoutMs: def.timeoutMs ?? 5 * 60_000,
    description: def.description ?? def.name,
  };
}
