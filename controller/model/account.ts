// Accounts (manual §7.10): the one definition of the `accounts` collection. The schemas here
// are what the API validates (controller/auth/collection.ts registers the collection with
// these and its own handlers); controller/auth/accounts.ts owns passwords (scrypt, in the
// internal field `_passwordHash`), sessions, the admin bootstrap and the rules: only the
// admin creates and deletes accounts (always type Normal), every account reads and updates
// itself, the admin anyone.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { changeStateAction, type KindDef } from './kind.js';
import { ENABLED_STATES } from './states.js';

export const ACCOUNT_KIND = 'account';
export const ACCOUNT_TYPES = ['SystemAdmin', 'Normal'] as const;
export type AccountType = (typeof ACCOUNT_TYPES)[number];

const AccountName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$', description: 'letters, digits and _ . @ -; at most 64 characters' });
const Password = Type.String({ minLength: 8, maxLength: 256, description: 'at least 8 characters' });

/** POST /v1/accounts (admin only): always a Normal account. */
export const AccountCreate = Obj({
  name: AccountName,
  password: Password,
  description: Type.Optional(Type.String({ maxLength: 2048 })),
});

/** PUT/PATCH /v1/accounts/<uuid>: changing your own password needs oldPassword; the admin is never renamed. */
export const AccountUpdate = Obj({
  name: Type.Optional(AccountName),
  description: Type.Optional(Type.String({ maxLength: 2048 })),
  password: Type.Optional(Password),
  oldPassword: Type.Optional(Type.String({ maxLength: 256, description: 'required when changing your own password' })),
});

/** An account as the API shows it. */
export const AccountView = Obj({
  uuid: Type.String(),
  name: Type.String(),
  description: Type.Optional(Type.String()),
  type: Type.Union(ACCOUNT_TYPES.map((t) => Type.Literal(t))),
  // Deleting: DELETE emptied part of it and stopped (controller/identity/account-delete.ts); DELETE again resumes
  state: Type.Optional(Type.Union([...ENABLED_STATES, 'Deleting'].map((s) => Type.Literal(s)))),
  createDate: Type.String(),
  lastOpDate: Type.String(),
});

export const account: KindDef = {
  kind: ACCOUNT_KIND,
  collection: 'accounts',
  title: 'account',
  createSchema: AccountCreate,
  updateSchema: AccountUpdate,
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  // updates: your own account (or the admin: anyone), checked by the handlers
  adminOnly: ['create', 'delete'],
  createMode: 'sync',
  deleteMode: 'sync',
  secretFields: ['password', 'oldPassword'],
  systemFields: ['type', '_passwordHash'],
  actions: { changeState: changeStateAction() },
};
