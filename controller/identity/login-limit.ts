// Failed-login rate limiting (issue 18): after `maxFailures` failed logins within `windowMs`
// for one account name, or from one client address, further logins for it are refused with
// 429 + Retry-After until the window has passed — before any password is checked. A success
// clears the account name's count. With a store, the counts are store docs shared by every
// controller on it (SQLite or Redis); a read-modify-write, so two failures at the same instant
// on two controllers may count once: the limit is approximate under races, never skipped.
import { createHash } from 'node:crypto';
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore } from '../store/types.js';
import { withReadStance } from '../api/read-path.js';

export interface LoginLimitOptions {
  /** Failures allowed within the window (default 5). */
  maxFailures?: number;
  /** Default 5 minutes. */
  windowMs?: number;
}

const FAIL_DOCS = 'login-failures';
const docId = (key: string): string => createHash('sha256').update(key).digest('hex');

export class LoginLimiter {
  private readonly fails = new Map<string, number[]>();
  private gcAt = 0;
  readonly max: number;
  readonly windowMs: number;

  constructor(
    o: LoginLimitOptions = {},
    private readonly store?: InventoryStore,
  ) {
    this.max = o.maxFailures ?? 5;
    this.windowMs = o.windowMs ?? 300_000;
  }

  private async times(key: string): Promise<number[]> {
    if (!this.store) return this.fails.get(key) ?? [];
    return (await this.store.getDoc<{ t: number[] }>(FAIL_DOCS, docId(key)))?.t ?? [];
  }

  private async save(key: string, xs: number[]): Promise<void> {
    if (!this.store) {
      if (xs.length) this.fails.set(key, xs);
      else this.fails.delete(key);
      if (this.fails.size > 100_000) this.fails.clear(); // a flood of made-up names must not grow memory forever
      return;
    }
    if (xs.length) await this.store.putDoc(FAIL_DOCS, docId(key), { t: xs });
    else await this.store.deleteDoc(FAIL_DOCS, docId(key));
  }

  private async recent(key: string, now: number): Promise<number[]> {
    return (await this.times(key)).filter((t) => now - t < this.windowMs);
  }

  /** Seconds to wait, or 0 when a login may be tried. */
  async retryAfter(keys: string[], now = Date.now()): Promise<number> {
    let wait = 0;
    for (const k of keys) {
      const xs = await this.recent(k, now);
      if (xs.length >= this.max) wait = Math.max(wait, Math.ceil((xs[xs.length - this.max]! + this.windowMs - now) / 1000));
    }
    return wait;
  }

  async failed(keys: string[], now = Date.now()): Promise<void> {
    for (const k of keys) await this.save(k, [...(await this.recent(k, now)), now].slice(-this.max * 2));
    await this.gc(now);
  }

  async succeeded(key: string): Promise<void> {
    await this.save(key, []);
  }

  /** Store docs of names nobody tries again (a flood of made-up names): dropped once a window. */
  private async gc(now: number): Promise<void> {
    if (!this.store || now - this.gcAt < this.windowMs) return;
    this.gcAt = now;
    for (const { id, doc } of await this.store.listDocs<{ t: number[] }>(FAIL_DOCS)) {
      if (!doc.t?.some((t) => now - t < this.windowMs)) await this.store.deleteDoc(FAIL_DOCS, id);
    }
  }
}

export function loginLimitMiddleware(l: LoginLimiter): Koa.Middleware {
  return withReadStance(async (ctx: Koa.Context, next: Koa.Next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/v1/sessions') return next();
    const body = (ctx.request as { body?: unknown }).body as Record<string, unknown> | undefined;
    const name = typeof body?.accountName === 'string' ? body.accountName.slice(0, 64) : '';
    const user = typeof body?.userName === 'string' ? `/${body.userName.slice(0, 64)}` : '';
    const keys = [`ip:${ctx.ip}`, `account:${name}${user}`];
    const wait = await l.retryAfter(keys);
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      throw new TStackError('RATE_LIMITED', `too many failed logins for this account or from this address; try again in ${wait} s`, { retryAfterSeconds: wait });
    }
    try {
      await next();
    } catch (e) {
      if (e instanceof TStackError && e.code === 'UNAUTHORIZED') await l.failed(keys);
      throw e;
    }
    if (ctx.status === 200) await l.succeeded(keys[1]!);
  }, { reads: 'ignores' }); // logins only
}
