// A collection's list: q= filters, sorting by column, paging; refreshed by live events.
import { useState } from 'preact/hooks';
import { get, type List } from '../lib/api';
import { useData } from '../lib/hooks';
import { listQuery, nextSort, type ListState } from '../lib/schema';
import type { CliCollection, Resource } from '../lib/types';

const COLUMNS = ['name', 'state', 'status', 'type', 'createDate'];

export const cell = (v: unknown): string => (v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

export function ListView({ col }: { col: CliCollection }) {
  const [s, setS] = useState<ListState>({ filters: [], sort: '-createDate', start: 0, limit: 20 });
  const [filterText, setFilterText] = useState('');
  const { data, error } = useData(() => get<List>(`/v1/${col.collection}?${listQuery(s)}`), [col.collection, JSON.stringify(s)], [col.kind]);
  const cols = COLUMNS.filter((c) => c === 'name' || data?.inventories.some((r) => r[c] !== undefined));
  const apply = (e: Event): void => {
    e.preventDefault();
    setS({ ...s, start: 0, filters: filterText.split('\n').flatMap((l) => l.split('&')).map((x) => x.trim()).filter(Boolean) });
  };
  const total = data?.total ?? 0;
  return (
    <section>
      <header class="bar">
        <h1>{col.collection}</h1>
        {col.create && (
          <a class="button primary" href={col.kind === 'vm-instance' ? '#/vm-wizard' : `#/c/${col.collection}/new`}>
            Create
          </a>
        )}
      </header>
      {col.description && <p class="muted">{col.description}</p>}
      <form class="filter" onSubmit={apply}>
        <label for="q">Filter (q=)</label>
        <input id="q" value={filterText} onInput={(e) => setFilterText((e.target as HTMLInputElement).value)} placeholder="state=Running & name~=web%" />
        <button type="submit">Apply</button>
      </form>
      {error && <div class="error" role="alert">{error}</div>}
      <table class="list">
        <thead>
          <tr>
            {cols.map((c) => (
              <th key={c} aria-sort={s.sort === `+${c}` ? 'ascending' : s.sort === `-${c}` ? 'descending' : 'none'}>
                <button class="link" onClick={() => setS({ ...s, sort: nextSort(s.sort, c) })}>
                  {c} {s.sort === `+${c}` ? '▲' : s.sort === `-${c}` ? '▼' : ''}
                </button>
              </th>
            ))}
            <th>uuid</th>
          </tr>
        </thead>
        <tbody>
          {data?.inventories.map((r: Resource) => (
            <tr key={r.uuid} data-uuid={r.uuid}>
              {cols.map((c) => (
                <td key={c} data-col={c}>
                  {c === 'name' ? <a href={`#/c/${col.collection}/${r.uuid}`}>{r.name || '(no name)'}</a> : <span class={c === 'state' || c === 'status' ? `badge s-${cell(r[c])}` : ''}>{cell(r[c])}</span>}
                </td>
              ))}
              <td class="mono muted">{r.uuid.slice(0, 8)}</td>
            </tr>
          ))}
          {data && data.inventories.length === 0 && (
            <tr>
              <td colSpan={cols.length + 1} class="muted">
                nothing here
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <nav class="pager" aria-label="pages">
        <button disabled={s.start === 0} onClick={() => setS({ ...s, start: Math.max(0, s.start - s.limit) })}>
          Previous
        </button>
        <span>
          {total === 0 ? 0 : s.start + 1}–{Math.min(total, s.start + s.limit)} of {total}
        </span>
        <button disabled={s.start + s.limit >= total} onClick={() => setS({ ...s, start: s.start + s.limit })}>
          Next
        </button>
      </nav>
    </section>
  );
}
