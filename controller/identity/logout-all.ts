// Logout everywhere (issue 18): DELETE /v1/sessions ends every session of the caller — a user's
// own sessions, or, for the account itself, all of the account's (its users' too).
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';
import type { AuthService } from '../auth/accounts.js';
import { withReadStance } from '../api/read-path.js';

export function logoutAllMiddleware(auth: AuthService): Koa.Middleware {
  // DELETE only
  return withReadStance(async (ctx: Koa.Context, next: Koa.Next) => {
    if (ctx.method !== 'DELETE' || ctx.path !== '/v1/sessions') return next();
    const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    const p = await auth.authenticate(m?.[1]);
    if (p.sessionId.startsWith('ak:')) throw new TStackError('INVALID_ARGUMENT', 'an access key has no sessions; revoke the key instead');
    await auth.revokeSessions(p.accountUuid, undefined, p.userUuid);
    ctx.status = 204;
  }, { reads: 'ignores' });
}
