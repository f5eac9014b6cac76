// Policies for users (the manual's 权限): what a request is, as an action name derived from
// the API's collections and actions, and whether a user's policies allow it.
//   GET /v1/<collection>[/<uuid>]            <collection>:read
//   POST /v1/<collection>                    <collection>:create
//   PUT|PATCH /v1/<collection>/<uuid>        <collection>:update
//   DELETE /v1/<collection>/<uuid>           <collection>:delete
//   POST /v1/<collection>/<uuid>/actions {a} <collection>:<a>
// plus ENDPOINTS for what is not a collection. A user with no policy reads and does nothing
// else (the manual: new users are read-only); Deny wins over Allow; the account itself and the
// admin bypass policies. Anything unknown that is not a read is denied (fail closed).
import type { Resource } from '../store/types.js';

export const STATEMENT_EFFECTS = ['Allow', 'Deny'] as const;

export interface Statement {
  effect: (typeof STATEMENT_EFFECTS)[number];
  actions: string[];
  resources?: string[];
}

/** What a request asks to do: `open` = no policy applies (no session, or the session itself). */
export type RequestAction = { open: true } | { action: string; resourceUuid?: string };

/**
 * Endpoints that are not collections: method + path pattern → action (or open). The unit test
 * test/unit/identity/policy-table.test.ts checks every path of OpenAPI maps to something.
 */
export const ENDPOINTS: Array<{ method: string; path: RegExp; to: RequestAction | ((m: RegExpExecArray) => RequestAction) }> = [
  { method: 'GET', path: /^\/health$/, to: { open: true } },
  { method: 'GET', path: /^\/metrics$/, to: { open: true } }, // admin session or controller token, checked by its route
  { method: 'GET', path: /^\/v1\/openapi\.json$/, to: { open: true } },
  { method: 'POST', path: /^\/v1\/sessions$/, to: { open: true } },
  { method: 'DELETE', path: /^\/v1\/sessions(\/current)?$/, to: { open: true } }, // logout, logout everywhere
  { method: 'POST', path: /^\/v1\/agent-(callbacks|events)$/, to: { open: true } }, // agents' tokens, no sessions
  { method: 'GET', path: /^\/v1\/jobs(\/([^/]+))?$/, to: (m) => (m[2] ? { action: 'jobs:read', resourceUuid: m[2] } : { action: 'jobs:read' }) },
  { method: 'GET', path: /^\/v1\/events$/, to: { action: 'events:read' } },
  { method: 'GET', path: /^\/v1\/quotas$/, to: { action: 'quotas:read' } },
  { method: 'GET', path: /^\/v1\/metrics(\/names|\/export)?$/, to: { action: 'metrics:read' } },
  { method: 'GET', path: /^\/v1\/resources$/, to: { action: 'resources:read' } }, // tags across kinds; each kind still scoped
  { method: 'GET', path: /^\/v1\/audits(\/([^/]+))?$/, to: { action: 'audits:read' } },
];

const COLLECTION = /^\/v1\/([a-z0-9-]+)(?:\/([^/]+))?(\/actions)?\/?$/;

/** The action a request asks for. `body` is needed for actions ({<name>: {…}}). */
export function requestAction(method: string, path: string, body: unknown, collections: ReadonlySet<string>): RequestAction | undefined {
  const m0 = method.toUpperCase();
  const m = m0 === 'HEAD' ? 'GET' : m0;
  for (const e of ENDPOINTS) {
    const x = e.method === m ? e.path.exec(path) : null;
    if (x) return typeof e.to === 'function' ? e.to(x) : e.to;
  }
  const c = COLLECTION.exec(path);
  if (!c || !collections.has(c[1]!)) return undefined;
  const [, col, uuid, actions] = c as unknown as [string, string, string | undefined, string | undefined];
  const on = (action: string): RequestAction => (uuid ? { action, resourceUuid: uuid } : { action });
  if (actions) {
    if (m !== 'POST' || !uuid) return undefined;
    const names = typeof body === 'object' && body !== null && !Array.isArray(body) ? Object.keys(body) : [];
    // a malformed action body is the route's 400; as a policy question it is the action '?'
    return on(`${col}:${names.length === 1 && /^[A-Za-z0-9]+$/.test(names[0]!) ? names[0]! : '?'}`);
  }
  if (m === 'GET') return on(`${col}:read`);
  if (m === 'POST' && !uuid) return on(`${col}:create`);
  if ((m === 'PUT' || m === 'PATCH') && uuid) return on(`${col}:update`);
  if (m === 'DELETE' && uuid) return on(`${col}:delete`);
  return undefined;
}

/** `vm-instances:*`, `*:read`, `*`, `vm-instances:stop` against `vm-instances:stop`. */
export function actionMatches(pattern: string, action: string): boolean {
  if (pattern === '*' || pattern === '*:*') return true;
  const [pc, pa = '*'] = pattern.split(':');
  const [ac, aa] = action.split(':');
  return (pc === '*' || pc === ac) && (pa === '*' || pa === aa);
}

export type Decision = { allowed: true; by: 'policy' | 'default-read' } | { allowed: false; reason: string };

/** Deny wins; then any Allow; then the default: reads only. */
export function decide(statements: Statement[], action: string, resourceUuid?: string): Decision {
  const applies = (s: Statement): boolean => s.actions.some((p) => actionMatches(p, action)) && (!s.resources?.length || (resourceUuid !== undefined && s.resources.includes(resourceUuid)));
  const hits = statements.filter(applies);
  if (hits.some((s) => s.effect === 'Deny')) return { allowed: false, reason: `a policy denies ${action}` };
  if (hits.some((s) => s.effect === 'Allow')) return { allowed: true, by: 'policy' };
  if (action.endsWith(':read')) return { allowed: true, by: 'default-read' };
  return { allowed: false, reason: `no policy allows ${action} (new users may only read)` };
}

/** The statements of the policies attached to a user and to its groups. */
export function statementsOf(user: Resource, groups: Resource[], policies: Map<string, Resource>): Statement[] {
  const ids = new Set<string>(Array.isArray(user.policyUuids) ? (user.policyUuids as string[]) : []);
  for (const g of groups) {
    if (Array.isArray(g.userUuids) && (g.userUuids as string[]).includes(user.uuid) && Array.isArray(g.policyUuids)) for (const p of g.policyUuids as string[]) ids.add(p);
  }
  const out: Statement[] = [];
  for (const id of ids) {
    const p = policies.get(id);
    if (p && Array.isArray(p.statements)) out.push(...(p.statements as Statement[]));
  }
  return out;
}
