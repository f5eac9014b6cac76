// The jobs page: the account's jobs (all of them for the admin), newest first, filtered by state,
// paged; running ones with a live progress bar and their current step, failed ones with the
// API's error. Refetched on every job event from /v1/events.
import { useState } from 'preact/hooks';
import { get, type List } from '../lib/api';
import { useData } from '../lib/hooks';
import { listQuery } from '../lib/schema';
import type { JobView } from '../lib/types';

const STATES = ['', 'Running', 'Failed', 'Succeeded'];

/** 'vm-instances.create' → a link to the resource when the job names one. */
function target(j: JobView): preact.ComponentChildren {
  const col = j.type.split('.')[0];
  if (!j.resourceUuid) return <span class="muted">–</span>;
  return (
    <a href={`#/c/${col}/${j.resourceUuid}`} class="mono">
      {j.resourceUuid.slice(0, 8)}
    </a>
  );
}

export function JobsView() {
  const [stateFilter, setStateFilter] = useState('');
  const [start, setStart] = useState(0);
  const limit = 20;
  const q = listQuery({ filters: stateFilter ? [`state=${stateFilter}`] : [], sort: '-createDate', start, limit });
  const { data, error } = useData(() => get<List<JobView>>(`/v1/jobs?${q}`), [q], ['job']);
  const total = data?.total ?? 0;
  return (
    <section>
      <header class="bar">
        <h1>Jobs</h1>
      </header>
      <div class="filter">
        <label for="job-state">State</label>
        <select
          id="job-state"
          value={stateFilter}
          onChange={(e) => {
            setStateFilter((e.target as HTMLSelectElement).value);
            setStart(0);
          }}
        >
          {STATES.map((s) => (
            <option key={s} value={s}>
              {s || 'all'}
            </option>
          ))}
        </select>
      </div>
      {error && <div class="error" role="alert">{error}</div>}
      <table class="list jobs">
        <thead>
          <tr>
            <th>type</th>
            <th>resource</th>
            <th>state</th>
            <th>progress</th>
            <th>created</th>
          </tr>
        </thead>
        <tbody>
          {data?.inventories.map((j) => (
            <tr key={j.uuid} data-job={j.uuid} data-type={j.type}>
              <td>{j.type}</td>
              <td>{target(j)}</td>
              <td data-col="state">
                <span class={`badge s-${j.state}`}>{j.state}</span>
              </td>
              <td class="progress-cell">
                {j.state === 'Running' && <progress max={100} value={j.progress ?? 0} aria-label={`${j.type} progress`} />}
                {j.state === 'Running' && j.message && <div class="muted">{j.message}</div>}
                {j.state === 'Failed' && <div class="error">{j.error?.message ?? 'failed'}</div>}
                {j.state === 'Succeeded' && <span class="muted">done{j.finishDate ? ` ${j.finishDate.slice(11, 19)}` : ''}</span>}
              </td>
              <td class="muted">{j.createDate.replace('T', ' ').slice(0, 19)}</td>
            </tr>
          ))}
          {data && data.inventories.length === 0 && (
            <tr>
              <td colSpan={5} class="muted">
                nothing here
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <nav class="pager" aria-label="pages">
        <button disabled={start === 0} onClick={() => setStart(Math.max(0, start - limit))}>
          Previous
        </button>
        <span>
          {total === 0 ? 0 : start + 1}–{Math.min(total, start + limit)} of {total}
        </span>
        <button disabled={start + limit >= total} onClick={() => setStart(start + limit)}>
          Next
        </button>
      </nav>
    </section>
  );
}
