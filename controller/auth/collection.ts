// The `accounts` collection: the admin creates and deletes normal accounts; every account
// may read and update itself (name, description, password with oldPassword); the admin
// may update anyone (password without oldPassword).
import { TStackError } from '../../shared/errors.js';
import type { ApiRegistry } from '../api/registry.js';
import { specFromKind } from '../api/collections.js';
import { account, AccountView } from '../model/account.js';
import { ACCOUNT_KIND, AuthService } from './accounts.js';

export function registerAccounts(reg: ApiRegistry): void {
  // schemas, admin-only verbs and states from the model (controller/model/account.ts)
  reg.registerCollection({
    ...specFromKind(account),
    description: 'accounts (SystemAdmin: admin; Normal: tenants that own what they create)',
    viewSchema: AccountView,
    // handlers build an AuthService on the context's store: a registry may serve several
    // controllers in one process (tests), so nothing here may capture one controller's state
    create: { run: async (body, ctx) => new AuthService(ctx.store).createAccount(body as { name: string; password: string; description?: string }) },
    update: { run: async (r, body, ctx) => new AuthService(ctx.store).updateAccount(ctx.principal, r.uuid, body) },
    remove: {
      run: async (r, _q, ctx) => {
        if (r.uuid === ctx.principal.accountUuid) throw new TStackError('CONFLICT', 'you cannot delete your own account');
        const kinds = ctx.registry.collections().map((c) => c.kind).filter((k) => k !== ACCOUNT_KIND);
        await new AuthService(ctx.store).deleteAccount(r.uuid, kinds);
        return r;
      },
    },
  });
  if (!reg.action('accounts', 'changeState')?.run) {
    reg.registerAction('accounts', 'changeState', {
      description: 'enable or disable a normal account (disabled: no login, sessions ended)',
      schema: account.actions.changeState!.schema,
      adminOnly: true,
      // through the context's store: the registry may outlive this controller (tests start several)
      run: (r, p, oc) => new AuthService(oc.store).changeState(r.uuid, p.stateEvent as 'enable' | 'disable'),
    });
  }
}
