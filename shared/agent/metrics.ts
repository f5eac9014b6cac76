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

// The process metrics (CPU, memory, event-loop lag, GC) once per process, shared by every
// server's registry: each collectDefaultMetrics() starts its own event-loop-delay monitor (a
// 10 ms timer) and GC observer, which a simulator of 1,000 hosts paid 1,000 times over.
let processRegistry: client.Registry | undefined;
function processMetrics(): client.Registry {
  if (!processRegistry) {
    processRegistry = new client.Registry();
    client.collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export function createHttpMetrics(component: string): HttpMetrics {
  const own = new client.Registry();
  const m = {
    requests: new client.Counter({
      name: 'tstack_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [own],
    }),
    duration: new client.Histogram({
      name: 'tstack_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.02, 0.1, 0.5, 1, 5, 30, 120],
      registers: [own],
    }),
    inflight: new client.Gauge({
      name: 'tstack_http_requests_in_flight',
      help: 'HTTP requests being served',
      labelNames: ['route'],
      registers: [own],
    }),
    tasks: new client.Counter({
      name: 'tstack_agent_tasks_total',
      help: 'agent tasks by command and outcome',
      labelNames: ['command', 'outcome'],
      registers: [own],
    }),
  };
  // what /metrics serves: this server's metrics and the process's, all labelled with the component
  const registry = client.Registry.merge([own, processMetrics()]);
  registry.setDefaultLabels({ component });
  return { ...m, registry };
}
