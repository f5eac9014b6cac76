// The flow engine of one controller: a registry of flow definitions (so a restarted controller
// finds their code by name), per-resource serial queues, per-host concurrency, journals.
import { TStackError } from '../../shared/errors.js';
import { logger, type Logger } from '../../shared/log.js';
import type { InventoryStore } from '../store/types.js';
import type { ControllerContext } from '../context.js';
import { JOURNALS, resumeJournal, runFlow, type FlowData, type FlowDef, type FlowJournal, type ResumeReport, type RunOptions } from './flow.js';
import { KeyedLimiter, ResourceQueues } from './queues.js';
import { Leases } from './lease.js';

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
  /**
   * Several controllers on one inventory: hold a store lease on each lock key while a flow
   * runs (so controllers serialise on a resource too), keep a heartbeat lease per controller
   * (start()/stop()), and let resume() take over the journals of controllers whose heartbeat
   * expired. All controllers sharing the inventory must enable it. TTL default 15 s; waitMs
   * (how long a flow waits for a busy resource) default 10 min. `perResource: false`: the
   * heartbeat and the takeover only (flows serialise per resource inside each controller).
   */
  leases?: { ttlMs?: number; waitMs?: number; perResource?: boolean };
  /** The controller this engine belongs to (steps read it as ctx.controller). */
  controller?: () => ControllerContext;
}

