// Users, user groups and policies inside an account (the manual's 7.10 用户/用户组/权限):
// resources owned by the account, so listing, reading and isolation are the API's usual ones.
//   users {name, password, description?}      log in with POST /v1/sessions {accountName, userName, password}
//   user-groups {name}                         addUser/removeUser {userUuid}
//   policies {name, statements}                attachPolicy/detachPolicy {policyUuid} on users and groups
// A user changes its own password (PUT /v1/users/<own uuid> {password, oldPassword}); the
// account (or the admin) manages its users and may reset a password without the old one.
// Deleting a user keeps the account's resources (they belong to the account) and ends its sessions.
import { randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { TStackError } from '../../shared/errors.js';
import { Obj, Uuid } from '../../shared/protocol/schema.js';
import { AuthService, USER_KIND } from '../auth/accounts.js';
import { hashPassword, verifyPassword } from '../auth/passwords.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { STATEMENT_EFFECTS } from './policy.js';

export const GROUP_KIND = 'user-group';
export const POLICY_KIND = 'policy';

const Name = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$', description: 'letters, digits and _ . @ -; at most 64 characters' });
const Password = Type.String({ minLength: 8, maxLength: 256, description: 'at least 8 characters' });
const Description = Type.Optional(Type.String({ maxLength: 2048 }));
const ActionPattern = Type.String({ pattern: '^(\\*|[a-z0-9-]+)(:(\\*|[A-Za-z0-9]+))?$', maxLength: 128, description: '<collection>:<verb or action>, e.g. vm-instances:*, volumes:read, *:read, vm-instances:stop' });

export const UserCreate = Obj({ name: Name, password: Password, description: Description });
export const UserUpdate = Obj({
  name: Type.Optional(Name),
  description: Description,
  password: Type.Optional(Password),
  oldPassword: Type.Optional(Type.String({ maxLength: 256, description: 'required when a user changes its own password' })),
});
export const GroupCreate = Obj({ name: Name, description: Description });
export const GroupUpdate = Obj({ name: Type.Optional(Name), description: Description });
export const Statement = Obj({
  effect: Type.Union(STATEMENT_EFFECTS.map((e) => Type.Literal(e))),
  actions: Type.Array(ActionPattern, { minItems: 1, maxItems: 256 }),
  resources: Type.Optional(Type.Array(Uuid(), { maxItems: 1024, description: 'only these resources (default: all of the account)' })),
});
export const PolicyCreate = Obj({ name: Type.String({ minLength: 1, maxLength: 255 }), description: Description, statements: Type.Array(Statement, { minItems: 1, maxItems: 128 }) });
export const PolicyUpdate = Obj({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })), description: Description, statements: Type.Optional(Type.Array(Statement, { minItems: 1, maxItems: 128 })) });
const UserRef = Obj({ userUuid: Uuid() });
const PolicyRef = Obj({ policyUuid: Uuid() });

const now = (): string => new Date().toISOString();
const nameClaims = (account: string, kind: string): string => `${kind}-names:${account}`;

async function claimName(oc: OpContext, owner: string, kind: string, name: string, uuid: string): Promise<void> {
  if (!(await oc.store.claim(nameClaims(owner, kind), name, uuid))) throw new TStackError('CONFLICT', `a ${kind} named '${name}' already exists in this account`, { field: 'name' });
}

async function create(oc: OpContext, kind: string, body: Record<string, unknown>, extra: Record<string, unknown>): Promise<Resource> {
  const owner = oc.principal.accountUuid;
  const uuid = randomUUID();
  const name = String(body.name);
  await claimName(oc, owner, kind, name, uuid);
  try {
    const r: Resource = { uuid, kind, name, ownerAccountUuid: owner, tags: [], createDate: now(), lastOpDate: now(), ...extra };
    if (typeof body.description === 'string') r.description = body.description;
    return await oc.store.create(r);
  } catch (e) {
    await oc.store.release(nameClaims(owner, kind), name, uuid);
    throw e;
  }
}

async function rename(oc: OpContext, r: Resource, name: unknown): Promise<Partial<Resource>> {
  if (typeof name !== 'string' || name === r.name) return {};
  await claimName(oc, r.ownerAccountUuid, r.kind, name, r.uuid);
  await oc.store.release(nameClaims(r.ownerAccountUuid, r.kind), r.name, r.uuid);
  return { name };
}

async function remove(oc: OpContext, r: Resource): Promise<Resource> {
  await oc.store.delete(r.uuid);
  await oc.store.release(nameClaims(r.ownerAccountUuid, r.kind), r.name, r.uuid);
  return r;
}

/** A resource of `kind` in the same account as `r` (references never cross accounts). */
async function sameAccount(oc: OpContext, r: Resource, uuid: string, kind: string, field: string): Promise<Resource> {
  const x = await oc.store.get(uuid);
  if (!x || x.kind !== kind || x.ownerAccountUuid !== r.ownerAccountUuid) throw new TStackError('INVALID_ARGUMENT', `${field}: no ${kind} ${uuid} in this account`, { field });
  return x;
}

const list = (r: Resource, f: string): string[] => (Array.isArray(r[f]) ? (r[f] as string[]) : []);
const withItem = (xs: string[], x: string): string[] => (xs.includes(x) ? xs : [...xs, x]);

/** Only the account itself (or the admin) manages identities, unless a policy lets a user. */
function accountOnly(oc: OpContext, what: string): void {
  // the policy gate already decided for users; this stops a user from editing another user's password without the old one
  if (oc.principal.userUuid !== undefined && what === 'reset-password') throw new TStackError('FORBIDDEN', 'only the account (or the admin) resets a user\'s password; change your own with oldPassword');
}

