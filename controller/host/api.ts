// Wiring of host operations into the REST API (controller/api/registry.ts extension points):
//   POST   /v1/hosts                                  → addHost as a job (202; ?wait=true answers when connected)
//   POST   /v1/hosts/<uuid>/actions {"reconnect":{}}  → reconnectHost as a job
//   POST   /v1/hosts/<uuid>/actions {"changeState":{"stateEvent":"enable"|"disable"|"maintain"}}
//   DELETE /v1/hosts/<uuid>                           → deleteHost as a job
// and the tracker. In controller/main.ts (startController):
//   const hosts = installHostModule(services, { dataDir, controllerUrl: () => advertised URL });
//   …after listen: hosts.startTracker(); on close: await hosts.stop();
import type { ApiRegistry } from '../api/registry.js';
import type { AgentClient } from '../agent-client/client.js';
import type { AgentRegistry } from '../events/agent-events.js';
import type { EventBus } from '../events/bus.js';
import type { InventoryStore } from '../store/types.js';
import { addHost, changeHostState, deleteHost, reconnectHost, type HostDeps, type HostOptions } from './service.js';
import type { StateEvent } from './states.js';
import { HostTracker } from './tracker.js';

// The API registry is one per process, but several controllers may live in one process (tests):
// handlers find the deps of the controller that serves the request through its store.
const depsByStore = new WeakMap<InventoryStore, HostDeps>();
const depsFor = (oc: { store: InventoryStore }, fallback: HostDeps): HostDeps => depsByStore.get(oc.store) ?? fallback;

export function registerHostApi(registry: ApiRegistry, d: HostDeps): void {
  depsByStore.set(d.store, d);
  registry.setCreate('hosts', {
    long: true,
    run: (body, oc) => {
      const hd = depsFor(oc, d);
      return addHost({ ...hd, adminAccountUuid: hd.adminAccountUuid ?? oc.adminAccountUuid }, body, oc.job ? { progress: (p, m) => oc.job!.progress(p, m) } : {});
    },
  });
  registry.setDelete('hosts', { long: true, run: (r, _q, oc) => deleteHost(depsFor(oc, d), r.uuid) });
  if (!registry.action('hosts', 'reconnect')?.run) {
    registry.registerAction('hosts', 'reconnect', { long: true, adminOnly: true, run: (r, _p, oc) => reconnectHost(depsFor(oc, d), r.uuid, oc.job ? { progress: (p, m) => oc.job!.progress(p, m) } : {}) });
  }
  if (!registry.action('hosts', 'changeState')?.run) {
    registry.registerAction('hosts', 'changeState', { long: false, adminOnly: true, run: (r, p, oc) => changeHostState(depsFor(oc, d), r.uuid, p.stateEvent as StateEvent) });
  }
}

export interface HostModuleServices {
  store: InventoryStore;
  agentClient: AgentClient;
  agents: AgentRegistry;
  bus: EventBus;
  registry: ApiRegistry;
  auth?: { adminAccountUuid: string };
}

export interface HostModule {
  deps: HostDeps;
  tracker?: HostTracker;
  startTracker(): HostTracker;
  stop(): Promise<void>;
}

/** Register the host API on the controller's services; start the tracker once the controller listens. */
export function installHostModule(s: HostModuleServices, o: { dataDir: string; controllerUrl: string | (() => string); options?: HostOptions }): HostModule {
  const deps: HostDeps = { store: s.store, agentClient: s.agentClient, agents: s.agents, bus: s.bus, controllerUrl: o.controllerUrl, dataDir: o.dataDir };
  if (s.auth?.adminAccountUuid) deps.adminAccountUuid = s.auth.adminAccountUuid;
  if (o.options) deps.options = o.options;
  registerHostApi(s.registry, deps);
  const m: HostModule = {
    deps,
    startTracker() {
      m.tracker ??= new HostTracker(deps).start();
      return m.tracker;
    },
    async stop() {
      await m.tracker?.stop();
    },
  };
  return m;
}
