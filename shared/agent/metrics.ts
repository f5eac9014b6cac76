// Prometheus metrics of an agent or the controller, in a registry of its own (several servers
// may live in one test process).
import client from 'prom-client';

export interface HttpMetrics {
  registry: client.Registry;
  requests: client.Counter<'method' | 'route' | 'status'>;
  duration: client.Histogram<'method' | 'route'>;
  inflight: client.Gauge<'route'>;
  tasks: client.Counter<'command' | 'outcome'>;
}

export function createHttpMetrics(component: string): HttpMetrics {
  const registry = new client.Registry();
  registry.setDefaultLabels({ component });
  client.collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new client.Counter({
      name: 'tstack_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    duration: new client.Histogram({
      name: 'tstack_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.02, 0.1, 0.5, 1, 5, 30, 120],
      registers: [registry],
    }),
    inflight: new client.Gauge({
      name: 'tstack_http_requests_in_flight',
      help: 'HTTP requests being served',
      labelNames: ['route'],
      registers: [registry],
    }),
    tasks: new client.Counter({
      name: 'tstack_agent_tasks_total',
      help: 'agent tasks by command and outcome',
      labelNames: ['command', 'outcome'],
      registers: [registry],
    }),
  };
}
