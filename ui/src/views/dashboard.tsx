// The dashboard: how many of each kind, capacity per zone (CPU and memory of the hosts against
// the VMs on them, primary storage used/total), hosts and their status, charts of the hosts'
// CPU and memory from the monitoring metrics, recent failed jobs.
import { get, type List } from '../lib/api';
import { useData } from '../lib/hooks';
import { collections } from '../lib/live';
import type { JobView, Resource } from '../lib/types';
import { MetricChart } from './chart';

const GiB = 1024 ** 3;
const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v ?? 0)) || 0;

function Bar({ label, used, total, unit }: { label: string; used: number; total: number; unit: (n: number) => string }) {
  const pc = total > 0 ? Math.min(100, Math.round((used / total) * 100)) : 0;
  return (
    <div class="cap">
      <span>{label}</span>
      <progress max={100} value={pc} aria-label={`${label} ${pc}%`} />
      <span class="muted">
        {unit(used)} / {unit(total)}
      </span>
    </div>
  );
}

async function load(): Promise<{ counts: Array<[string, number]>; zones: Resource[]; hosts: Resource[]; vms: Resource[]; ps: Resource[]; failed: JobView[] }> {
  const cols = collections().filter((c) => ['zones', 'clusters', 'hosts', 'vm-instances', 'images', 'volumes', 'l3-networks', 'primary-storage'].includes(c.collection));
  const counts = await Promise.all(cols.map(async (c) => [c.collection, (await get<{ total: number }>(`/v1/${c.collection}?count=true`)).total] as [string, number]));
  const has = (c: string): boolean => collections().some((x) => x.collection === c);
  const list = async (c: string, q = ''): Promise<Resource[]> => (has(c) ? (await get<List>(`/v1/${c}?limit=1000${q}`)).inventories : []);
  const [zones, hosts, vms, ps] = await Promise.all([list('zones'), list('hosts'), list('vm-instances', '&q=state=Running'), list('primary-storage')]);
  const failed = (await get<List<JobView>>('/v1/jobs?q=state=Failed&sort=-createDate&limit=5')).inventories;
  return { counts, zones, hosts, vms, ps, failed };
}

export function Dashboard() {
  const { data, error } = useData(load, [], ['zone', 'cluster', 'host', 'vm-instance', 'primary-storage', 'job', 'image', 'volume']);
  if (error) return <div class="error" role="alert">{error}</div>;
  if (!data) return <p class="muted">loading…</p>;
  return (
    <section>
      <h1>Dashboard</h1>
      <div class="cards">
        {data.counts.map(([c, n]) => (
          <a class="card" href={`#/c/${c}`} key={c}>
            <strong>{n}</strong>
            <span>{c}</span>
          </a>
        ))}
      </div>
      <h2>Capacity</h2>
      {data.zones.length === 0 && <p class="muted">no zones yet</p>}
      {data.zones.map((z) => {
        const hs = data.hosts.filter((h) => h.zoneUuid === z.uuid);
        const vs = data.vms.filter((v) => v.zoneUuid === z.uuid);
        const ps = data.ps.filter((p) => p.zoneUuid === z.uuid);
        const total = (rs: Resource[], k: string): number => rs.reduce((s, r) => s + num(r[k]), 0);
        return (
          <div class="zone" key={z.uuid}>
            <h3>{z.name}</h3>
            <Bar label="CPU" used={total(vs, 'cpuNum')} total={total(hs, 'totalCpu')} unit={(n) => `${n} vCPU`} />
            <Bar label="Memory" used={total(vs, 'memorySize')} total={total(hs, 'totalMemory')} unit={(n) => `${(n / GiB).toFixed(1)} GiB`} />
            <Bar label="Storage" used={total(ps, 'totalCapacity') - total(ps, 'availableCapacity')} total={total(ps, 'totalCapacity')} unit={(n) => `${(n / GiB).toFixed(1)} GiB`} />
          </div>
        );
      })}
      <h2>Hosts</h2>
      <table class="list">
        <tbody>
          {data.hosts.map((h) => (
            <tr key={h.uuid}>
              <td>
                <a href={`#/c/hosts/${h.uuid}`}>{h.name}</a>
              </td>
              <td>{String(h.managementIp ?? '')}</td>
              <td>
                <span class={`badge s-${String(h.status)}`}>{String(h.status ?? '')}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Host metrics</h2>
      <div class="charts">
        <MetricChart title="Host CPU" namespace="ZStack/Host" metricName="CPUAverageUsedUtilization" by="HostUuid" unit="%" names={Object.fromEntries(data.hosts.map((h) => [h.uuid, h.name]))} />
        <MetricChart title="Host memory used" namespace="ZStack/Host" metricName="MemoryUsedInPercent" by="HostUuid" unit="%" names={Object.fromEntries(data.hosts.map((h) => [h.uuid, h.name]))} />
      </div>
      <h2>
        Recent failed jobs <a href="#/jobs" class="small">all jobs</a>
      </h2>
      {data.failed.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <ul>
          {data.failed.map((j) => (
            <li key={j.uuid}>
              <strong>{j.type}</strong> <span class="muted">{j.createDate}</span>: {j.error?.message}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
