// Deleting an account (issue 18): a job that deletes everything the account owns through the
// normal handlers — VMs destroyed and expunged (domain off its host, volumes, IPs and MACs
// released), then services, volumes, networks, images, identity records — and then the account.
//
// The account first turns `Deleting` (no logins, its sessions and keys stop working, no
// enable), so nothing new appears while it is emptied. Resources are taken in dependency order
// (DELETE_ORDER), in rounds: one that refuses (a dependent not gone yet) is tried again next
// round. A round that deletes nothing ends the job Failed with what remains and why; the
// account stays `Deleting` with every remaining resource intact in its normal state, and
// DELETE again resumes. Usage in the quota ledger ends with the resources (resource events);
// what is left of the account's ledger and its quota settings go with the account.
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import { genericDelete } from '../api/crud.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import { AuthService } from '../auth/accounts.js';
import { ACCOUNT_KIND } from '../model/account.js';
import type { Resource } from '../store/types.js';
import { QuotaService } from './quotas.js';

const log = logger('identity');

/**
 * Kinds in the order they go (earlier first); kinds not listed go after these, in one group.
 * Services on a VIP before the VIP, VMs before their volumes and networks, networks after
 * everything attached to them, identity records last (a failure leaves the users able to see
 * what remains once the admin re-enables nothing: the account stays Deleting).
 */
export const DELETE_ORDER: readonly string[][] = [
  ['port-forwarding-rule', 'eip', 'load-balancer-listener'],
  ['load-balancer'],
  ['vm-instance'],
  ['volume-snapshot'],
  ['volume'],
  ['vip'],
  ['vpc-router'],
  ['security-group', 'affinity-group'],
  ['image'],
  ['alarm', 'event-subscription', 'sns-endpoint', 'sns-topic'],
  ['l3-network'],
  ['ip-range'],
  ['l2-network'],
];
const LAST = ['access-key', 'policy', 'user-group', 'user'];
/** Made and removed by their owners' handlers (a VM's NICs and root volume, a topic's deliveries): never deleted directly. */
const OWNED_BY_OTHERS = new Set(['vm-nic', 'sns-delivery']);
const goesWithOther = (r: Resource): boolean => OWNED_BY_OTHERS.has(r.kind) || (r.kind === 'volume' && r.type === 'Root');

function rank(kind: string): number {
  const i = DELETE_ORDER.findIndex((g) => g.includes(kind));
  if (i >= 0) return i;
  return LAST.includes(kind) ? DELETE_ORDER.length + 1 : DELETE_ORDER.length;
}

/** Everything the account owns, in delete order (kinds of the registry). */
async function owned(oc: OpContext, accountUuid: string): Promise<Resource[]> {
  const out: Resource[] = [];
  for (const c of oc.registry.collections()) {
    if (c.kind === ACCOUNT_KIND) continue;
    out.push(...(await oc.store.list({ kind: c.kind, ownerAccountUuid: accountUuid })).items);
  }
  return out.sort((a, b) => rank(a.kind) - rank(b.kind));
}

/** Delete one resource the way the API would (as the admin, no job of its own). */
async function deleteOne(r: Resource, oc: OpContext, reg: ApiRegistry): Promise<void> {
  const spec = reg.byKind(r.kind);
  if (!spec) throw new TStackError('INTERNAL', `no collection for kind ${r.kind}`);
  if (r.kind === 'vm-instance') {
    // DELETE destroys (recoverable); expunge removes it for good
    if (r.state !== 'Destroyed') await spec.remove!.run(r, {}, oc);
    const expunge = reg.action('vm-instances', 'expunge')?.run;
    if (!expunge) throw new TStackError('INTERNAL', 'vm-instances.expunge is not served');
    const cur = await oc.store.get(r.uuid);
    if (cur) await expunge(cur, {}, oc);
    return;
  }
  if (spec.remove) await spec.remove.run(r, {}, oc);
  else await genericDelete(spec, r, oc, {});
}

export interface DeleteAccountResult {
  uuid: string;
  name: string;
  deleted: number;
}

/** The accounts DELETE handler (long): empty the account, then delete it. */
export async function deleteAccount(account: Resource, oc: OpContext): Promise<DeleteAccountResult> {
  if (account.uuid === oc.principal.accountUuid) throw new TStackError('CONFLICT', 'you cannot delete your own account');
  if (account.type === 'SystemAdmin') throw new TStackError('CONFLICT', 'the admin account cannot be deleted');
  const auth = new AuthService(oc.store);
  if (account.state !== 'Deleting') await oc.store.update(account.uuid, { state: 'Deleting' });
  await auth.revokeSessions(account.uuid);
  // nested operations run as the admin, without this job's handle (their flows get their own ids)
  const { job, ...base } = oc;
  const asAdmin: OpContext = { ...base, principal: { accountUuid: oc.adminAccountUuid, accountName: 'admin', isAdmin: true, sessionId: `account-delete:${account.uuid}` } };
  const total = (await owned(oc, account.uuid)).filter((r) => !goesWithOther(r)).length;
  let deleted = 0;
  job?.progress(1, `deleting ${total} resource(s) of account ${account.name}`);
  for (let round = 1; ; round++) {
    const todo = (await owned(oc, account.uuid)).filter((r) => !goesWithOther(r));
    if (todo.length === 0) break;
    const failures: Array<{ kind: string; uuid: string; name: string; error: string }> = [];
    let progressed = false;
    for (const r of todo) {
      const cur = await oc.store.get(r.uuid);
      if (!cur || cur.ownerAccountUuid !== account.uuid) continue; // went with an earlier one
      job?.progress(Math.min(98, 1 + Math.floor((deleted * 97) / Math.max(1, total))), `deleting ${r.kind} ${r.name || r.uuid}`);
      try {
        await deleteOne(cur, asAdmin, oc.registry);
        deleted++;
        progressed = true;
      } catch (e) {
        const err = TStackError.from(e);
        failures.push({ kind: r.kind, uuid: r.uuid, name: r.name, error: `${err.code}: ${err.message}` });
      }
    }
    if (failures.length && !progressed) {
      log.warn({ account: account.uuid, round, failures }, 'account delete stopped: resources refuse to go');
      const first = failures.slice(0, 3).map((f) => `${f.kind} ${f.name || f.uuid} (${f.error})`).join('; ');
      throw new TStackError('CONFLICT', `account '${account.name}' is Deleting: ${deleted} resource(s) deleted, ${failures.length} could not be: ${first}. Fix the cause and DELETE the account again to resume`, {
        remaining: failures,
      });
    }
  }
  job?.progress(99, 'deleting the account');
  const q = new QuotaService(oc.store, () => oc.adminAccountUuid);
  await q.purge(account.uuid);
  const kinds = oc.registry.collections().map((c) => c.kind).filter((k) => k !== ACCOUNT_KIND);
  await auth.deleteAccount(account.uuid, kinds);
  log.info({ account: account.uuid, name: account.name, deleted }, 'account deleted with its resources');
  return { uuid: account.uuid, name: account.name, deleted };
}
