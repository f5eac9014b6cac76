// GET /v1/metrics?namespace=&metricName=&labels=K=V[,K=V]&startTime=&endTime=&period=
//   → {data: [{time, value, labels}]} (ZStack's GetMetricData shape; times in epoch seconds)
// GET /v1/metrics/names?namespace= → {names: [...]}
// Normal accounts may read ZStack/VM metrics of their own VMs only.
import type Koa from 'koa';
import Router from '@koa/router';
import { TStackError } from '../../shared/errors.js';
import { METRIC_NAMESPACES, fromPromName, promName } from '../../shared/metric-names.js';
import type { AuthService, Principal } from '../auth/accounts.js';
import type { InventoryStore } from '../store/types.js';
import type { PrometheusManager } from './prometheus.js';
import { INVENTORY_METRICS } from './inventory-metrics.js';

/** Metric names tstack's agents export, by namespace (listed even before the first sample). */
export const KNOWN_METRICS: Readonly<Record<string, readonly string[]>> = {
  'ZStack/VM': ['CPUAverageUsedUtilization', 'CPUUsedUtilization', 'MemoryUsedBytes', 'MemoryFreeBytes', 'MemoryUsedInPercent', 'DiskReadBytes', 'DiskWriteBytes', 'DiskReadOps', 'DiskWriteOps', 'NetworkInBytes', 'NetworkOutBytes', 'NetworkInPackets', 'NetworkOutPackets', 'NetworkInErrors', 'NetworkOutErrors'],
  'ZStack/Host': ['CPUAverageUsedUtilization', 'CPUUsedUtilization', 'MemoryUsedBytes', 'MemoryFreeBytes', 'MemoryUsedInPercent', 'DiskReadBytes', 'DiskWriteBytes', 'DiskReadOps', 'DiskWriteOps', 'NetworkInBytes', 'NetworkOutBytes', 'NetworkInPackets', 'NetworkOutPackets', 'NetworkInErrors', 'NetworkOutErrors'],
  'ZStack/VIP': ['VIPInBoundTrafficInBytes', 'VIPInBoundTrafficInPackages', 'VIPOutBoundTrafficInBytes', 'VIPOutBoundTrafficInPackages'],
  ...INVENTORY_METRICS,
};

const LABEL_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Labels Prometheus or the exporter add that are not the metric's own. */
const NOISE = new Set(['__name__', 'job', 'instance', 'component']);

const bad = (field: string, msg: string): TStackError => new TStackError('INVALID_ARGUMENT', `${field}: ${msg}`, { field });

/** A PromQL string literal (JSON's escaping is a subset PromQL reads the same). */
const lit = (v: string): string => {
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\x00-\x1f]/.test(v)) throw bad('labels', 'control characters are not allowed in label values');
  return JSON.stringify(v);
};

export interface Selector {
  namespace: string;
  metricName: string;
  labels: Array<{ key: string; op: '=' | '!=' | '=~'; value: string }>;
}

/** `ZStack_VM_X{K="V",…}` (validated; values escaped). */
export function selector(s: Selector): string {
  let name: string;
  try {
    name = promName(s.namespace, s.metricName);
  } catch (e) {
    throw bad((e as Error).message.includes('namespace') ? 'namespace' : 'metricName', (e as Error).message);
  }
  const parts = s.labels.map((l) => {
    if (!LABEL_RE.test(l.key)) throw bad('labels', `'${l.key}' is not a label name`);
    return `${l.key}${l.op}${lit(l.value)}`;
  });
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}

/** `K=V,K2=V2` (also given as repeated labels=). */
export function parseLabels(raw: string | string[] | undefined): Selector['labels'] {
  const items = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).flatMap((x) => x.split(',')).filter((x) => x !== '');
  return items.map((it) => {
    const i = it.indexOf('=');
    if (i <= 0) throw bad('labels', `expected K=V, got '${it}'`);
    return { key: it.slice(0, i), op: '=' as const, value: it.slice(i + 1) };
  });
}

const one = (q: Record<string, unknown>, k: string): string | undefined => {
  const v = q[k];
  if (Array.isArray(v)) throw bad(k, 'given more than once');
  return typeof v === 'string' && v !== '' ? v : undefined;
};

