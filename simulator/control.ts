// The simulator's control API (bearer token = the simulator's token file):
//   GET  /health                      no auth
//   GET  /hosts                       {hosts: [{index, managementIp, port, token, powered, vms}]}
//   GET  /stats                       {hosts, powered, vms, byState}
//   POST /hosts/<index>/power-off     stop answering (connections refused)
//   POST /hosts/<index>/power-on      answer again (a restarted agent; domains kept)
//   GET  /traffic                     requests the hosts answered since the last reset (simulator/traffic.ts)
//   POST /traffic/reset               start a new traffic window
//   PUT  /faults                      {"<command>"|"*": {latencyMs, jitterMs, failRate}}
//   POST /hosts/<index>/domains       {vmUuids, cpuNum?, memoryKiB?}: Running domains for VMs the
//                                     controller's inventory has there (a preloaded inventory)
import Koa from 'koa';
import Router from '@koa/router';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { TStackError, httpStatusOf } from '../shared/errors.js';
import { jsonBody } from '../shared/http/body.js';
import { LOWER_UUID_RE } from '../shared/protocol/schema.js';
import { validateFaults, type Simulator } from './simulator.js';

export async function startControl(sim: Simulator, token: string, host: string, port: number): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const app = new Koa();
  const router = new Router();
  const want = Buffer.from(token);
  app.use(async (ctx, next) => {
    try {
      if (ctx.path !== '/health') {
        const m = /^Bearer (.+)$/.exec(ctx.get('authorization'));
        const given = Buffer.from(m?.[1] ?? '');
        if (given.length !== want.length || !timingSafeEqual(given, want)) throw new TStackError('UNAUTHORIZED', 'missing or wrong bearer token (the simulator token file)');
      }
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new TStackError('NOT_FOUND', `no such endpoint: ${ctx.method} ${ctx.path}`);
    } catch (e) {
      const err = TStackError.from(e);
      ctx.status = httpStatusOf(err.code);
      ctx.body = err.toJSON();
    }
  });
  app.use(jsonBody({ limit: 1024 * 1024 }));
  const index = (s: string | undefined): number => {
    if (!s || !/^\d{1,6}$/.test(s)) throw new TStackError('INVALID_ARGUMENT', `host index: expected a number, got ${s}`, { field: 'index' });
    return Number(s);
  };
  router.get('/health', (ctx) => {
    ctx.body = { status: 'ok', agent: 'tstack-simulator' };
  });
  router.get('/hosts', (ctx) => {
    ctx.body = { hosts: sim.hosts.map((h) => sim.info(h)) };
  });
  router.get('/stats', (ctx) => {
    ctx.body = sim.stats();
  });
  router.get('/traffic', (ctx) => {
    ctx.body = sim.traffic.report();
  });
  router.post('/traffic/reset', (ctx) => {
    sim.traffic.reset();
    ctx.body = sim.traffic.report();
  });
  router.post('/hosts/:i/power-off', async (ctx) => {
    await sim.powerOff(index(ctx.params.i));
    ctx.body = sim.info(sim.hosts[index(ctx.params.i)]!);
  });
  router.post('/hosts/:i/power-on', async (ctx) => {
    await sim.powerOn(index(ctx.params.i));
    ctx.body = sim.info(sim.hosts[index(ctx.params.i)]!);
  });
  router.post('/hosts/:i/domains', (ctx) => {
    const i = index(ctx.params.i);
    const b = (ctx.request as { body?: unknown }).body as { vmUuids?: unknown; cpuNum?: unknown; memoryKiB?: unknown } | undefined;
    const uuids = b?.vmUuids;
    if (!Array.isArray(uuids) || uuids.length > 10_000 || !uuids.every((u) => typeof u === 'string' && LOWER_UUID_RE.test(u))) {
      throw new TStackError('INVALID_ARGUMENT', 'vmUuids: expected a list of at most 10,000 VM uuids', { field: 'vmUuids' });
    }
    const num = (v: unknown, d: number, field: string, max: number): number => {
      if (v === undefined) return d;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new TStackError('INVALID_ARGUMENT', `${field}: expected an integer from 1 to ${max}`, { field });
      return v;
    };
    sim.adopt(i, uuids as string[], { cpuNum: num(b?.cpuNum, 1, 'cpuNum', 1024), memoryKiB: num(b?.memoryKiB, 65_536, 'memoryKiB', 2 ** 32) });
    ctx.body = sim.info(sim.hosts[i]!);
  });
  router.put('/faults', (ctx) => {
    const rules = (ctx.request as { body?: unknown }).body;
    validateFaults(rules);
    sim.setFaults(rules);
    ctx.body = sim.faults;
  });
  app.use(router.routes());
  const server = createServer(app.callback());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    url: `http://${a.address}:${a.port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
