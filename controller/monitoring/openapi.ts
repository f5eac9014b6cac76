// /v1/metrics* in the OpenAPI document (served by ./metrics-api.ts and ./inventory-metrics.ts).
import { METRIC_NAMESPACES } from '../../shared/metric-names.js';
import { err } from '../api/openapi.js';
import type { RouteDocs } from '../api/registry.js';

const q = (name: string, description: string, schema: Record<string, unknown> = { type: 'string' }, required = false) => ({ name, in: 'query', required, schema, description });
const ns = { type: 'string', enum: [...METRIC_NAMESPACES] };

export const METRICS_ROUTE_DOCS: RouteDocs = {
  schemas: {
    MetricData: {
      type: 'object',
      required: ['data'],
      description: "ZStack's GetMetricData answer: one point per series and step, oldest first",
      properties: {
        data: {
          type: 'array',
          items: {
            type: 'object',
            required: ['time', 'value', 'labels'],
            properties: {
              time: { type: 'number', description: 'epoch seconds' },
              value: { type: 'number' },
              labels: { type: 'object', additionalProperties: { type: 'string' }, description: 'VMUuid, HostUuid, CPUNum, DiskDeviceLetter, NetworkDeviceLetter, L3NetworkUuid, PrimaryStorageUuid, BackupStorageUuid…' },
            },
          },
        },
      },
    },
    MetricNames: {
      type: 'object',
      required: ['names'],
      properties: { names: { type: 'array', items: { type: 'object', required: ['namespace', 'name'], properties: { namespace: ns, name: { type: 'string' } } } } },
    },
  },
  paths: {
    '/v1/metrics': {
      get: {
        tags: ['metrics'],
        operationId: 'get-metric-data',
        summary: 'time series of one metric from the metrics store (Prometheus); normal accounts: ZStack/VM of their own VMs only',
        parameters: [
          q('namespace', 'metric namespace', ns, true),
          q('metricName', 'e.g. CPUAverageUsedUtilization, MemoryUsedInPercent, UsedIpInPercent, AvailableCapacityInPercent', { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9]*$' }, true),
          q('labels', 'K=V[,K=V] (exact match; may be repeated)'),
          q('startTime', 'epoch seconds (or ms); default endTime − 600', { type: 'number' }),
          q('endTime', 'epoch seconds (or ms); default now', { type: 'number' }),
          q('period', 'step in seconds (default 60, at least 1)', { type: 'number', minimum: 1 }),
        ],
        responses: {
          200: { description: 'the points', content: { 'application/json': { schema: { $ref: '#/components/schemas/MetricData' } } } },
          400: err('bad namespace, metric name, label or time range'),
          403: err('a normal account asked for a namespace other than ZStack/VM'),
          503: err('no metrics store runs on this controller'),
        },
      },
    },
    '/v1/metrics/names': {
      get: {
        tags: ['metrics'],
        operationId: 'list-metric-names',
        summary: 'metric names tstack exports and those the store holds',
        parameters: [q('namespace', 'only this namespace', ns)],
        responses: { 200: { description: 'the names', content: { 'application/json': { schema: { $ref: '#/components/schemas/MetricNames' } } } }, 400: err('unknown namespace') },
      },
    },
    '/v1/metrics/export': {
      get: {
        tags: ['metrics'],
        operationId: 'export-inventory-metrics',
        summary: "the controller's own metrics (L3 addresses, primary and backup storage capacity) for its Prometheus: the scrape token or an admin session",
        responses: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } }, 403: err('not an admin') },
      },
    },
  },
};
