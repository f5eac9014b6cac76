// What the REST API serves: collections (CRUD) and actions. Generic CRUD covers simple
// resources; code that owns a resource's behaviour (hosts, VMs, images…) replaces create,
// update or delete with its own handler (optionally long: it then runs as a job) and
// registers actions:
//
//   ctx.registry.registerAction('vm-instances', 'start', { run: async (vm, params, oc) => … });  // schema/long from the model
//   ctx.registry.setCreate('vm-instances', { long: true, run: async (body, oc) => … });
// Each controller has its own registry (ControllerContext.registry, filled by its modules'
// install()); handlers read the controller's services from their OpContext `oc`, never from
// module-level state. Registration order does not matter (handlers may be set before the
// model's collections are).
//
// The same schemas validate requests and produce /v1/openapi.json. Only what has a handler is
// advertised (OpenAPI, CLI): an action, async create or async delete the model declares but
// nobody handles yet is absent, and requests for it are refused like unknown ones (never 501).
// `unhandled()` lists them; test/unit/controller/advertised.test.ts pins that list.
import type { TObject } from '@sinclair/typebox';
import type { Resource } from '../store/types.js';
import type { Principal } from '../auth/accounts.js';
import type { JobContext } from '../jobs/jobs.js';
import type { ControllerContext } from '../context.js';
import type { KindDef, PreparedCreate } from '../model/index.js';
import type { ShareRule } from './collections.js';

/** Everything an operation handler gets: the serving controller's context, who asks, and the job. */
export interface OpContext extends ControllerContext {
  principal: Principal;
  /** Set inside long operations (job progress). */
  job?: JobContext;
  /** The uuid a resumable create gives its resource (named in its job from the start). */
  newUuid?: string;
  /**
   * The API's check of this create's body (prepareCreate with what the caller may see as
   * canUse, the uuid newUuid): a create that prepared the body again takes it (issue 19), held
   * to its own rules with recheckUse. Absent when resumed by another controller.
   */
  prepared?: PreparedCreate;
}

export interface Operation<A extends unknown[], R> {
  /** Long: runs as a job (202 + /v1/jobs/<uuid>; ?wait=true answers when done). */
  long?: boolean;
  run: (...args: [...A, OpContext]) => Promise<R>;
}

/**
 * `resumable`: the job keeps the request (body, principal, the new uuid), so a controller that
 * takes the job over from a dead one can see it through (see api/resume.ts).
 */
export type CreateOp = Operation<[body: Record<string, unknown>], Resource> & { resumable?: boolean };
export type UpdateOp = Operation<[resource: Resource, body: Record<string, unknown>], Resource>;
/**
 * Result: the deleted resource (or anything; shown as the job result for long deletes).
 * `deletesDependents`: the handler deletes what the cascade rules would block on (an account's
 * resources), so the API skips its early refusal. `resumable` (long): as an action's (ActionSpec),
 * the job keeping the query as its parameters.
 */
export type DeleteOp = Operation<[resource: Resource, query: Record<string, string>], unknown> & { deletesDependents?: boolean; resumable?: boolean };

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
  /** Admin-owned resources of this collection are readable and referenceable by the accounts they are shared with (collections.ts SHARE_RULES). */
  shared?: ShareRule;
  /** 'async': create needs a registered handler (a workflow); without one it is not offered. */
  createMode?: 'sync' | 'async' | 'none';
  /** 'async': delete needs a registered handler; without one it is not offered. 'none': never deleted. */
  deleteMode?: 'sync' | 'async' | 'none';
  /** The model's definition, when generated from it. */
  model?: KindDef;
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
  /**
   * (long) The job keeps the parameters and the principal, and the action's flow runs under the
   * job's uuid with its outcome kept, so a controller that takes the job over from a dead one
   * sees it through (api/resume.ts actionJobResumer, registered for the job type).
   */
  resumable?: boolean;
  /**
   * (resumable) The action makes a resource (volumes.createSnapshot): its uuid is chosen before
   * the job starts (OpContext.newUuid) and kept in the job, which a resumed job answers with.
   */
  newUuid?: boolean;
  adminOnly?: boolean;
  /** Absent: declared by the model but nobody handles it yet (not advertised, refused). */
  run?: (resource: Resource, params: Record<string, unknown>, ctx: OpContext) => Promise<unknown>;
}

type Handlers = { create?: CreateOp; update?: UpdateOp; remove?: DeleteOp };

/** OpenAPI 3.1 `paths` entries and `components.schemas` a module adds to /v1/openapi.json. */
export interface RouteDocs {
  paths: Record<string, unknown>;
  schemas?: Record<string, unknown>;
}

export class ApiRegistry {
  private cols = new Map<string, CollectionSpec>();
  private kinds = new Map<string, string>();
  private handlers = new Map<string, Handlers>();
  private declared = new Map<string, Map<string, ActionSpec>>();
  private acts = new Map<string, Map<string, Partial<ActionSpec> & { name: string }>>();
  private docs = new Map<string, RouteDocs>();
  /** collection() answers (a spec merged with its handlers), until a spec or handler changes: asked twice per API request. */
  private merged = new Map<string, CollectionSpec>();

  /**
   * OpenAPI paths (and component schemas) of routes a module serves itself, outside the
   * collections; `id` names the module (registering again replaces: controllers in one process
   * share the default registry).
   */
  documentRoutes(id: string, d: RouteDocs): void {
    this.docs.set(id, d);
  }

  routeDocs(): RouteDocs[] {
    return [...this.docs.values()];
  }

  /** Add or replace a collection's description. Handlers set with setCreate/… always win. */
  registerCollection(spec: CollectionSpec): void {
    this.cols.set(spec.collection, spec);
    this.kinds.set(spec.kind, spec.collection);
    this.merged.clear();
  }

