// The bare-metal controller module (docs/baremetal.md): chassis and their IPMI actions, PXE
// servers (reconcile area 'baremetal-pxe'), bare-metal instances and their flows. Installed by controller/main.ts builtinModules(),
// after 'cloud' (it reaches hosts' agents and L2 bridges).
import type { ControllerContext } from '../context.js';
import { registerBaremetalApi } from './api.js';
import { registerBaremetalInstanceApi, stoppedControllers, provisionFlow, wipeFlow } from './instances.js';
import { pxeArea, watchPxeChanges } from './pxe.js';

export function baremetalModule(): { name: string; install(c: ControllerContext): void; stop(): Promise<void> } {
  let off: (() => void) | undefined;
  let ctx: ControllerContext | undefined;
  return {
    name: 'baremetal',
    install(c) {
      registerBaremetalApi(c.registry);
      registerBaremetalInstanceApi(c.registry);
      // registered at install: a restarted controller finds them to roll back unfinished runs
      for (const f of [provisionFlow, wipeFlow]) if (!c.engine.registry.get(f.name)) c.engine.register(f);
      ctx = c;
      c.reconcile.register(pxeArea(c));
      off = watchPxeChanges(c);
    },
    stop: async () => {
      off?.();
      if (ctx) stoppedControllers.add(ctx);
    },
  };
}
