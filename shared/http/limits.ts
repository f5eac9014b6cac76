// Request limits shared by the controller and the agents (issue 20: no request may hang,
// crash or stall a server):
//  - server timeouts and header limits (slow or oversized requests are cut off by Node);
//  - a cap on requests in progress: beyond it 503 + Retry-After, while exempt paths
//    (/health) are still served;
//  - 405 + Allow for a method a path does not have (and for methods nobody implements), 204 +
//    Allow for OPTIONS, instead of the router's 501.
import type Koa from 'koa';
import type { Server, ServerOptions } from 'node:http';
import { TStackError } from '../errors.js';

export interface ServerLimits {
  /** Time to receive all headers (default 10 s). */
  headersTimeoutMs?: number;
  /** Time to receive the whole request, body included (default 60 s; 0 = none, for uploads). */
  requestTimeoutMs?: number;
  /** Header lines per request (default 100). */
  maxHeadersCount?: number;
  /** Open connections (default 1024). */
  maxConnections?: number;
}

/** Bytes of request line + headers (Node's default, stated so that it is a decision). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Options for http.createServer. */
export const serverOptions = (): ServerOptions => ({ maxHeaderSize: MAX_HEADER_BYTES });

export function applyServerLimits(server: Server, l: ServerLimits = {}): void {
  server.headersTimeout = l.headersTimeoutMs ?? 10_000;
  server.requestTimeout = l.requestTimeoutMs ?? 60_000;
  server.maxHeadersCount = l.maxHeadersCount ?? 100;
  server.maxConnections = l.maxConnections ?? 1024;
}

export interface ConcurrencyLimit {
  /** Requests in progress at once (not counting exempt ones). */
  max: number;
  /** Seconds a refused client should wait (Retry-After, default 1). */
  retryAfterS?: number;
  /** Requests that never wait for a slot (health checks). */
  exempt?: (ctx: Koa.Context) => boolean;
}

/** Refuse (503 BUSY + Retry-After) what exceeds `max` requests in progress. */
export function concurrencyLimit(o: ConcurrencyLimit): Koa.Middleware & { inFlight: () => number } {
  let inFlight = 0;
  const mw = async (ctx: Koa.Context, next: Koa.Next): Promise<void> => {
    if (o.exempt?.(ctx)) return next();
    if (inFlight >= o.max) {
      ctx.set('Retry-After', String(o.retryAfterS ?? 1));
      throw new TStackError('BUSY', `the server is busy (${inFlight} requests in progress); retry in ${o.retryAfterS ?? 1} s`);
    }
    inFlight++;
    try {
      await next();
    } finally {
      inFlight--;
    }
  };
  return Object.assign(mw, { inFlight: () => inFlight });
}

/**
 * After the router: a path that exists but not for this method is 405 with `Allow`; OPTIONS on
 * it is 204 with `Allow`. Paths nobody serves stay 404.
 */
export function allowedMethods(): Koa.Middleware {
  return async (ctx, next) => {
    await next();
    if (ctx.status !== 404 || ctx.body !== undefined) return;
    const matched = (ctx as { matched?: Array<{ methods: string[] }> }).matched ?? [];
    const allow = [...new Set(matched.flatMap((l) => l.methods))];
    if (allow.length === 0) return;
    ctx.set('Allow', allow.join(', '));
    if (ctx.method === 'OPTIONS') {
      ctx.status = 204;
      return;
    }
    throw new TStackError('METHOD_NOT_ALLOWED', `${ctx.method} is not supported on ${ctx.path} (allowed: ${allow.join(', ')})`);
  };
}

/**
 * At most `max` runs of expensive work at once (password hashing: scrypt holds a libuv thread
 * for its whole run), at most `queue` more waiting; beyond that 503 BUSY + Retry-After via the
 * thrown error, so a flood of logins cannot take every thread-pool thread.
 */
export class WorkGate {
  private running = 0;
  private waiting: Array<() => void> = [];

  constructor(
    private readonly max: number,
    private readonly queue: number,
    private readonly what: string,
  ) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.queue) throw new TStackError('BUSY', `too many ${this.what} in progress; retry in 1 s`, { retryAfterS: 1 });
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      return await fn();
    } finally {
      // hand the slot straight to the next waiter (running stays the same) or free it
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