type Guard = <T>(keys: readonly string[], fn: () => Promise<T>) => Promise<T>;

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
  readonly leases: Leases | undefined;
  private readonly store: InventoryStore;
  private readonly log: Logger;
  private readonly ttlMs: number;
  private readonly waitMs: number;
  private heartbeat: NodeJS.Timeout | undefined;
  private takeover: NodeJS.Timeout | undefined;
  private readonly perResource: boolean;
  readonly controller: (() => ControllerContext) | undefined;
  /** The end of each flow this process runs or resumes, by flow id (localEnd). */
  private readonly local = new Map<string, Promise<void>>();
  /** Settles once resume() has tracked the journals it resumes. */
  private listing: Promise<void> = Promise.resolve();

  constructor(opts: EngineOptions) {
    this.store = opts.store;
    this.controller = opts.controller;
    this.registry = opts.registry ?? new FlowRegistry();
    this.controllerId = opts.controllerId ?? 'default';
    if (this.controllerId.includes('#')) throw new Error(`controllerId must not contain '#': ${this.controllerId}`);
    this.hosts = new KeyedLimiter(opts.hostConcurrency ?? 4);
    this.log = opts.log ?? logger('flow-engine');
    this.leases = opts.leases ? new Leases(opts.store) : undefined;
    this.ttlMs = opts.leases?.ttlMs ?? 15_000;
    this.waitMs = opts.leases?.waitMs ?? 600_000;
    this.perResource = opts.leases?.perResource ?? true;
  }

  /** Local queue, then (with leases) the store leases of the keys, then fn. */
  private readonly guard: Guard = (keys, fn) =>
    this.queues.run(keys, () => {
      if (!this.leases || !this.perResource || keys.length === 0) return fn();
      return this.leases.withLeases(
        keys.map((k) => `resource:${k}`),
        this.controllerId,
        { ttlMs: this.ttlMs, waitMs: this.waitMs, onLost: (k) => this.log.error({ lease: k }, 'lost the lease of a resource while a flow runs on it (store unreachable or clock skew?)') },
        fn,
      );
    });

  /** With leases: take this controller's heartbeat lease (waits while another controller is taking over our journals) and keep renewing it. */
  async start(): Promise<void> {
    if (!this.leases || this.heartbeat) return;
    const key = `controller:${this.controllerId}`;
    await this.leases.acquire(key, this.controllerId, this.ttlMs, this.waitMs);
    this.heartbeat = setInterval(() => {
      void this.leases!.tryAcquire(key, this.controllerId, this.ttlMs).then(
        (ok) => {
          if (!ok) this.log.error('lost the controller heartbeat lease: another controller may take over our flows');
        },
        (e: unknown) => this.log.error({ err: String(e) }, 'heartbeat lease renewal failed'),
      );
    }, Math.max(10, Math.floor(this.ttlMs / 3)));
    this.heartbeat.unref();
  }

  /**
   * With leases: every `everyMs` (default a third of the TTL), take over and resume the flows
   * of controllers whose heartbeat expired, so a controller that dies leaves nothing for a
   * restart to finish: its flows go on (or roll back) on a live one within about the TTL.
   */
  startTakeover(everyMs = Math.max(1000, Math.floor(this.ttlMs / 3))): void {
    if (!this.leases || this.takeover) return;
    let busy = false;
    this.takeover = setInterval(() => {
      if (busy) return;
      busy = true;
      void this.adoptDead()
        .catch((e: unknown) => this.log.warn({ err: String(e) }, 'taking over the flows of a dead controller failed'))
        .finally(() => (busy = false));
    }, everyMs);
    this.takeover.unref();
  }

  /** Take over the journals of controllers whose heartbeat expired and resume those (only). */
  async adoptDead(): Promise<ResumeReport[]> {
    if (!this.leases) return [];
    const taken = await this.takeOverDeadControllers();
    if (taken.size === 0) return [];
    const reports = await resumeFlows(this.store, this.registry, { controllerId: this.controllerId, only: taken, guard: this.guard, hosts: this.hosts, log: this.log, track: this.track, ...(this.controller ? { controller: this.controller } : {}) });
    for (const r of reports) this.log.warn({ flowId: r.id, flow: r.flow, action: r.action }, 'finished the flow of a dead controller');
    return reports;
  }

  /** Stop renewing the heartbeat without giving it back, as a crashed controller would (tests; emergency stop). */
  halt(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.takeover) clearInterval(this.takeover);
    this.heartbeat = this.takeover = undefined;
  }

  /** Stop the heartbeat and give the lease back (a clean shutdown: nobody takes over). */
  async stop(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.takeover) clearInterval(this.takeover);
    this.heartbeat = this.takeover = undefined;
    if (this.leases) await this.leases.release(`controller:${this.controllerId}`, this.controllerId);
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
    if (this.controller) runOpts.controller = this.controller;
    return this.track(opts.id, this.guard(opts.lockKeys ?? [], () => this.hosts.run(opts.hostUuid, () => runFlow(this.store, def, data, runOpts))));
  }

  private readonly track = <T>(id: string | undefined, run: Promise<T>): Promise<T> => {
    if (id === undefined) return run;
    const end = run.then(
      () => undefined,
      () => undefined,
    );
    this.local.set(id, end);
    void end.then(() => {
      if (this.local.get(id) === end) this.local.delete(id);
    });
    return run;
  };

  /**
   * Wait for the end of flow `id` if this process runs or resumes it (true), so a job resumer
   * of this process need not poll the journal; false when it runs elsewhere (or not at all).
   */
  async localEnd(id: string): Promise<boolean> {
    await this.listing;
    const end = this.local.get(id);
    if (!end) return false;
    await end;
    return true;
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
    let listed!: () => void;
    this.listing = new Promise<void>((r) => (listed = r));
    try {
      if (this.leases) await this.takeOverDeadControllers();
      return await resumeFlows(this.store, this.registry, { controllerId: this.controllerId, guard: this.guard, hosts: this.hosts, log: this.log, track: this.track, onListed: listed, ...(this.controller ? { controller: this.controller } : {}) });
    } finally {
      listed();
    }
  }

  /**
   * With leases: journals of a controller whose heartbeat lease expired become ours. Holding
   * that controller's heartbeat lease while reassigning makes the takeover exclusive (one
   * taker; the dead controller, if it comes back, waits in start() and then finds nothing).
   */
  private async takeOverDeadControllers(): Promise<Set<string>> {
    const taken = new Set<string>();
    const byController = new Map<string, FlowJournal[]>();
    for (const { doc } of await this.store.listDocs<FlowJournal>(JOURNALS)) {
      if (doc.controllerId === this.controllerId) continue;
      byController.set(doc.controllerId, [...(byController.get(doc.controllerId) ?? []), doc]);
    }
    for (const [dead, journals] of byController) {
      const key = `controller:${dead}`;
      if (!(await this.leases!.tryAcquire(key, this.controllerId, this.ttlMs))) continue; // alive
      try {
        for (const j of journals) {
          const cur = await this.store.getDoc<FlowJournal>(JOURNALS, j.id);
          if (!cur || cur.controllerId !== dead) continue;
          await this.store.putDoc(JOURNALS, j.id, { ...cur, controllerId: this.controllerId, takenOverFrom: dead });
          taken.add(j.id);
          this.log.warn({ flowId: j.id, flow: j.flow, from: dead }, 'took over the unfinished flow of a controller whose heartbeat expired');
        }
      } finally {
        await this.leases!.release(key, this.controllerId);
      }
    }
    return taken;
  }
}

