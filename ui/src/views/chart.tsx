// A monitoring metric over the last minutes as an inline SVG line chart (one line per host or
// VM), refreshed every few seconds: metrics are sampled, not events, so they are polled.
import { useEffect, useState } from 'preact/hooks';
import { get } from '../lib/api';
import { formatValue, plot, seriesOf, type MetricPoint } from '../lib/chart';

const W = 320;
const H = 100;
const COLORS = ['#1f5fbf', '#c2410c', '#15803d', '#7c3aed', '#b42318', '#0e7490'];

export interface MetricChartProps {
  title: string;
  namespace: 'ZStack/Host' | 'ZStack/VM';
  metricName: string;
  /** The label whose values are the lines (HostUuid, VMUuid). */
  by: string;
  /** Only these series (label K=V), e.g. one VM. */
  labels?: string;
  unit: '%' | 'B' | 'B/s' | '';
  /** Names for the label values (host names); else the uuid's first 8 characters. */
  names?: Record<string, string>;
  minutes?: number;
  refreshMs?: number;
}

export function MetricChart(p: MetricChartProps) {
  const minutes = p.minutes ?? 15;
  const [data, setData] = useState<{ points: MetricPoint[]; t1: number } | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async (): Promise<void> => {
      const t1 = Math.floor(Date.now() / 1000);
      const q = new URLSearchParams({ namespace: p.namespace, metricName: p.metricName, startTime: String(t1 - minutes * 60), endTime: String(t1), period: String(Math.max(5, minutes * 2)) });
      if (p.labels) q.set('labels', p.labels);
      try {
        const r = await get<{ data: MetricPoint[] }>(`/v1/metrics?${q.toString()}`);
        if (!live) return;
        setData({ points: r.data, t1 });
        setError(undefined);
        timer = setTimeout(() => void load(), p.refreshMs ?? 10_000);
      } catch (e) {
        if (!live) return;
        setError((e as Error).message);
        // no metrics store (or no permission): ask again now and then, not every few seconds
        timer = setTimeout(() => void load(), 60_000);
      }
    };
    void load();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [p.namespace, p.metricName, p.labels, minutes]);
  const id = `${p.namespace}/${p.metricName}`;
  const series = data ? seriesOf(data.points, p.by) : [];
  const g = data ? plot(series, { width: W, height: H, t0: data.t1 - minutes * 60, t1: data.t1, ...(p.unit === '%' ? { yMax: 100 } : {}) }) : undefined;
  const name = (k: string): string => p.names?.[k] ?? (k.slice(0, 8) || p.by);
  const summary = g?.lines.map((l) => `${name(l.key)} ${l.lastValue === undefined ? 'no data' : formatValue(l.lastValue, p.unit)}`).join(', ');
  return (
    <figure class="chart" data-metric={id} data-series={series.length}>
      <figcaption>
        {p.title} <span class="muted">(last {minutes} min)</span>
      </figcaption>
      {error && <p class="muted">metrics unavailable: {error}</p>}
      {!error && !data && <p class="muted">loading…</p>}
      {g && (
        <>
          <svg viewBox={`-40 -6 ${W + 46} ${H + 20}`} role="img" aria-label={`${p.title}: ${summary || 'no data yet'}`}>
            <line x1={0} y1={H} x2={W} y2={H} class="axis" />
            <line x1={0} y1={0} x2={0} y2={H} class="axis" />
            <text x={-4} y={4} text-anchor="end" class="tick">
              {formatValue(g.yMax, p.unit)}
            </text>
            <text x={-4} y={H} text-anchor="end" class="tick">
              0
            </text>
            <text x={W} y={H + 13} text-anchor="end" class="tick">
              now
            </text>
            {g.lines.map((l, i) => (
              <g key={l.key} data-key={l.key}>
                <polyline points={l.points} fill="none" stroke={COLORS[i % COLORS.length]} stroke-width={1.5} />
                {l.last && <circle cx={l.last[0]} cy={l.last[1]} r={2.5} fill={COLORS[i % COLORS.length]} />}
              </g>
            ))}
          </svg>
          {series.length === 0 ? (
            <p class="muted">no samples yet</p>
          ) : (
            <ul class="legend">
              {g.lines.map((l, i) => (
                <li key={l.key}>
                  <span class="swatch" style={{ background: COLORS[i % COLORS.length] }} aria-hidden="true" /> {name(l.key)}: {l.lastValue === undefined ? '–' : formatValue(l.lastValue, p.unit)}
                </li>
              ))}
            </ul>
          )}
        </>
      )}
    </figure>
  );
}
