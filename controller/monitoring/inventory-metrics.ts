// Metrics only the controller knows (from the inventory, not from an agent), in ZStack's names:
//
//   ZStack/L3Network       {Used,Available}IpIn{Number,Percent}, TotalIpInNumber     label L3NetworkUuid
//   ZStack/PrimaryStorage  {Available,Used}CapacityIn{Bytes,Percent}, TotalCapacityInBytes
//                                                                                  label PrimaryStorageUuid
//   ZStack/BackupStorage   the same                                                label BackupStorageUuid
//
// Served at GET /v1/metrics/export to the controller's Prometheus (a scrape job of its own,
// bearer token written next to the agents' tokens) and computed per scrape: the inventory is
// the source of truth, nothing is sampled in between.
import { timingSafeEqual } from 'node:crypto';
import type Koa from 'koa';
import Router from '@koa/router';
import client from 'prom-client';
import { TStackError } from '../../shared/errors.js';
import { promName } from '../../shared/metric-names.js';
import { ipCapacity } from '../allocator/ip.js';
import type { AuthService } from '../auth/accounts.js';
import type { InventoryStore, Resource } from '../store/types.js';

const CAPACITY = ['AvailableCapacityInPercent', 'AvailableCapacityInBytes', 'UsedCapacityInPercent', 'UsedCapacityInBytes', 'TotalCapacityInBytes'] as const;

export const INVENTORY_METRICS: Readonly<Record<string, readonly string[]>> = {
  'ZStack/L3Network': ['UsedIpInPercent', 'UsedIpInNumber', 'AvailableIpInPercent', 'AvailableIpInNumber', 'TotalIpInNumber'],
  'ZStack/PrimaryStorage': CAPACITY,
  'ZStack/BackupStorage': CAPACITY,
};

export interface InventorySample {
  namespace: string;
  metricName: string;
  labels: Record<string, string>;
  value: number;
}

const pct = (part: number, total: number): number => (total > 0 ? Math.round((part / total) * 10_000) / 100 : 0);

/** Capacity samples of one storage (none when it has not reported a capacity yet). Pure. */
export function capacitySamples(namespace: 'ZStack/PrimaryStorage' | 'ZStack/BackupStorage', r: Resource): InventorySample[] {
  const total = Number(r.totalCapacity);
  const avail = Number(r.availableCapacity);
  if (!Number.isFinite(total) || total <= 0 || !Number.isFinite(avail)) return [];
  const labels = { [namespace === 'ZStack/PrimaryStorage' ? 'PrimaryStorageUuid' : 'BackupStorageUuid']: r.uuid };
  const used = Math.max(0, total - avail);
  const v: Record<(typeof CAPACITY)[number], number> = {
    AvailableCapacityInPercent: pct(avail, total),
    AvailableCapacityInBytes: avail,
    UsedCapacityInPercent: pct(used, total),
    UsedCapacityInBytes: used,
    TotalCapacityInBytes: total,
  };
  return CAPACITY.map((metricName) => ({ namespace, metricName, labels, value: v[metricName] }));
}

/** IP samples of one L3 given its counts. Pure. */
export function ipSamples(l3NetworkUuid: string, c: { total: number; used: number; available: number }): InventorySample[] {
  const labels = { L3NetworkUuid: l3NetworkUuid };
  const v: Record<string, number> = {
    UsedIpInPercent: pct(c.used, c.total),
    UsedIpInNumber: c.used,
    AvailableIpInPercent: pct(c.available, c.total),
    AvailableIpInNumber: c.available,
    TotalIpInNumber: c.total,
  };
  return INVENTORY_METRICS['ZStack/L3Network']!.map((metricName) => ({ namespace: 'ZStack/L3Network', metricName, labels, value: v[metricName]! }));
}

/** Every inventory sample now. */
export async function inventorySamples(store: InventoryStore): Promise<InventorySample[]> {
  const out: InventorySample[] = [];
  for (const l3 of (await store.list({ kind: 'l3-network', limit: 100_000 })).items) {
    // an L3 without ranges has nothing to count (and its allocator view may refuse)
    const c = await ipCapacity(store, l3.uuid).catch(() => undefined);
    if (c) out.push(...ipSamples(l3.uuid, c));
  }
  for (const ps of (await store.list({ kind: 'primary-storage', limit: 100_000 })).items) out.push(...capacitySamples('ZStack/PrimaryStorage', ps));
  for (const bs of (await store.list({ kind: 'backup-storage', limit: 100_000 })).items) out.push(...capacitySamples('ZStack/BackupStorage', bs));
  return out;
}

/** The samples in Prometheus' text format (prom-client does the escaping). */
export async function renderSamples(samples: InventorySample[]): Promise<{ contentType: string; text: string }> {
  const registry = new client.Registry();
  const gauges = new Map<string, client.Gauge>();
  for (const s of samples) {
    const name = promName(s.namespace, s.metricName);
    let g = gauges.get(name);
    if (!g) {
      g = new client.Gauge({ name, help: `${s.namespace} ${s.metricName} (tstack controller, from the inventory)`, labelNames: Object.keys(s.labels), registers: [registry] });
      gauges.set(name, g);
    }
    g.set(s.labels, s.value);
  }
  return { contentType: registry.contentType, text: await registry.metrics() };
}

/** GET /v1/metrics/export: the scrape token (its Prometheus) or an admin session. */
export function exportRoute(d: { auth: AuthService; store: InventoryStore; token: string }): Koa.Middleware {
  const router = new Router();
  router.get('/v1/metrics/export', async (ctx) => {
    const t = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'))?.[1];
    const tokenOk = t !== undefined && t.length === d.token.length && timingSafeEqual(Buffer.from(t), Buffer.from(d.token));
    if (!tokenOk) {
      const p = await d.auth.authenticate(t);
      ctx.state.principal = p;
      if (!p.isAdmin) throw new TStackError('FORBIDDEN', '/v1/metrics/export needs an admin session or the scrape token');
    }
    const r = await renderSamples(await inventorySamples(d.store));
    ctx.type = r.contentType;
    ctx.body = r.text;
  });
  return router.routes() as Koa.Middleware;
}
