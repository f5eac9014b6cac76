// Accounts (manual §7.10). The API layer owns passwords (scrypt) and sessions; this is the shape.
import { Type, Obj } from '../../shared/protocol/schema.js';
import { Description, Enum } from './fields.js';
import { changeStateAction, type KindDef } from './kind.js';
import { ENABLED_STATES } from './states.js';

export const ACCOUNT_TYPES = ['SystemAdmin', 'Normal'] as const;

export const account: KindDef = {
  kind: 'account',
  collection: 'accounts',
  title: 'account',
  createSchema: Obj({
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9_.@-]*$' }),
    password: Type.String({ minLength: 8, maxLength: 1024 }),
    description: Type.Optional(Description()),
    type: Type.Optional(Enum(ACCOUNT_TYPES)),
  }),
  updateSchema: Obj({
    password: Type.Optional(Type.String({ minLength: 8, maxLength: 1024 })),
    description: Type.Optional(Description()),
  }),
  refs: [],
  states: ENABLED_STATES,
  initialState: 'Enabled',
  adminOnly: true,
  createMode: 'sync',
  deleteMode: 'sync',
  secretFields: ['password'],
  systemFields: ['passwordHash'],
  defaults: { type: 'Normal' },
  actions: { changeState: changeStateAction() },
};
