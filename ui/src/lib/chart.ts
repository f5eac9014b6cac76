// Metric charts without a chart library: GET /v1/metrics points grouped into series and scaled
// into SVG polyline coordinates (pure, unit-tested; views/chart.tsx draws them).

export interface MetricPoint {
  time: number;
  value: number;
  labels: Record<string, string>;
}
export interface Series {
  key: string;
  points: Array<[number, number]>;
}

/** One series per value of `by` (e.g. HostUuid), points in time order. */
export function seriesOf(data: MetricPoint[], by: string): Series[] {
  const m = new Map<string, Array<[number, number]>>();
  for (const p of data) {
    if (!Number.isFinite(p.value)) continue;
    const k = p.labels[by] ?? '';
    let s = m.get(k);
    if (!s) m.set(k, (s = []));
    s.push([p.time, p.value]);
  }
  return [...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([key, points]) => ({ key, points: points.sort((a, b) => a[0] - b[0]) }));
}

/** The smallest 1/2/5×10ⁿ at or above v (an axis top that reads well); 1 for nothing. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 2, 5, 10]) if (f * e >= v) return f * e;
  return 10 * e;
}

export interface Plot {
  yMax: number;
  lines: Array<{ key: string; points: string; last: [number, number] | undefined; lastValue: number | undefined }>;
}

/** Series → 'x,y x,y …' in a width×height box over [t0, t1]; y from 0 to yMax (given, e.g. 100 for percent, or nice). */
export function plot(series: Series[], o: { width: number; height: number; t0: number; t1: number; yMax?: number }): Plot {
  const top = o.yMax ?? niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const span = Math.max(1, o.t1 - o.t0);
  const x = (t: number): number => Math.round(((t - o.t0) / span) * o.width * 10) / 10;
  const y = (v: number): number => Math.round((o.height - (Math.min(Math.max(v, 0), top) / top) * o.height) * 10) / 10;
  return {
    yMax: top,
    lines: series.map((s) => {
      const pts = s.points.filter(([t]) => t >= o.t0 && t <= o.t1).map(([t, v]) => [x(t), y(v)] as [number, number]);
      const lastPoint = s.points.at(-1);
      return { key: s.key, points: pts.map((p) => p.join(',')).join(' '), last: pts.at(-1), lastValue: lastPoint?.[1] };
    }),
  };
}

/** A value as the axis and legend show it. */
export function formatValue(v: number, unit: '%' | 'B' | 'B/s' | ''): string {
  if (unit === '%') return `${v.toFixed(v < 10 ? 1 : 0)}%`;
  if (unit === 'B' || unit === 'B/s') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let n = v;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}${unit === 'B/s' ? '/s' : ''}`;
  }
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}
