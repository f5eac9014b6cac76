// Wiring of host operations into the REST API (controller/api/registry.ts extension points):
//   POST   /v1/hosts                                  → addHost as a job (202; ?wait=true answers when connected)
//   POST   /v1/hosts/<uuid>/actions {"reconnect":{}}  → reconnectHost as a job
//   POST   /v1/hosts/<uuid>/actions {"changeState":{"stateEvent":"enable"|"disable"|"maintain"}}
//   DELETE /v1/hosts/<uuid>                           → deleteHost as a job
// and the tracker. In controller/main.ts (builtinModules):
//   const hosts = installHostModule(ctx);  // ctx: the controller's ControllerContext
//   …after listen: hosts.startTracker(); on close: await hosts.stop();
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { ControllerContext } from '../context.js';
import { addHost, changeHostState, deleteHost, reconnectHost, type HostDeps, type HostOptions } from './service.js';
import type { StateEvent } from './states.js';
import { HostTracker } from './tracker.js';

/** Register the host operations; `options` (layout, ports…) apply to every operation of this controller. */
export function registerHostApi(registry: ApiRegistry, options?: HostOptions): void {
  // the serving controller's context (evacuator, host runtime…) comes with each request
  const deps = (oc: OpContext): HostDeps => (options ? { ...oc, options } : oc);
  const hooks = (oc: OpContext) => (oc.job ? { progress: (p: number, m?: string) => oc.job!.progress(p, m) } : {});
  registry.setCreate('hosts', { long: true, run: (body, oc) => addHost(deps(oc), body, hooks(oc)) });
  registry.setDelete('hosts', { long: true, run: (r, _q, oc) => deleteHost(deps(oc), r.uuid) });
  registry.registerAction('hosts', 'reconnect', { long: true, adminOnly: true, run: (r, _p, oc) => reconnectHost(deps(oc), r.uuid, hooks(oc)) });
  registry.registerAction('hosts', 'changeState', { long: false, adminOnly: true, run: (r, p, oc) => changeHostState(deps(oc), r.uuid, p.stateEvent as StateEvent) });
}

export interface HostModule {
  deps: HostDeps;
  tracker?: HostTracker;
  startTracker(): HostTracker;
  stop(): Promise<void>;
}

/** Register the host API on the controller; start the tracker once the controller listens. */
export function installHostModule(ctx: ControllerContext, o: { options?: HostOptions } = {}): HostModule {
  const deps: HostDeps = o.options ? { ...ctx, options: o.options } : ctx;
  registerHostApi(ctx.registry, o.options);
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
