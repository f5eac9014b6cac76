// The monitoring controller module: SNS (API handlers, the delivery worker), event
// subscriptions. Installed by controller/main.ts builtinModules() (tests pass it explicitly).
import type Koa from 'koa';
import type { InventoryStore } from '../store/types.js';
import type { EventBus } from '../events/bus.js';
import type { ApiRegistry } from '../api/registry.js';
import { registerSnsApi } from '../sns/api.js';
import { DeliveryWorker, type DeliveryOptions } from '../sns/deliveries.js';
import { EventEvaluator, type EventEvaluatorOptions } from './events.js';

export interface MonitoringOptions {
  delivery?: DeliveryOptions;
  events?: EventEvaluatorOptions;
}

/** What the module needs (structurally a ModuleContext of controller/main.ts). */
export interface MonitoringServices {
  store: InventoryStore;
  bus: EventBus;
  registry: ApiRegistry;
  auth: { adminAccountUuid: string };
  dataDir: string;
  apiMiddleware: Koa.Middleware[];
}

export interface MonitoringModule {
  name: string;
  install(s: MonitoringServices): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Set once installed. */
  worker?: DeliveryWorker;
  events?: EventEvaluator;
}

export function monitoringModule(o: MonitoringOptions = {}): MonitoringModule {
  const m: MonitoringModule = {
    name: 'monitoring',
    install(s) {
      registerSnsApi(s.registry);
      const worker = new DeliveryWorker(s.store, `controller:${s.dataDir}:${process.pid}`, o.delivery);
      m.worker = worker;
      m.events = new EventEvaluator(s.store, s.bus, () => s.auth.adminAccountUuid, () => worker.kick(), o.events);
    },
    async start() {
      await m.events?.start();
      m.worker?.start();
    },
    async stop() {
      m.events?.stop();
      await m.worker?.stop();
    },
  };
  return m;
}