const seconds = (k: string, v: string | undefined, dflt: number): number => {
  if (v === undefined) return dflt;
  if (!/^\d+(\.\d+)?$/.test(v)) throw bad(k, `expected epoch seconds, got '${v}'`);
  const n = Number(v);
  // epoch milliseconds are accepted too (ZStack clients send either)
  return n > 1e11 ? n / 1000 : n;
};

export function metricsRoutes(d: { auth: AuthService; store: InventoryStore; prometheus: () => PrometheusManager | undefined }): Koa.Middleware {
  const router = new Router();
  const principal = async (ctx: Koa.Context): Promise<Principal> => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    const p = await d.auth.authenticate(m?.[1]);
    ctx.state.principal = p;
    return p;
  };
  const prom = (): PrometheusManager => {
    const p = d.prometheus();
    if (!p) throw new TStackError('AGENT_UNREACHABLE', 'the metrics store (Prometheus) is not running on this controller');
    return p;
  };

  router.get('/v1/metrics/names', async (ctx) => {
    await principal(ctx);
    const ns = one(ctx.query, 'namespace');
    if (ns !== undefined && !(METRIC_NAMESPACES as readonly string[]).includes(ns)) throw bad('namespace', `one of ${METRIC_NAMESPACES.join(', ')}`);
    const found = (await d.prometheus()?.seriesNames()) ?? [];
    const names = new Set<string>();
    for (const [n, list] of Object.entries(KNOWN_METRICS)) if (!ns || n === ns) for (const m of list) names.add(`${n}|${m}`);
    for (const s of found) {
      const f = fromPromName(s);
      if (f && (!ns || f.namespace === ns)) names.add(`${f.namespace}|${f.metricName}`);
    }
    ctx.body = { names: [...names].sort().map((x) => ({ namespace: x.split('|')[0], name: x.split('|')[1] })) };
  });

  router.get('/v1/metrics', async (ctx) => {
    const p = await principal(ctx);
    const q = ctx.query as Record<string, unknown>;
    for (const k of Object.keys(q)) if (!['namespace', 'metricName', 'labels', 'startTime', 'endTime', 'period'].includes(k)) throw bad(k, 'unknown query parameter (namespace, metricName, labels, startTime, endTime, period)');
    const namespace = one(q, 'namespace');
    const metricName = one(q, 'metricName');
    if (!namespace) throw bad('namespace', 'required');
    if (!metricName) throw bad('metricName', 'required');
    const labels = parseLabels(q.labels as string | string[] | undefined);
    const now = Date.now() / 1000;
    const end = seconds('endTime', one(q, 'endTime'), now);
    const start = seconds('startTime', one(q, 'startTime'), end - 600);
    const period = seconds('period', one(q, 'period'), 60);
    if (period < 1) throw bad('period', 'at least 1 second');
    if (start > end) throw bad('startTime', 'after endTime');
    if ((end - start) / period > 11_000) throw bad('period', 'too many points: widen the period or narrow the time range');
    if (!p.isAdmin) {
      if (namespace !== 'ZStack/VM') throw new TStackError('FORBIDDEN', `only the admin may read ${namespace} metrics`);
      const vms = await d.store.list({ kind: 'vm-instance', ownerAccountUuid: p.accountUuid, limit: 10_000 });
      if (vms.items.length === 0) {
        ctx.body = { data: [] };
        return;
      }
      labels.push({ key: 'VMUuid', op: '=~', value: vms.items.map((v) => v.uuid).join('|') });
    }
    const series = await prom().queryRange(selector({ namespace, metricName, labels }), start, end, period);
    const data: Array<{ time: number; value: number; labels: Record<string, string> }> = [];
    for (const s of series) {
      const l = Object.fromEntries(Object.entries(s.metric).filter(([k]) => !NOISE.has(k)));
      for (const [t, v] of s.values) data.push({ time: t, value: Number(v), labels: l });
    }
    data.sort((a, b) => a.time - b.time);
    ctx.body = { data };
  });
  return router.routes() as Koa.Middleware;
}