/**
 * Resume unfinished flows found in the store. With controllerId, only that controller's
 * journals are touched. Flows run concurrently, each under its lock keys and host limit.
 */
export async function resumeFlows(
  store: InventoryStore,
  registry: FlowRegistry,
  opts: {
    controllerId?: string;
    only?: ReadonlySet<string>;
    queues?: ResourceQueues;
    guard?: Guard;
    hosts?: KeyedLimiter;
    log?: Logger;
    controller?: () => ControllerContext;
    /** Told of each resume as it begins (FlowEngine.localEnd). */
    track?: <T>(id: string, run: Promise<T>) => Promise<T>;
    /** Called once every resume has begun. */
    onListed?: () => void;
  } = {},
): Promise<ResumeReport[]> {
  const log = opts.log ?? logger('flow-engine');
  const journals = (await store.listDocs<FlowJournal>(JOURNALS)).map((d) => d.doc).filter((j) => !opts.only || opts.only.has(j.id));
  const queues = opts.queues ?? new ResourceQueues();
  const guard: Guard = opts.guard ?? ((keys, fn) => queues.run(keys, fn));
  const hosts = opts.hosts ?? new KeyedLimiter(4);
  const one = async (j: FlowJournal): Promise<ResumeReport> => {
    if (opts.controllerId !== undefined && j.controllerId !== opts.controllerId) return { id: j.id, flow: j.flow, action: 'skipped' };
    const def = registry.get(j.flow);
    if (!def) {
      log.error({ flowId: j.id, flow: j.flow }, 'unfinished flow of an unknown kind left in place');
      return { id: j.id, flow: j.flow, action: 'unknown-flow' };
    }
    let rep: ResumeReport;
    try {
      rep = await guard(j.lockKeys ?? [], () => hosts.run(j.hostUuid, () => resumeJournal(store, def, j, log.child({ flowId: j.id, flow: j.flow }), opts.controller)));
    } catch (e) {
      rep = { id: j.id, flow: j.flow, action: 'error', error: TStackError.from(e).toJSON() };
      log.error({ flowId: j.id, flow: j.flow, err: rep.error }, 'could not resume an unfinished flow; it stays for the next start');
      return rep;
    }
    log.info({ flowId: j.id, flow: j.flow, action: rep.action }, 'resumed unfinished flow');
    return rep;
  };
  const runs = journals.map((j) => (opts.track ? opts.track(j.id, one(j)) : one(j)));
  opts.onListed?.();
  return Promise.all(runs);
}

/**
 * Wait while flow `id`'s journal is there (a controller is finishing it): until its end when
 * this process runs it, else polling, from 25 ms up to every `pollMs` (a job taken over at start
 * is often waiting for a flow this process resumes a moment later). A journal whose rollback
 * failed (kept and retried) throws `failed(journal)`. True when a journal was seen.
 */
export async function journalGone(c: { store: InventoryStore; engine: FlowEngine }, id: string, pollMs: number, failed: (j: FlowJournal) => TStackError): Promise<boolean> {
  let seen = false;
  for (let i = 0; ; i++) {
    const j = await c.store.getDoc<FlowJournal>(JOURNALS, id);
    if (!j) return seen;
    seen = true;
    if (j.state === 'rollback-failed') throw failed(j);
    if (!(await c.engine.localEnd(id))) await new Promise((r) => setTimeout(r, Math.min(pollMs, 25 * 2 ** Math.min(i, 10))));
  }
}
