// Access keys for automation (issue 18): `access-keys` of an account, optionally of one of its
// users. The create answers {accessKeyId, secret} once; the store keeps the secret's SHA-256
// only (a 32-byte random secret needs no slow hash). Use instead of a session:
//   Authorization: Bearer ak:<accessKeyId>:<secret>
// A key acts as its account (or as its user, under that user's policies). Revoke it with
// DELETE, or disable it with changeState {stateEvent: disable}.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { TStackError } from '../../shared/errors.js';
import { Obj, Uuid } from '../../shared/protocol/schema.js';
import { ACCESS_KEY_KIND, USER_KIND } from '../auth/accounts.js';
import type { ApiRegistry } from '../api/registry.js';
import type { Resource } from '../store/types.js';

export const AccessKeyCreate = Obj({
  description: Type.Optional(Type.String({ maxLength: 2048 })),
  userUuid: Type.Optional(Uuid({ description: 'a user of the account the key acts as (a user creating a key: always itself)' })),
});
const AccessKeyUpdate = Obj({ description: Type.Optional(Type.String({ maxLength: 2048 })) });
const ChangeState = Obj({ stateEvent: Type.Union([Type.Literal('enable'), Type.Literal('disable')]) });

export function registerAccessKeys(reg: ApiRegistry): void {
  reg.registerCollection({
    collection: 'access-keys',
    kind: ACCESS_KEY_KIND,
    description: 'API keys: Authorization: Bearer ak:<accessKeyId>:<secret> (the secret is shown once, at create)',
    createSchema: AccessKeyCreate,
    updateSchema: AccessKeyUpdate,
    create: {
      run: async (body, oc) => {
        const p = oc.principal;
        let userUuid = body.userUuid as string | undefined;
        if (p.userUuid !== undefined) userUuid = p.userUuid;
        else if (userUuid !== undefined) {
          const u = await oc.store.get(userUuid);
          if (!u || u.kind !== USER_KIND || u.ownerAccountUuid !== p.accountUuid) throw new TStackError('INVALID_ARGUMENT', `userUuid: no user ${userUuid} in this account`, { field: 'userUuid' });
        }
        const accessKeyId = randomBytes(12).toString('hex');
        const secret = randomBytes(32).toString('base64url');
        const now = new Date().toISOString();
        const r: Resource = { uuid: randomUUID(), kind: ACCESS_KEY_KIND, name: accessKeyId, ownerAccountUuid: p.accountUuid, tags: [], createDate: now, lastOpDate: now, state: 'Enabled', accessKeyId, _secretHash: createHash('sha256').update(secret).digest('hex') };
        if (userUuid !== undefined) r.userUuid = userUuid;
        if (typeof body.description === 'string') r.description = body.description;
        const out = await oc.store.create(r);
        // the only time the secret leaves the controller (not a stored field: never listed again)
        return { ...out, secret };
      },
    },
    update: { run: async (r, body, oc) => oc.store.update(r.uuid, body.description !== undefined ? { description: body.description as string } : {}) },
    remove: {
      run: async (r, _q, oc) => {
        await oc.store.delete(r.uuid);
        return r;
      },
    },
  });
  if (!reg.action('access-keys', 'changeState')?.run) {
    reg.registerAction('access-keys', 'changeState', {
      description: 'enable or disable the key (a disabled key authenticates nothing)',
      schema: ChangeState,
      run: (r, p, oc) => oc.store.update(r.uuid, { state: p.stateEvent === 'disable' ? 'Disabled' : 'Enabled' }),
    });
  }
}
