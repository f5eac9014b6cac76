// GET /v1/events: a Server-Sent Events stream of resource changes and job progress, filtered
// per account (admin sees everything). `?types=resource.created,job.finished` and
// `?kinds=zone,vm-instance` narrow it. Each event: `id: <epoch>.<n>`, `event: <type>`,
// `data: <json>`. Reconnecting with Last-Event-ID replays what was missed (or sends `resync`).
import type Koa from 'koa';
import type { Principal } from '../auth/accounts.js';
import type { ApiEvent, EventBus, NumberedEvent } from './bus.js';

const list = (v: unknown): string[] | undefined => {
  if (typeof v !== 'string' || v === '') return undefined;
  return v.split(',').map((s) => s.trim()).filter(Boolean);
};

export function eventVisible(p: Principal, e: ApiEvent): boolean {
  if (p.isAdmin) return true;
  return e.type.startsWith('job.') ? (e as { accountUuid: string }).accountUuid === p.accountUuid : (e as { ownerAccountUuid: string }).ownerAccountUuid === p.accountUuid;
}

/** Strip internal fields of the resource in an event. */
function outward(e: NumberedEvent): unknown {
  const { id: _id, ...rest } = e;
  if (!('resource' in rest)) return rest;
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest.resource)) if (!k.startsWith('_')) r[k] = v;
  return { ...rest, resource: r };
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
    // HEAD: Node drops body writes and so never sends the head either; without this end() the
    // connection would stay open, silent, for good (found by the API fuzz)
    if (ctx.method === 'HEAD') {
      res.end();
      return;
    }
    const write = (s: string): void => {
      if (!res.writableEnded && !res.destroyed) res.write(s);
    };
    write(': tstack event stream\nretry: 2000\n\n');
    const send = (e: NumberedEvent): void => {
      if (!eventVisible(p, e) && !(canSee?.(p, e) ?? false)) return;
      if (types && !types.includes(e.type)) return;
      if (kinds && 'kind' in e && !kinds.includes(e.kind)) return;
      if (kinds && !('kind' in e) && !kinds.includes('job')) return;
      write(`id: ${bus.epoch}.${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(outward(e))}\n\n`);
    };
    // a reconnecting client gets what it missed, or `resync` when that is no longer known
    const last = ctx.get('last-event-id') || (typeof ctx.query.lastEventId === 'string' ? ctx.query.lastEventId : '');
    if (last) {
      const missed = bus.since(last);
      if (missed) missed.forEach(send);
      else write(`event: resync\ndata: ${JSON.stringify({ reason: 'events after ' + last + ' are no longer available (controller restarted or too long ago); re-read the resources you watch' })}\n\n`);
    }
    const unsubscribe = bus.subscribe(send);
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
