// Rendering for --output table|json|yaml.
import Table from 'cli-table3';
import { stringify as toYaml } from 'yaml';

export type OutputFormat = 'table' | 'json' | 'yaml';

const cell = (v: unknown): string => {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
};

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

export function objectTable(o: unknown): string {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return cell(o);
  const t = new Table({ style: { head: [], border: [] } });
  for (const [k, v] of Object.entries(o as Record<string, unknown>)) t.push({ [k]: cell(v) });
  return t.toString();
}
