// Rendering for --output table|json|yaml.
import Table from 'cli-table3';
import { stringify as toYaml } from 'yaml';

export type OutputFormat = 'table' | 'json' | 'yaml';

/** Longest value a list cell shows; longer ones (ssh keys, user data…) are elided. */
export const CELL_MAX = 60;

/** Terminal width (120 when not a terminal). */
const columns = (): number => process.stdout.columns || 120;

const full = (v: unknown): string => {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
};

/** A table cell: one line, at most CELL_MAX characters (json/yaml output shows everything). */
export function cell(v: unknown, max = CELL_MAX): string {
  const s = full(v);
  const line = s.split('\n', 1)[0]!;
  if (line.length === s.length && s.length <= max) return s;
  const more = `… (${s.length} chars; -o json shows all)`;
  return line.slice(0, Math.max(8, max - more.length)) + more;
}

export function render(format: OutputFormat, data: unknown, tableView: () => string): string {
  if (format === 'json') return JSON.stringify(data, null, 2);
  if (format === 'yaml') return toYaml(data).trimEnd();
  return tableView();
}

/** Columns for a list: requested fields, else uuid, name, state/status when present, then a few useful ones. */
export function listColumns(items: Array<Record<string, unknown>>, fields?: string[]): string[] {
  if (fields?.length) return fields;
  const cols = ['uuid', 'name'];
  if (items.some((i) => Array.isArray(i.vmNics))) cols.push('state', 'ip', 'hostUuid');
  for (const c of ['state', 'status', 'type', 'hypervisorType', 'managementIp', 'ip', 'cpuNum', 'memorySize', 'diskSize', 'size', 'url', 'mediaType', 'format', 'hostUuid', 'zoneUuid', 'clusterUuid', 'l2NetworkUuid']) {
    if (cols.length >= 6) break;
    if (!cols.includes(c) && items.some((i) => i[c] !== undefined && i[c] !== null && typeof i[c] !== 'object')) cols.push(c);
  }
  return cols;
}

/** Values shown for a column: VM NICs' addresses appear as an `ip` column. */
function columnValue(i: Record<string, unknown>, c: string): unknown {
  if (c === 'ip' && i.ip === undefined && Array.isArray(i.vmNics)) return (i.vmNics as Array<{ ip?: string }>).map((n) => n.ip).filter(Boolean).join(',');
  return i[c];
}

export function listTable(items: Array<Record<string, unknown>>, cols: string[], total?: number): string {
  const t = new Table({ head: cols, style: { head: [], border: [] } });
  for (const i of items) t.push(cols.map((c) => cell(columnValue(i, c))));
  const foot = total !== undefined && total > items.length ? `\n(${items.length} of ${total}; use --limit/--start)` : '';
  return t.toString() + foot;
}

/** One resource as key | value rows; values longer than the terminal allows are elided. */
export function objectTable(o: unknown): string {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return full(o);
  const entries = Object.entries(o as Record<string, unknown>);
  // a VM's addresses would otherwise hide deep inside the elided vmNics JSON
  const ips = columnValue(o as Record<string, unknown>, 'ip');
  if (Array.isArray((o as Record<string, unknown>).vmNics) && ips) entries.push(['ip', ips]);
  const keyWidth = Math.max(0, ...entries.map(([k]) => k.length));
  const max = Math.max(CELL_MAX, columns() - keyWidth - 7);
  const t = new Table({ style: { head: [], border: [] } });
  for (const [k, v] of entries) t.push({ [k]: cell(v, max) });
  return t.toString();
}
