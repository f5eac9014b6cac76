// What the REST API serves: collections (CRUD) and actions. Generic CRUD covers simple
// resources; code that owns a resource's behaviour (hosts, VMs, images…) replaces create,
// update or delete with its own handler (optionally long: it then runs as a job) and
// registers actions:
//
//   apiRegistry.registerAction('vm-instances', 'start', { schema: Obj({}), long: true, run: async (vm, body, ctx) => … });
//   apiRegistry.setCreate('vm-instances', { long: true, run: async (body, ctx) => … });
//
// The same schemas validate requests and produce /v1/openapi.json.
import type { TObject } from '@sinclair/typebox';
import type { InventoryStore, Resource } from '../store/types.js';
import type { Principal } from '../auth/accounts.js';
import type { JobContext, JobManager } from '../jobs/jobs.js';
import type { EventBus } from '../events/bus.js';
import type { AgentRegistry } from '../events/agent-events.js';

/** Everything an operation handler gets. */
export interface OpContext {
  principal: Principal;
  /** The inventory (writes publish resource events). */
  store: InventoryStore;
  jobs: JobManager;
  bus: EventBus;
  agents: AgentRegistry;
  registry: ApiRegistry;
  /** Set inside long operations (job progress). */
  job?: JobContext;
  /** The admin account uuid (owner of infrastructure). */
  adminAccountUuid: string;
}

export interface Operation<A extends unknown[], R> {
  /** Long: runs as a job (202 + /v1/jobs/<uuid>; ?wait=true answers when done). */
  long?: boolean;
  run: (...args: [...A, OpContext]) => Promise<R>;
}

export type CreateOp = Operation<[body: Record<string, unknown>], Resource>;
export type UpdateOp = Operation<[resource: Resource, body: Record<string, unknown>], Resource>;
/** Result: the deleted resource (or anything; shown as the job result for long deletes). */
export type DeleteOp = Operation<[resource: Resource, query: Record<string, string>], unknown>;

export type Verb = 'create' | 'update' | 'delete';

export interface CollectionSpec {
  /** REST collection, kebab-case plural: 'zones', 'primary-storage'. */
  collection: string;
  /** Store kind, singular: 'zone'. */
  kind: string;
  description?: string;
  createSchema: TObject;
  updateSchema: TObject;
  /** Schema of the resource as shown (documentation, query value types). */
  viewSchema?: TObject;
  /** The create field naming the parent (stored as parentUuid too), e.g. 'zoneUuid'. */
  parentField?: string;
  /** Create fields referencing other resources, field → kind; derived from *Uuid(s) names when absent. */
  refs?: Record<string, string>;
  /** Initial `state` of resources created by the generic create. */
  initialState?: string;
  /** Verbs only the admin may use (true = all writes). Reads are always owner-filtered. */
  adminOnly?: boolean | Verb[];
  /** No POST (resources made by other operations, e.g. VM NICs). */
  noCreate?: boolean;
  /** Fields never shown (in addition to every field starting with '_'). */
  hiddenFields?: string[];
  create?: CreateOp;
  update?: UpdateOp;
  remove?: DeleteOp;
}

export interface ActionSpec {
  name: string;
  description?: string;
  /** Schema of the action's parameters (the value under the action's key). */
  schema: TObject;
  long?: boolean;
  adminOnly?: boolean;
  run: (resource: Resource, params: Record<string, unknown>, ctx: OpContext) => Promise<unknown>;
}

export class ApiRegistry {
  private cols = new Map<string, CollectionSpec>();
  private kinds = new Map<string, CollectionSpec>();
  private acts = new Map<string, Map<string, ActionSpec>>();

  /** Add or replace a collection (handlers already set on it are kept unless the spec has its own). */
  registerCollection(spec: CollectionSpec): void {
    const prev = this.cols.get(spec.collection);
    const merged: CollectionSpec = { ...spec };
    if (prev) {
      merged.create ??= prev.create;
      merged.update ??= prev.update;
      merged.remove ??= prev.remove;
    }
    for (const k of ['create', 'update', 'remove'] as const) if (merged[k] === undefined) delete merged[k];
    this.cols.set(spec.collection, merged);
    this.kinds.set(spec.kind, merged);
  }

  collections(): CollectionSpec[] {
    return [...this.cols.values()];
  }

  collection(name: string): CollectionSpec | undefined {
    return this.cols.get(name);
  }

  byKind(kind: string): CollectionSpec | undefined {
    return this.kinds.get(kind);
  }

  private need(collection: string): CollectionSpec {
    const c = this.cols.get(collection);
    if (!c) throw new Error(`api registry: no collection '${collection}' (register it first)`);
    return c;
  }

  setCreate(collection: string, op: CreateOp): void {
    this.need(collection).create = op;
  }

  setUpdate(collection: string, op: UpdateOp): void {
    this.need(collection).update = op;
  }

  setDelete(collection: string, op: DeleteOp): void {
    this.need(collection).remove = op;
  }

  registerAction(collection: string, name: string, spec: Omit<ActionSpec, 'name'>): void {
    if (!/^[a-z][A-Za-z0-9]*$/.test(name)) throw new Error(`action name '${name}' must be camelCase`);
    let m = this.acts.get(collection);
    if (!m) this.acts.set(collection, (m = new Map()));
    if (m.has(name)) throw new Error(`action ${collection}.${name} registered twice`);
    m.set(name, { ...spec, name });
  }

  actions(collection: string): ActionSpec[] {
    return [...(this.acts.get(collection)?.values() ?? [])];
  }

  action(collection: string, name: string): ActionSpec | undefined {
    return this.acts.get(collection)?.get(name);
  }

  isAdminOnly(spec: CollectionSpec, verb: Verb): boolean {
    return spec.adminOnly === true || (Array.isArray(spec.adminOnly) && spec.adminOnly.includes(verb));
  }
}

/** The process-wide registry that resource modules register into at import time. */
export const apiRegistry = new ApiRegistry();
