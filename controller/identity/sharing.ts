// Sharing (the manual's 共享/召回; ZStack shareResource/revokeSharing): the admin shares one of
// its resources — an image, an instance or disk offering, an L3 network, a router offering, a
// VXLAN pool — with chosen accounts or with all, and revokes it. A kind opts in with a rule in
// controller/api/collections.ts SHARE_RULES, which may narrow sharing to some of its resources
// (among L2 networks only the VXLAN pools: the admin's physical L2s are never shown) and says
// what holds until the admin decides (the catalog: shared with all, so the all-in-one works for
// a new account at once; VXLAN pools: with none). The choice rides in the internal field
// `_sharing` (controller/api/crud.ts sharedWith); what is not shared with an account is invisible
// to it: 404 to read, 400 to reference. Shared resources are read-only to the other accounts.
import { Type } from '@sinclair/typebox';
import { TStackError } from '../../shared/errors.js';
import { Obj, Uuid } from '../../shared/protocol/schema.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Sharing } from '../api/crud.js';
import type { Resource } from '../store/types.js';
import { ACCOUNT_KIND } from '../model/account.js';
import { mustKindDef } from '../model/index.js';
import { SHARE_RULES, type ShareRule } from '../api/collections.js';

/** Collections with share/revoke: every kind of SHARE_RULES but the fixed ones (zones). */
export const SHAREABLE: readonly string[] = Object.entries(SHARE_RULES).filter(([, r]) => !r.fixed).map(([k]) => mustKindDef(k).collection);

export const ShareParams = Obj({
  accountUuids: Type.Optional(Type.Array(Uuid(), { maxItems: 1024, uniqueItems: true })),
  toPublic: Type.Optional(Type.Boolean({ description: 'share with every account (revoke: with none but those listed)' })),
});

const sharingOf = (r: Resource, rule: ShareRule): Sharing => (r._sharing as Sharing | undefined) ?? { public: rule.byDefault, accountUuids: [] };

async function change(r: Resource, p: Record<string, unknown>, oc: OpContext, share: boolean): Promise<Record<string, unknown>> {
  if (r.ownerAccountUuid !== oc.adminAccountUuid) throw new TStackError('CONFLICT', `${r.kind} ${r.uuid} belongs to an account; only the admin's resources are shared`);
  const rule = SHARE_RULES[r.kind]!;
  if (rule.only && !rule.only.test(r)) throw new TStackError('CONFLICT', `${r.kind} ${r.name || r.uuid} cannot be shared: ${rule.only.why}`);
  const ids = (p.accountUuids as string[] | undefined) ?? [];
  if (!ids.length && p.toPublic !== true) throw new TStackError('INVALID_ARGUMENT', `${share ? 'share' : 'revoke'}: give accountUuids or toPublic: true`, { field: share ? 'share' : 'revoke' });
  for (const a of ids) {
    const acc = await oc.store.get(a);
    if (!acc || acc.kind !== ACCOUNT_KIND) throw new TStackError('INVALID_ARGUMENT', `${share ? 'share' : 'revoke'}.accountUuids: no account ${a}`, { field: `${share ? 'share' : 'revoke'}.accountUuids` });
  }
  const s = sharingOf(r, rule);
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
