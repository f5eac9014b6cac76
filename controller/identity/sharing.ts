// Sharing (the manual's 共享/召回): the admin shares its images, instance and disk offerings, L3
// networks and router offerings (every kind in SHARED_KINDS but zones: a kind opts in there, e.g.
// VXLAN pools) with chosen accounts or with all, and revokes them. Until the admin decides, its
// resources of these kinds are shared with all (the all-in-one catalog works for a new account
// at once). The choice rides in the internal field `_sharing` (controller/api/crud.ts sharedWith);
// what is not shared with an account is invisible to it: 404 to read, 400 to reference.
import { Type } from '@sinclair/typebox';
import { TStackError } from '../../shared/errors.js';
import { Obj, Uuid } from '../../shared/protocol/schema.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Sharing } from '../api/crud.js';
import type { Resource } from '../store/types.js';
import { ACCOUNT_KIND } from '../model/account.js';
import { mustKindDef } from '../model/index.js';
import { SHARED_KINDS } from '../api/collections.js';

/** Collections whose admin resources are shared: controller/api/collections.ts SHARED_KINDS, less zones (every account needs them). */
export const SHAREABLE: readonly string[] = SHARED_KINDS.filter((k) => k !== 'zone').map((k) => mustKindDef(k).collection);

export const ShareParams = Obj({
  accountUuids: Type.Optional(Type.Array(Uuid(), { maxItems: 1024, uniqueItems: true })),
  toPublic: Type.Optional(Type.Boolean({ description: 'share with every account (revoke: with none but those listed)' })),
});

const sharingOf = (r: Resource): Sharing => (r._sharing as Sharing | undefined) ?? { public: true, accountUuids: [] };

async function change(r: Resource, p: Record<string, unknown>, oc: OpContext, share: boolean): Promise<Record<string, unknown>> {
  if (r.ownerAccountUuid !== oc.adminAccountUuid) throw new TStackError('CONFLICT', `${r.kind} ${r.uuid} belongs to an account; only the admin's resources are shared`);
  const ids = (p.accountUuids as string[] | undefined) ?? [];
  if (!ids.length && p.toPublic !== true) throw new TStackError('INVALID_ARGUMENT', `${share ? 'share' : 'revoke'}: give accountUuids or toPublic: true`, { field: share ? 'share' : 'revoke' });
  for (const a of ids) {
    const acc = await oc.store.get(a);
    if (!acc || acc.kind !== ACCOUNT_KIND) throw new TStackError('INVALID_ARGUMENT', `${share ? 'share' : 'revoke'}.accountUuids: no account ${a}`, { field: `${share ? 'share' : 'revoke'}.accountUuids` });
  }
  const s = sharingOf(r);
  const next: Sharing = share
    ? { public: s.public || p.toPublic === true, accountUuids: [...new Set([...s.accountUuids, ...ids])] }
    : { public: p.toPublic === true ? false : s.public, accountUuids: s.accountUuids.filter((a) => !ids.includes(a)) };
  await oc.store.update(r.uuid, { _sharing: next });
  return { uuid: r.uuid, sharing: next };
}

export function registerSharing(reg: ApiRegistry): void {
  for (const col of SHAREABLE) {
    if (!reg.action(col, 'share')?.run) reg.registerAction(col, 'share', { description: 'share with accounts, or with all (toPublic)', schema: ShareParams, adminOnly: true, run: (r, p, oc) => change(r, p, oc, true) });
    if (!reg.action(col, 'revoke')?.run) reg.registerAction(col, 'revoke', { description: 'stop sharing with accounts, or with all (toPublic)', schema: ShareParams, adminOnly: true, run: (r, p, oc) => change(r, p, oc, false) });
  }
}
