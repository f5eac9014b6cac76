// The global configs the code declares (controller/config/model.ts is the kind), how they are
// read and how the admin changes them. Each config is declared once here with its rule; the
// controller creates the missing records at start (ensureGlobalConfigs) and keeps their
// defaultValue/description in step with the code, never touching a value the admin set.
// Readers call globalConfigValue(): the stored value, else the default (a store from before the
// config existed, or a record being created by another controller).
import { createHash } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { ApiRegistry } from '../api/registry.js';
import type { InventoryStore, Resource } from '../store/types.js';

export interface GlobalConfigDecl {
  category: string;
  name: string;
  defaultValue: string;
  description: string;
  /** The value as stored (normalised), or a reason it is refused. */
  check(value: string): { value: string } | { reason: string };
}

const bool = (value: string): { value: string } | { reason: string } => {
  const v = value.trim().toLowerCase();
  return v === 'true' || v === 'false' ? { value: v } : { reason: "must be 'true' or 'false'" };
};

/** Every global config, by `<category>.<name>` (ZStack's names, so its docs and scripts apply). */
export const GLOBAL_CONFIGS = {
  // manual 全局设置 > 基本设置 > 在线迁移 (本地存储): live migration of a VM on local storage copies its disk
  'localStoragePrimaryStorage.liveMigrationWithStorage.allow': {
    category: 'localStoragePrimaryStorage',
    name: 'liveMigrationWithStorage.allow',
    defaultValue: 'false',
    description: 'Allow live migration of VMs on local primary storage: the root volume is copied to the destination host while the VM runs (not for VMs with data volumes on local storage)',
    check: bool,
  },
} as const satisfies Record<string, GlobalConfigDecl>;

export type GlobalConfigId = keyof typeof GLOBAL_CONFIGS;

/** The record's uuid: derived from category and name, so every controller of a shared store agrees on it. */
export function globalConfigUuid(id: string): string {
  const h = createHash('sha256').update(`tstack global-config ${id}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The current value of a config (the default when no record holds one). */
export async function globalConfigValue(store: InventoryStore, id: GlobalConfigId): Promise<string> {
  const r = await store.get(globalConfigUuid(id));
  return typeof r?.value === 'string' ? r.value : GLOBAL_CONFIGS[id].defaultValue;
}

export async function globalConfigBool(store: InventoryStore, id: GlobalConfigId): Promise<boolean> {
  return (await globalConfigValue(store, id)) === 'true';
}

/** Create the records of the declared configs that have none; refresh default and description of the others. */
export async function ensureGlobalConfigs(store: InventoryStore, adminAccountUuid: string): Promise<void> {
  for (const [id, c] of Object.entries(GLOBAL_CONFIGS) as Array<[string, GlobalConfigDecl]>) {
    const uuid = globalConfigUuid(id);
    const have = await store.get(uuid);
    if (have) {
      if (have.defaultValue !== c.defaultValue || have.description !== c.description) await store.update(uuid, { defaultValue: c.defaultValue, description: c.description });
      continue;
    }
    // createDate/lastOpDate: set by the store
    const r = { uuid, kind: 'global-config', name: c.name, category: c.category, value: c.defaultValue, defaultValue: c.defaultValue, description: c.description, ownerAccountUuid: adminAccountUuid, tags: [] } as unknown as Resource;
    // another controller of a shared store may create it at the same moment: theirs is as good
    await store.create(r).catch(async (e: unknown) => {
      if (!(await store.get(uuid))) throw e;
    });
  }
}

/** The declaration of a stored record (by its category and name). */
function declOf(r: Resource): GlobalConfigDecl | undefined {
  return (GLOBAL_CONFIGS as Record<string, GlobalConfigDecl>)[`${String(r.category)}.${r.name}`];
}

/** The updateGlobalConfig action: the value is checked against the config's rule (400 naming the field). */
export function registerGlobalConfigApi(reg: ApiRegistry): void {
  reg.registerAction('global-configs', 'updateGlobalConfig', {
    adminOnly: true,
    run: async (r, params, oc) => {
      const decl = declOf(r);
      if (!decl) throw new TStackError('CONFLICT', `global config ${String(r.category)}.${r.name} is no longer declared by this controller`);
      const got = decl.check(String(params.value));
      if ('reason' in got) {
        throw new TStackError('INVALID_ARGUMENT', `updateGlobalConfig.value: ${decl.category}.${decl.name} ${got.reason}, got ${JSON.stringify(String(params.value).slice(0, 64))}`, { field: 'updateGlobalConfig.value', reason: got.reason });
      }
      return oc.store.update(r.uuid, { value: got.value });
    },
  });
}
