// ZStack's metric naming ↔ Prometheus series names. ZStack names a metric by namespace and
// name ("ZStack/VM", "CPUAverageUsedUtilization"); Prometheus names cannot hold '/', so the
// series is `ZStack_VM_CPUAverageUsedUtilization` (reversible: namespaces have no '_').
// Agents export under these names; the controller's /v1/metrics and alarms translate back.

export const METRIC_NAMESPACES = ['ZStack/VM', 'ZStack/Host', 'ZStack/L3Network', 'ZStack/VRouter', 'ZStack/VIP', 'ZStack/PrimaryStorage', 'ZStack/BackupStorage'] as const;
export type MetricNamespace = (typeof METRIC_NAMESPACES)[number];

const NAME_RE = /^[A-Za-z][A-Za-z0-9]*$/;

export function promName(namespace: string, metricName: string): string {
  if (!(METRIC_NAMESPACES as readonly string[]).includes(namespace)) throw new Error(`unknown metric namespace ${namespace}`);
  if (!NAME_RE.test(metricName)) throw new Error(`bad metric name ${metricName}`);
  return `${namespace.replace('/', '_')}_${metricName}`;
}

/** The namespace and name of a series, or undefined when it is not a ZStack metric. */
export function fromPromName(series: string): { namespace: string; metricName: string } | undefined {
  const m = /^ZStack_([A-Za-z0-9]+)_([A-Za-z][A-Za-z0-9]*)$/.exec(series);
  if (!m) return undefined;
  const namespace = `ZStack/${m[1]}`;
  return (METRIC_NAMESPACES as readonly string[]).includes(namespace) ? { namespace, metricName: m[2]! } : undefined;
}
