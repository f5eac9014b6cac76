// GET /v1/events: a Server-Sent Events stream of resource changes and job progress, filtered
// per account (admin sees everything). `?types=resource.created,job.finished` and
// `?kinds=zone,vm-instance` narrow it. Each event: `id: <n>`, `event: <type>`, `data: <json>`.
import { PassThrough } from 'node:stream';
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

export function sseHandler(bus: EventBus, heartbeatMs = 15_000): Koa.Middleware {
  return (ctx) => {
    const p = ctx.state.principal as Principal;
    const types = list(ctx.query.types);
    const kinds = list(ctx.query.kinds);
    ctx.req.socket.setTimeout(0);
    ctx.req.socket.setNoDelay(true);
    ctx.req.socket.setKeepAlive(true);
    ctx.set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    ctx.status = 200;
    const stream = new PassThrough();
    ctx.body = stream;
    stream.write(': tstack event stream\n\n');
    const unsubscribe = bus.subscribe((e) => {
      if (!eventVisible(p, e)) return;
      if (types && !types.includes(e.type)) return;
      if (kinds && 'kind' in e && !kinds.includes(e.kind)) return;
      if (kinds && !('kind' in e) && !kinds.includes('job')) return;
      stream.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(outward(e))}\n\n`);
    });
    const hb = setInterval(() => stream.write(': keep-alive\n\n'), heartbeatMs);
    hb.unref();
    const end = (): void => {
      clearInterval(hb);
      unsubscribe();
      stream.end();
    };
    ctx.req.once('close', end);
    ctx.res.once('close', end);
  };
}
