// ZStack/VIP metrics of the VPC routers on this host: each VIP's inbound and outbound traffic
// through its router's public interface, from the counting rules of render/vip-accounting.ts,
// sampled every `intervalMs` (default 10 s) and served from memory at scrape time. Like the
// kvmagent's metrics they are rates (bytes/s, packets/s) between two samples, named as ZStack
// names them (namespace ZStack/VIP, label VipUUID); HostUuid is added by Prometheus.
import client from 'prom-client';
import type { Logger } from '../shared/log.js';
import { promName } from '../shared/metric-names.js';
import type { VipCounters } from './render/vip-accounting.js';

export const VIP_METRICS = ['VIPInBoundTrafficInBytes', 'VIPInBoundTrafficInPackages', 'VIPOutBoundTrafficInBytes', 'VIPOutBoundTrafficInPackages'] as const;
export type VipMetricName = (typeof VIP_METRICS)[number];

export interface VipSample {
  at: number;
  /** Counters per VIP uuid (lower case), over every router of the host. */
  vips: Map<string, VipCounters>;
}

const round = (x: number): number => Math.round(x * 100) / 100;
/** A counter that went down was reset (namespace re-created): no rate for that interval. */
const rate = (now: number, before: number, secs: number): number => (now < before ? 0 : (now - before) / secs);

/** The metric values between two samples (pure): VIPs present in both. */
export function vipRates(prev: VipSample | undefined, cur: VipSample): Map<VipMetricName, Array<{ VipUUID: string; value: number }>> {
  const out = new Map<VipMetricName, Array<{ VipUUID: string; value: number }>>(VIP_METRICS.map((m) => [m, []]));
  const secs = prev ? (cur.at - prev.at) / 1000 : 0;
  if (!prev || secs <= 0) return out;
  for (const [VipUUID, c] of cur.vips) {
    const p = prev.vips.get(VipUUID);
    if (!p) continue;
    out.get('VIPInBoundTrafficInBytes')!.push({ VipUUID, value: round(rate(c.inBytes, p.inBytes, secs)) });
    out.get('VIPInBoundTrafficInPackages')!.push({ VipUUID, value: round(rate(c.inPackets, p.inPackets, secs)) });
    out.get('VIPOutBoundTrafficInBytes')!.push({ VipUUID, value: round(rate(c.outBytes, p.outBytes, secs)) });
    out.get('VIPOutBoundTrafficInPackages')!.push({ VipUUID, value: round(rate(c.outPackets, p.outPackets, secs)) });
  }
  return out;
}

export interface VipCounterSource {
  /** The routers of this host (uuids). */
  routers(): string[];
  /** One router's counters (empty when its namespace is missing). */
  vipCounters(routerUuid: string): Promise<Map<string, VipCounters>>;
}

export class VipMetrics {
  private prev?: VipSample;
  private timer?: NodeJS.Timeout;
  private sampling?: Promise<void>;
  private readonly gauges = new Map<VipMetricName, client.Gauge>();

  constructor(
    private readonly source: VipCounterSource,
    registry: client.Registry,
    private readonly log: Logger,
    readonly intervalMs = 10_000,
  ) {
    for (const m of VIP_METRICS) this.gauges.set(m, new client.Gauge({ name: promName('ZStack/VIP', m), help: `ZStack/VIP ${m}`, labelNames: ['VipUUID'], registers: [registry] }));
  }

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Take a sample and publish the values (one at a time; an overlapping call waits for it). */
  sample(): Promise<void> {
    this.sampling ??= this.doSample()
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'VIP metrics sample failed'))
      .finally(() => (this.sampling = undefined));
    return this.sampling;
  }

  private async doSample(): Promise<void> {
    const cur: VipSample = { at: Date.now(), vips: new Map() };
    for (const r of this.source.routers()) for (const [u, c] of await this.source.vipCounters(r)) cur.vips.set(u, c);
    const values = vipRates(this.prev, cur);
    this.prev = cur;
    // reset and set in one synchronous stretch: a scrape sees a whole sample
    for (const [m, points] of values) {
      const g = this.gauges.get(m)!;
      g.reset();
      for (const p of points) g.set({ VipUUID: p.VipUUID }, p.value);
    }
  }
}
