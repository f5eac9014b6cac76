// The flow engine of one controller: a registry of flow definitions (so a restarted controller
// finds their code by name), per-resource serial queues, per-host concurrency, journals.
import { TStackError } from '../../shared/errors.js';
import { logger, type Logger } from '../../shared/log.js';
import type { InventoryStore } from '../store/types.js';
import { JOURNALS, resumeJournal, runFlow, type FlowData, type FlowDef, type FlowJournal, type ResumeReport, type RunOptions } from './flow.js';
import { KeyedLimiter, ResourceQueues } from './queues.js';

export class FlowRegistry {
  private defs = new Map<string, FlowDef<FlowData>>();

  register<D extends FlowData>(def: FlowDef<D>): FlowDef<D> {
    if (this.defs.has(def.name) && this.defs.get(def.name) !== (def as unknown)) throw new Error(`flow '${def.name}' is already registered`);
    if (def.steps.length === 0) throw new Error(`flow '${def.name}' has no steps`);
    const names = def.steps.map((s) => s.name);
    if (new Set(names).size !== names.length) throw new Error(`flow '${def.name}' has duplicate step names`);
    this.defs.set(def.name, def as unknown as FlowDef<FlowData>);
    return def;
  }

  get(name: string): FlowDef<FlowData> | undefined {
    return this.defs.get(name);
  }

  names(): string[] {
    return [...this.defs.keys()];
  }
}

export interface EngineOptions {
  store: InventoryStore;
  registry?: FlowRegistry;
  /**
   * This controller's id, written into journals. resume() only takes over journals with this
   * id (several controllers on one Redis inventory must not resume each other's live flows);
   * give a stable id per controller (e.g. from its data dir).
   */
  controllerId?: string;
  /** Concurrent flows per host (default 4). */
  hostConcurrency?: number;
  log?: Logger;
}

export interface EngineRunOptions extends Omit<RunOptions, 'controllerId' | 'log'> {
  /** Resources the flow works on: one flow at a time per key. */
  lockKeys?: string[];
  /** The host the flow works on: bounded concurrency per host. */
  hostUuid?: string;
}

export class FlowEngine {
  readonly registry: FlowRegistry;
  readonly queues = new ResourceQueues();
  readonly hosts: KeyedLimiter;
  readonly controllerId: string;
  private readonly store: InventoryStore;
  private readonly log: Logger;

  constructor(opts: EngineOptions) {
    this.store = opts.store;
    this.registry = opts.registry ?? new FlowRegistry();
    this.controllerId = opts.controllerId ?? 'default';
    this.hosts = new KeyedLimiter(opts.hostConcurrency ?? 4);
    this.log = opts.log ?? logger('flow-engine');
  }

  register<D extends FlowData>(def: FlowDef<D>): FlowDef<D> {
    return this.registry.register(def);
  }

  /** Run a registered flow (by name) or a definition (registered on the fly). */
  async run<D extends FlowData>(flow: string | FlowDef<D>, data: D, opts: EngineRunOptions = {}): Promise<D> {
    const def = typeof flow === 'string' ? (this.registry.get(flow) as unknown as FlowDef<D> | undefined) : flow;
    if (!def) throw new TStackError('INTERNAL', `unknown flow '${String(flow)}'`);
    // a definition passed directly is registered on first use (resume() finds it by name);
    // flow code must keep its state in ctx.data, not in closures, since resume uses that first one
    if (typeof flow !== 'string' && !this.registry.get(def.name)) this.registry.register(def);
    const runOpts: RunOptions = { ...opts, controllerId: this.controllerId };
    return this.queues.run(opts.lockKeys ?? [], () => this.hosts.run(opts.hostUuid, () => runFlow(this.store, def, data, runOpts)));
  }

  /** Unfinished journals of this controller (running, rolling back, or with a failed rollback). */
  async unfinished(): Promise<FlowJournal[]> {
    return (await this.store.listDocs<FlowJournal>(JOURNALS)).map((d) => d.doc).filter((j) => j.controllerId === this.controllerId);
  }

  /**
   * At start: finish or roll back every unfinished flow of this controller, under the same
   * resource queues and host limits as a live run. Flows whose code is not registered are
   * left in place and reported (a newer/older controller may know them).
   */
  async resume(): Promise<ResumeReport[]> {
    return resumeFlows(this.store, this.registry, { controllerId: this.controllerId, queues: this.queues, hosts: this.hosts, log: this.log });
  }
}

/**
 * Resume unfinished flows found in the store. With controllerId, only that controller's
 * journals are touched. Flows run concurrently, each under its lock keys and host limit.
 */
export async function resumeFlows(
  store: InventoryStore,
  registry: FlowRegistry,
  opts: { controllerId?: string; queues?: ResourceQueues; hosts?: KeyedLimiter; log?: Logger } = {},
): Promise<ResumeReport[]> {
  const log = opts.log ?? logger('flow-engine');
  const journals = (await store.listDocs<FlowJournal>(JOURNALS)).map((d) => d.doc);
  const queues = opts.queues ?? new ResourceQueues();
  const hosts = opts.hosts ?? new KeyedLimiter(4);
  return Promise.all(
    journals.map(async (j): Promise<ResumeReport> => {
      if (opts.controllerId !== undefined && j.controllerId !== opts.controllerId) return { id: j.id, flow: j.flow, action: 'skipped' };
      const def = registry.get(j.flow);
      if (!def) {
        log.error({ flowId: j.id, flow: j.flow }, 'unfinished flow of an unknown kind left in place');
        return { id: j.id, flow: j.flow, action: 'unknown-flow' };
      }
      const rep = await queues.run(j.lockKeys ?? [], () => hosts.run(j.hostUuid, () => resumeJournal(store, def, j, log.child({ flowId: j.id, flow: j.flow }))));
      log.info({ flowId: j.id, flow: j.flow, action: rep.action }, 'resumed unfinished flow');
      return rep;
    }),
  );
}
