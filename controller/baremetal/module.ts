// The bare-metal controller module (docs/baremetal.md): chassis and their IPMI actions.
// Installed by controller/main.ts builtinModules(), after 'cloud' (it reaches hosts' agents).
import type { ControllerContext } from '../context.js';
import { registerBaremetalApi } from './api.js';

export function baremetalModule(): { name: string; install(c: ControllerContext): void } {
  return {
    name: 'baremetal',
    install(c) {
      registerBaremetalApi(c.registry);
    },
  };
}
