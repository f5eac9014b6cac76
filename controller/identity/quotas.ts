// Per-account quotas on the store's quota ledger (InventoryStore.reserve): every charged
// resource of a normal account holds its charge (controller/identity/quota-defs.ts) under its
// own uuid; a create in flight holds a provisional `pending:` reservation that the resources
// it makes take over as they appear. The check and the claim are one store transaction, so
// concurrent creates never overshoot. Destroyed-but-not-expunged resources still exist and so
// still count; an expunge (the resource's delete) ends its charge.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { ACCOUNT_KIND } from '../model/account.js';
import { CHARGED_KINDS, QUOTAS, QUOTA_NAMES, chargeOf, quotaDefaults, type Charge } from './quota-defs.js';

const log = logger('quotas');

/** Per-account overrides of the defaults: doc id = account uuid. */
export const QUOTA_DOCS = 'quotas';

const PENDING = 'pending:';
/** A provisional reservation older than this belongs to a controller that died mid-create. */
const PENDING_MAX_AGE_MS = 3600_000;

export interface QuotaView {
  identityUuid: string;
  name: string;
  value: number;
  used: number;
  description: string;
}

/** The create in flight (request, then its job): resources it makes take over its reservation. */
interface Flight {
  scope: string;
  pending: string;
}

const fmt = (name: string, v: number): string => (/memorySize|capacity|\.size$/.test(name) ? `${v} bytes (${(v / 1024 ** 3).toFixed(2)} GiB)` : String(v));

export class QuotaService {
  private readonly flight = new AsyncLocalStorage<Flight>();

  constructor(
    private readonly store: InventoryStore,
    private readonly adminAccountUuid: () => string,
  ) {}

  async limits(accountUuid: string): Promise<Record<string, number>> {
    const over = (await this.store.getDoc<Record<string, number>>(QUOTA_DOCS, accountUuid)) ?? {};
    return { ...quotaDefaults(), ...over };
  }

  async list(accountUuid: string): Promise<QuotaView[]> {
    const [limits, used] = await Promise.all([this.limits(accountUuid), this.store.reserved(accountUuid)]);
    return QUOTAS.map((q) => ({ identityUuid: accountUuid, name: q.name, value: limits[q.name]!, used: Math.max(0, used[q.name] ?? 0), description: q.description }));
  }

  async update(accountUuid: string, name: string, value: number): Promise<QuotaView> {
    if (!QUOTA_NAMES.has(name)) throw new TStackError('INVALID_ARGUMENT', `updateQuota.name: unknown quota '${name}' (known: ${[...QUOTA_NAMES].join(', ')})`, { field: 'updateQuota.name' });
    const a = await this.store.get(accountUuid);
    if (!a || a.kind !== ACCOUNT_KIND) throw new TStackError('NOT_FOUND', `account ${accountUuid} not found`);
    if (a.type === 'SystemAdmin') throw new TStackError('INVALID_ARGUMENT', 'the admin account has no quotas', { field: 'updateQuota' });
    const over = (await this.store.getDoc<Record<string, number>>(QUOTA_DOCS, accountUuid)) ?? {};
    over[name] = value;
    await this.store.putDoc(QUOTA_DOCS, accountUuid, over);
    return (await this.list(accountUuid)).find((q) => q.name === name)!;
  }

  private charged(owner: string | undefined): owner is string {
    return typeof owner === 'string' && owner !== this.adminAccountUuid();
  }

  /** Reserve `charge` for `holder` within the account's limits, else QUOTA_EXCEEDED naming the quota, its value and the usage. */
  async admit(accountUuid: string, holder: string, charge: Charge): Promise<void> {
    const amounts = Object.fromEntries(Object.entries(charge).filter(([, v]) => v > 0));
    if (!Object.keys(amounts).length) return;
    const refused = await this.store.reserve({ scope: accountUuid, holder, amounts, limits: await this.limits(accountUuid) });
    if (refused) {
      const { name, limit, used, requested } = refused;
      throw new TStackError('QUOTA_EXCEEDED', `quota ${name} exceeded: the account uses ${fmt(name, used)} of ${fmt(name, limit)}, this request needs ${fmt(name, requested)} more; delete (expunge) some or ask the admin to raise it`, {
        quota: name,
        value: limit,
        used,
        requested,
      });
    }
  }

  /** Reserve a create's charge under a provisional id and run it (and what it starts) in its flight. */
  async inFlight<T>(accountUuid: string, charge: Charge, run: (pending: string) => Promise<T>): Promise<T> {
    const pending = `${PENDING}${Date.now()}:${randomUUID()}`;
    await this.admit(accountUuid, pending, charge);
    return this.flight.run({ scope: accountUuid, pending }, () => run(pending));
  }

  /** A deleted account: every holder of its ledger and its quota settings go. */
  async purge(accountUuid: string): Promise<void> {
    for (const h of await this.store.holders(accountUuid)) await this.store.unreserve(accountUuid, h.holder);
    await this.store.deleteDoc(QUOTA_DOCS, accountUuid);
  }

  async end(accountUuid: string, holder: string): Promise<void> {
    await this.store.unreserve(accountUuid, holder);
  }

  /** Make a resource's holding match what it is now (created, resized, started, stopped, re-owned). */
  async sync(r: Resource): Promise<void> {
    if (!CHARGED_KINDS.has(r.kind) || !this.charged(r.ownerAccountUuid)) return;
    const charge = chargeOf(r);
    if (!charge) return;
    const f = this.flight.getStore();
    const from = f && f.scope === r.ownerAccountUuid ? f.pending : undefined;
    await this.store.reserve({ scope: r.ownerAccountUuid, holder: r.uuid, amounts: charge, ...(from ? { from } : {}) });
  }

  /** Resource events keep the ledger in step with the inventory. */
  async onEvent(type: string, r: Resource): Promise<void> {
    if (!CHARGED_KINDS.has(r.kind) || !this.charged(r.ownerAccountUuid)) return;
    if (type === 'resource.deleted') await this.store.unreserve(r.ownerAccountUuid, r.uuid);
    else await this.sync(r);
  }

  /**
   * Repair pass (start-up, then periodically): every charged resource holds its charge;
   * holders of resources that are gone (a missed event) and stale provisional ids end.
   */
  async reconcile(): Promise<{ fixed: number }> {
    let fixed = 0;
    const accounts = (await this.store.list({ kind: ACCOUNT_KIND })).items.filter((a) => this.charged(a.uuid));
    for (const a of accounts) {
      const seen = new Set<string>();
      for (const kind of CHARGED_KINDS) {
        for (const r of (await this.store.list({ kind, ownerAccountUuid: a.uuid })).items) {
          seen.add(r.uuid);
          await this.sync(r);
        }
      }
      for (const h of await this.store.holders(a.uuid)) {
        if (h.holder.startsWith(PENDING)) {
          const t = Number(h.holder.slice(PENDING.length).split(':')[0]);
          if (Date.now() - t < PENDING_MAX_AGE_MS) continue;
        } else if (seen.has(h.holder) || (await this.store.get(h.holder))?.ownerAccountUuid === a.uuid) continue;
        await this.store.unreserve(a.uuid, h.holder);
        fixed++;
      }
    }
    if (fixed) log.info({ fixed }, 'quota ledger repaired');
    return { fixed };
  }
}