  collections(): CollectionSpec[] {
    return [...this.cols.keys()].map((c) => this.collection(c)!);
  }

  /** The collection with the handlers registered for it merged in. */
  collection(name: string): CollectionSpec | undefined {
    const known = this.merged.get(name);
    if (known) return known;
    const base = this.cols.get(name);
    if (!base) return undefined;
    const h = this.handlers.get(name);
    if (!h) return base;
    const out: CollectionSpec = { ...base };
    if (h.create) out.create = h.create;
    if (h.update) out.update = h.update;
    if (h.remove) out.remove = h.remove;
    this.merged.set(name, out);
    return out;
  }

  byKind(kind: string): CollectionSpec | undefined {
    const c = this.kinds.get(kind);
    return c ? this.collection(c) : undefined;
  }

  private h(collection: string): Handlers {
    this.merged.clear();
    let x = this.handlers.get(collection);
    if (!x) this.handlers.set(collection, (x = {}));
    return x;
  }

  /** Replace the create of a collection (may be called before the collection is registered). */
  setCreate(collection: string, op: CreateOp): void {
    this.h(collection).create = op;
  }

  setUpdate(collection: string, op: UpdateOp): void {
    this.h(collection).update = op;
  }

  setDelete(collection: string, op: DeleteOp): void {
    this.h(collection).remove = op;
  }

  /** An action the model declares (schema, long) — advertised once someone registers its handler. */
  declareAction(collection: string, name: string, spec: Omit<ActionSpec, 'name' | 'run'>): void {
    let m = this.declared.get(collection);
    if (!m) this.declared.set(collection, (m = new Map()));
    m.set(name, { ...spec, name });
  }

  /** Handle an action; `schema`/`long` default to what the model declares. */
  registerAction(collection: string, name: string, spec: Partial<Omit<ActionSpec, 'name'>> & Pick<ActionSpec, 'run'>): void {
    if (!/^[a-z][A-Za-z0-9]*$/.test(name)) throw new Error(`action name '${name}' must be camelCase`);
    let m = this.acts.get(collection);
    if (!m) this.acts.set(collection, (m = new Map()));
    if (m.has(name)) throw new Error(`action ${collection}.${name} registered twice`);
    m.set(name, { ...spec, name });
  }

  /**
   * The resumable long operations by collection ('create', 'delete' or an action's name): each job type gets
   * a resumer (api/resume.ts registerJobResumers). Read from the handlers: works before the
   * collections are registered.
   */
  resumables(): Array<{ collection: string; op: string }> {
    const out: Array<{ collection: string; op: string }> = [];
    for (const [collection, h] of this.handlers) {
      if (h.create?.long && h.create.resumable) out.push({ collection, op: 'create' });
      if (h.remove?.long && h.remove.resumable) out.push({ collection, op: 'delete' });
    }
    for (const [collection, m] of this.acts) for (const a of m.values()) if (a.resumable) out.push({ collection, op: a.name });
    return out;
  }

  /** An action's handler as registered (no model declaration needed: usable before the collections are registered). */
  actionHandler(collection: string, name: string): ActionSpec['run'] {
    return this.acts.get(collection)?.get(name)?.run;
  }

  /** The actions served on a collection: those with a handler (what OpenAPI and the CLI show). */
  actions(collection: string): ActionSpec[] {
    return this.allActions(collection).filter((a) => a.run !== undefined);
  }

  /** Declared and registered actions, handled or not. */
  allActions(collection: string): ActionSpec[] {
    const names = new Set([...(this.declared.get(collection)?.keys() ?? []), ...(this.acts.get(collection)?.keys() ?? [])]);
    return [...names].map((n) => this.action(collection, n)).filter((a): a is ActionSpec => a !== undefined);
  }

  /** Whether POST /v1/<collection> is served (generic sync create, or a registered handler). */
  canCreate(spec: CollectionSpec): boolean {
    return !spec.noCreate && (spec.create !== undefined || spec.createMode !== 'async');
  }

  /** Whether DELETE /v1/<collection>/<uuid> is served. */
  canDelete(spec: CollectionSpec): boolean {
    if (spec.deleteMode === 'none') return false;
    return spec.remove !== undefined || spec.deleteMode !== 'async';
  }

  /**
   * What the model declares but nobody handles yet, as `<collection>.<action>`,
   * `<collection>.create` or `<collection>.delete`: none of it is advertised.
   */
  unhandled(): string[] {
    const out: string[] = [];
    for (const c of this.collections()) {
      if (!c.noCreate && !this.canCreate(c)) out.push(`${c.collection}.create`);
      if (!this.canDelete(c) && c.deleteMode !== 'none') out.push(`${c.collection}.delete`);
      for (const a of this.allActions(c.collection)) if (!a.run) out.push(`${c.collection}.${a.name}`);
    }
    return out.sort();
  }

  action(collection: string, name: string): ActionSpec | undefined {
    const d = this.declared.get(collection)?.get(name);
    const r = this.acts.get(collection)?.get(name);
    if (!d && !r) return undefined;
    const merged = { ...d, ...r, name } as Partial<ActionSpec> & { name: string };
    if (!merged.schema) throw new Error(`action ${collection}.${name}: no schema (declare it in the model or pass one)`);
    if (merged.run === undefined) delete merged.run;
    return merged as ActionSpec;
  }

  isAdminOnly(spec: CollectionSpec, verb: Verb): boolean {
    return spec.adminOnly === true || (Array.isArray(spec.adminOnly) && spec.adminOnly.includes(verb));
  }
}
