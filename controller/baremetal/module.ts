// The bare-metal controller module (docs/baremetal.md): chassis and their IPMI actions, PXE
// servers (reconcile area 'baremetal-pxe'). Installed by controller/main.ts builtinModules(),
// after 'cloud' (it reaches hosts' agents and L2 bridges).
import type { ControllerContext } from '../context.js';
import { registerBaremetalApi } from './api.js';
import { pxeArea, watchPxeChanges } from './pxe.js';

export function baremetalModule(): { name: string; install(c: ControllerContext): void; stop(): Promise<void> } {
  let off: (() => void) | undefined;
  return {
    name: 'baremetal',
    install(c) {
      registerBaremetalApi(c.registry);
      c.reconcile.register(pxeArea(c));
      off = watchPxeChanges(c);
    },
    stop: async () => off?.(),
  };
}
