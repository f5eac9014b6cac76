// Global configs (manual 全局设置, ZStack GlobalConfig): settings of the whole cloud, one record
// per (category, name) with its value, defaultValue and description. They are declared in code
// (global-config.ts), created by the controller at start and never created or deleted through
// the API; the admin changes a value with the action updateGlobalConfig {value}, which checks it
// against the config's own rule. Values are strings, as in ZStack.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { action, type KindDef } from '../model/kind.js';

export const globalConfigKind: KindDef = {
  kind: 'global-config',
  collection: 'global-configs',
  title: 'global config',
  createSchema: Obj({}),
  updateSchema: Obj({}),
  refs: [],
  states: [],
  adminOnly: true,
  createMode: 'none',
  deleteMode: 'none',
  systemFields: ['category', 'value', 'defaultValue'],
  actions: {
    updateGlobalConfig: action(
      Obj({ value: Type.String({ maxLength: 1024, description: "the new value, as a string (e.g. 'true'); checked against the config's rule" }) }),
      'Change the value of a global config (takes effect at once, no restart)',
      false,
    ),
  },
};
