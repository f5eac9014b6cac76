// The policy gate: API middleware that, for a session of a user (not the account itself, not
// the admin), maps the request to its action name (policy.ts) and refuses it with 403 unless
// the user's policies (its own and its groups') allow it. Runs before the quota gate and the
// routes, so a refused request does no work at all.
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';
import type { AuthService } from '../auth/accounts.js';
import { requestPrincipal } from '../auth/request.js';
import type { ApiRegistry } from '../api/registry.js';
import { withReadStance } from '../api/read-path.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { decide, requestAction, statementsOf } from './policy.js';
import { GROUP_KIND, POLICY_KIND } from './users.js';

export interface PolicyGateDeps {
  store: InventoryStore;
  auth: AuthService;
  registry: ApiRegistry;
}

const bearer = (ctx: Koa.Context): string | undefined => /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'))?.[1];
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A user changing its own password (or reading itself) needs no policy. */
const selfService = (body: unknown): boolean => isObj(body) && Object.keys(body).every((k) => k === 'password' || k === 'oldPassword');

export function policyMiddleware(d: PolicyGateDeps): Koa.Middleware {
  // a user's reads need its policies too: the read path runs this gate as well
  return withReadStance(async (ctx: Koa.Context, next: Koa.Next) => {
    const token = bearer(ctx);
    if (!token || !ctx.path.startsWith('/v1/')) return next();
    let p;
    try {
      p = await requestPrincipal(d.auth, ctx.req, token);
    } catch {
      return next(); // the route answers 401
    }
    if (p.userUuid === undefined) return next(); // the account itself and the admin bypass policies
    const body = (ctx.request as { body?: unknown }).body;
    const collections = new Set(d.registry.collections().map((c) => c.collection));
    const ra = requestAction(ctx.method, ctx.path, body, collections);
    if (ra && 'open' in ra) return next();
    if (!ra) {
      // not in the table: reads of unknown paths are the route's 404; anything else is refused
      if (ctx.method === 'GET' || ctx.method === 'HEAD') return next();
      throw new TStackError('FORBIDDEN', `user '${p.userName}' may not ${ctx.method} ${ctx.path}: not an action policies can allow`);
    }
    if (ra.action === 'users:update' && ra.resourceUuid === p.userUuid && selfService(body)) return next();
    const user = await d.store.get(p.userUuid);
    if (!user) throw new TStackError('UNAUTHORIZED', 'the user of this session no longer exists');
    const groups = (await d.store.list({ kind: GROUP_KIND, ownerAccountUuid: p.accountUuid })).items;
    const policies = new Map<string, Resource>((await d.store.list({ kind: POLICY_KIND, ownerAccountUuid: p.accountUuid })).items.map((x) => [x.uuid, x]));
    const dec = decide(statementsOf(user, groups, policies), ra.action, ra.resourceUuid);
    if (!dec.allowed) throw new TStackError('FORBIDDEN', `user '${p.userName}' may not ${ra.action}: ${dec.reason}; ask the account to attach a policy allowing it`, { action: ra.action });
    return next();
  }, { reads: 'checks' });
}
