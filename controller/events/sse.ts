// GET /v1/events: a Server-Sent Events stream of resource changes and job progress, filtered
// per account (admin sees everything). `?types=resource.created,job.finished` and
// `?kinds=zone,vm-instance` narrow it. Each event: `id: <n>`, `event: <type>`, `data: <json>`.
import type Koa from 'koa';
import type { Principal } from '../auth/accounts.js';
import type { ApiEvent, EventBus } from './bus.js';

const list = (v: unknown): string[] | undefined => {
  if (typeof v !== 'string' || v === '') return undefined;
  return v.split(',').map((s) => s.trim()).filter(Boolean);
};

export function eventVisible(p: Principal, e: ApiEvent): boolean {
  if (p.isAdmin) return true;
  return e.type.startsWith('job.') ? (e as { accountUuid: string }).accountUuid === p.accountUuid : (e as { ownerAccountUuid: string }).ownerAccountUuid === p.accountUuid;
}

/** Strip internal fields of the resource in an event. */
function outward(e: ApiEvent & { id: number }): unknown {
  if (!('resource' in e)) return e;
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e.resource)) if (!k.startsWith('_')) r[k] = v;
  return { ...e, resource: r };
}

/**
 * `canSee` widens what a normal account receives beyond its own resources (the admin's shared
 * catalog: the same rule as GET).
 */
export function sseHandler(bus: EventBus, heartbeatMs = 15_000, canSee?: (p: Principal, e: ApiEvent) => boolean): Koa.Middleware {
  return (ctx) => {
    const p = ctx.state.principal as Principal;
    const types = list(ctx.query.types);
    const kinds = list(ctx.query.kinds);
    ctx.req.socket.setTimeout(0);
    ctx.req.socket.setNoDelay(true);
    ctx.req.socket.setKeepAlive(true);
    // write to the raw response: Koa's stream piping reports a client going away as an error
    ctx.status = 200;
    ctx.respond = false;
    const res = ctx.res;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    const write = (s: string): void => {
      if (!res.writableEnded && !res.destroyed) res.write(s);
    };
    write(': tstack event stream\n\n');
    const unsubscribe = bus.subscribe((e) => {
      if (!eventVisible(p, e) && !(canSee?.(p, e) ?? false)) return;
      if (types && !types.includes(e.type)) return;
      if (kinds && 'kind' in e && !kinds.includes(e.kind)) return;
      if (kinds && !('kind' in e) && !kinds.includes('job')) return;
      write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(outward(e))}\n\n`);
    });
    const hb = setInterval(() => write(': keep-alive\n\n'), heartbeatMs);
    hb.unref();
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      clearInterval(hb);
      unsubscribe();
      if (!res.writableEnded) res.end();
    };
    ctx.req.once('close', end);
    ctx.res.once('close', end);
  };
}
