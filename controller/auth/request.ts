// One authentication per HTTP request: the policy gate, the quota gate and the route each need
// the principal, and each check costs store reads (session, account). The answer (or refusal)
// is kept on the request object, for the token it was asked for.
import type { Principal } from './accounts.js';

const memo = new WeakMap<object, { token: string | undefined; principal: Promise<Principal> }>();

export function requestPrincipal(auth: { authenticate(token: string | undefined): Promise<Principal> }, req: object, token: string | undefined): Promise<Principal> {
  const m = memo.get(req);
  if (m && m.token === token) return m.principal;
  const principal = auth.authenticate(token);
  memo.set(req, { token, principal });
  return principal;
}
