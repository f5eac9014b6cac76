// The one context of a controller instance. startController (controller/main.ts) builds it once
// and hands the same object to every module's install(); API handlers get it inside their
// OpContext, flow steps as ctx.controller. Nothing about a controller lives in module-level
// state (registries, WeakMaps keyed by store…): two controllers in one process (tests, the
// functional tier) never see each other's handlers, hosts or queues.
//
// A module that adds a kind or a feature registers into ctx.registry (API), ctx.engine (flows),
// ctx.reconcile (desired-state areas) from its install(ctx); its handlers then read what they
// need from the OpContext / FlowContext they are called with.
import type Koa from 'koa';
import type { InventoryStore } from './store/types.js';
import type { AuthService } from './auth/accounts.js';
import type { JobManager } from './jobs/jobs.js';
import type { EventBus } from './events/bus.js';
import type { AgentRegistry } from './events/agent-events.js';
import type { AgentClient } from './agent-client/client.js';
import type { ApiRegistry } from './api/registry.js';
import type { ReconcileQueue } from './reconcile/queue.js';
import type { FlowEngine } from './workflow/engine.js';
import type { Evacuator, HostRuntime } from './host/runtime.js';

export interface ControllerContext {
  /** The inventory (writes publish resource events on bus). */
  store: InventoryStore;
  auth: AuthService;
  jobs: JobManager;
  bus: EventBus;
  /** Event tokens of agents (POST /v1/agent-events). */
  agents: AgentRegistry;
  agentClient: AgentClient;
  /** This controller's collections, handlers and actions. */
  registry: ApiRegistry;
  /** Runs (and at start resumes) the workflows modules register. */
  engine: FlowEngine;
  /** Desired-state areas register here in install(); applies begin once the controller listens. */
  reconcile: ReconcileQueue;
  dataDir: string;
  /** The URL agents reach the controller at (known once listening). */
  controllerUrl: () => string;
  /** The admin account uuid (owner of infrastructure). */
  adminAccountUuid: string;
  /** Koa middleware a module adds to the API (its own routes), run before the generic routes. */
  apiMiddleware: Koa.Middleware[];
  /** In-memory state of host operations (busy hosts, per-host queues, bound agents). */
  hostRuntime: HostRuntime;
  /** Empties a host entering maintenance; set by the cloud module's install(). */
  evacuate?: Evacuator;
}