export function registerIdentityCollections(reg: ApiRegistry): void {
  reg.registerCollection({
    collection: 'users',
    kind: USER_KIND,
    description: 'users of an account: log in with {accountName, userName, password}; read-only until a policy allows more',
    createSchema: UserCreate,
    updateSchema: UserUpdate,
    hiddenFields: ['password', 'oldPassword'],
    create: { run: async (body, oc) => create(oc, USER_KIND, body, { state: 'Enabled', policyUuids: [], _passwordHash: await hashPassword(String(body.password)) }) },
    update: {
      run: async (r, body, oc) => {
        const patch: Partial<Resource> = await rename(oc, r, body.name);
        if (body.description !== undefined) patch.description = body.description as string;
        if (body.password !== undefined) {
          if (oc.principal.userUuid === r.uuid) {
            if (typeof body.oldPassword !== 'string') throw new TStackError('INVALID_ARGUMENT', 'oldPassword: required to change your own password', { field: 'oldPassword' });
            if (!(await verifyPassword(body.oldPassword, String(r._passwordHash)))) throw new TStackError('INVALID_ARGUMENT', 'oldPassword: does not match the current password', { field: 'oldPassword' });
          } else accountOnly(oc, 'reset-password');
          patch._passwordHash = await hashPassword(String(body.password));
        }
        const out = await oc.store.update(r.uuid, patch);
        if (body.password !== undefined) await new AuthService(oc.store).revokeSessions(r.ownerAccountUuid, oc.principal.sessionId, r.uuid);
        return out;
      },
    },
    remove: {
      run: async (r, _q, oc) => {
        await new AuthService(oc.store).revokeSessions(r.ownerAccountUuid, undefined, r.uuid);
        for (const g of (await oc.store.list({ kind: GROUP_KIND, ownerAccountUuid: r.ownerAccountUuid })).items) {
          if (list(g, 'userUuids').includes(r.uuid)) await oc.store.update(g.uuid, { userUuids: list(g, 'userUuids').filter((u) => u !== r.uuid) });
        }
        return remove(oc, r);
      },
    },
  });
  reg.registerCollection({
    collection: 'user-groups',
    kind: GROUP_KIND,
    description: 'groups of users of an account; policies attached to a group apply to its users',
    createSchema: GroupCreate,
    updateSchema: GroupUpdate,
    create: { run: (body, oc) => create(oc, GROUP_KIND, body, { userUuids: [], policyUuids: [] }) },
    update: { run: async (r, body, oc) => oc.store.update(r.uuid, { ...(await rename(oc, r, body.name)), ...(body.description !== undefined ? { description: body.description as string } : {}) }) },
    remove: { run: (r, _q, oc) => remove(oc, r) },
  });
  reg.registerCollection({
    collection: 'policies',
    kind: POLICY_KIND,
    description: 'Allow/Deny statements on API actions (<collection>:<verb|action>), attached to users or groups; Deny wins',
    createSchema: PolicyCreate,
    updateSchema: PolicyUpdate,
    create: { run: (body, oc) => create(oc, POLICY_KIND, body, { statements: body.statements }) },
    update: {
      run: async (r, body, oc) => {
        const patch: Partial<Resource> = await rename(oc, r, body.name);
        if (body.description !== undefined) patch.description = body.description as string;
        if (body.statements !== undefined) patch.statements = body.statements;
        return oc.store.update(r.uuid, patch);
      },
    },
    remove: {
      run: async (r, _q, oc) => {
        // detach it everywhere first: a dangling reference would silently grant nothing, but confuse
        for (const kind of [USER_KIND, GROUP_KIND]) {
          for (const x of (await oc.store.list({ kind, ownerAccountUuid: r.ownerAccountUuid })).items) {
            if (list(x, 'policyUuids').includes(r.uuid)) await oc.store.update(x.uuid, { policyUuids: list(x, 'policyUuids').filter((p) => p !== r.uuid) });
          }
        }
        return remove(oc, r);
      },
    },
  });
  const act = (col: string, name: string, description: string, schema: typeof UserRef | typeof PolicyRef, run: (r: Resource, p: Record<string, unknown>, oc: OpContext) => Promise<unknown>): void => {
    if (!reg.action(col, name)?.run) reg.registerAction(col, name, { description, schema, run });
  };
  act('user-groups', 'addUser', 'add a user of the account to the group', UserRef, async (g, p, oc) => {
    await sameAccount(oc, g, String(p.userUuid), USER_KIND, 'addUser.userUuid');
    return oc.store.update(g.uuid, { userUuids: withItem(list(g, 'userUuids'), String(p.userUuid)) });
  });
  act('user-groups', 'removeUser', 'remove a user from the group', UserRef, async (g, p, oc) => oc.store.update(g.uuid, { userUuids: list(g, 'userUuids').filter((u) => u !== p.userUuid) }));
  for (const col of ['users', 'user-groups']) {
    act(col, 'attachPolicy', 'attach a policy of the account', PolicyRef, async (r, p, oc) => {
      await sameAccount(oc, r, String(p.policyUuid), POLICY_KIND, 'attachPolicy.policyUuid');
      return oc.store.update(r.uuid, { policyUuids: withItem(list(r, 'policyUuids'), String(p.policyUuid)) });
    });
    act(col, 'detachPolicy', 'detach a policy', PolicyRef, async (r, p, oc) => oc.store.update(r.uuid, { policyUuids: list(r, 'policyUuids').filter((x) => x !== p.policyUuid) }));
  }
}
