// Failed-login rate limiting (issue 18): after `maxFailures` failed logins within `windowMs`
// for one account name, or from one client address, further logins for it are refused with
// 429 + Retry-After until the window has passed — before any password is checked. A success
// clears the account name's count. Counts are per controller process (several controllers on
// one Redis each count their own).
import type Koa from 'koa';
import { TStackError } from '../../shared/errors.js';

export interface LoginLimitOptions {
  /** Failures allowed within the window (default 5). */
  maxFailures?: number;
  /** Default 5 minutes. */
  windowMs?: number;
}

export class LoginLimiter {
  private readonly fails = new Map<string, number[]>();
  readonly max: number;
  readonly windowMs: number;

  constructor(o: LoginLimitOptions = {}) {
    this.max = o.maxFailures ?? 5;
    this.windowMs = o.windowMs ?? 300_000;
  }

  private recent(key: string, now: number): number[] {
    const xs = (this.fails.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (xs.length) this.fails.set(key, xs);
    else this.fails.delete(key);
    return xs;
  }

  /** Seconds to wait, or 0 when a login may be tried. */
  retryAfter(keys: string[], now = Date.now()): number {
    let wait = 0;
    for (const k of keys) {
      const xs = this.recent(k, now);
      if (xs.length >= this.max) wait = Math.max(wait, Math.ceil((xs[xs.length - this.max]! + this.windowMs - now) / 1000));
    }
    return wait;
  }

  failed(keys: string[], now = Date.now()): void {
    for (const k of keys) this.fails.set(k, [...this.recent(k, now), now].slice(-this.max * 2));
    if (this.fails.size > 100_000) this.fails.clear(); // a flood of made-up names must not grow memory forever
  }

  succeeded(key: string): void {
    this.fails.delete(key);
  }
}

export function loginLimitMiddleware(l: LoginLimiter): Koa.Middleware {
  return async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== '/v1/sessions') return next();
    const body = (ctx.request as { body?: unknown }).body as Record<string, unknown> | undefined;
    const name = typeof body?.accountName === 'string' ? body.accountName.slice(0, 64) : '';
    const user = typeof body?.userName === 'string' ? `/${body.userName.slice(0, 64)}` : '';
    const keys = [`ip:${ctx.ip}`, `account:${name}${user}`];
    const wait = l.retryAfter(keys);
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      throw new TStackError('RATE_LIMITED', `too many failed logins for this account or from this address; try again in ${wait} s`, { retryAfterSeconds: wait });
    }
    try {
      await next();
    } catch (e) {
      if (e instanceof TStackError && e.code === 'UNAUTHORIZED') l.failed(keys);
      throw e;
    }
    if (ctx.status === 200) l.succeeded(keys[1]!);
  };
}
