// The `accounts` collection: the admin creates and deletes normal accounts; every account
// may read and update itself (name, description, password with oldPassword); the admin
// may update anyone (password without oldPassword).
import { TStackError } from '../../shared/errors.js';
import type { ApiRegistry } from '../api/registry.js';
import { ACCOUNT_KIND, AccountCreate, AccountUpdate, AccountView, type AuthService } from './accounts.js';

export function registerAccounts(reg: ApiRegistry, auth: AuthService): void {
  reg.registerCollection({
    collection: 'accounts',
    kind: ACCOUNT_KIND,
    description: 'accounts (SystemAdmin: admin; Normal: tenants that own what they create)',
    createSchema: AccountCreate,
    updateSchema: AccountUpdate,
    viewSchema: AccountView,
    adminOnly: ['create', 'delete'],
    create: { run: async (body) => auth.createAccount(body as { name: string; password: string; description?: string }) },
    update: { run: async (r, body, ctx) => auth.updateAccount(ctx.principal, r.uuid, body) },
    remove: {
      run: async (r, _q, ctx) => {
        if (r.uuid === ctx.principal.accountUuid) throw new TStackError('CONFLICT', 'you cannot delete your own account');
        const kinds = ctx.registry.collections().map((c) => c.kind).filter((k) => k !== ACCOUNT_KIND);
        await auth.deleteAccount(r.uuid, kinds);
        return r;
      },
    },
  });
}
