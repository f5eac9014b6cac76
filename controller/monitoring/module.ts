// The monitoring controller module: SNS (API handlers, the delivery worker), event
// subscriptions, the Prometheus that stores metrics (started and kept current with the hosts),
// GET /v1/metrics and /v1/metrics/names, and the alarm evaluator. Installed by
// controller/main.ts builtinModules() (tests pass it explicitly).
//
// Prometheus is used when configured: MonitoringOptions.prometheus, else the environment
// TSTACK_PROMETHEUS = 'start' (run one on 127.0.0.1:9090) | 'start:<port>' | an http:// URL
// of one that runs already. Without it metrics answer 503 and alarms stay InsufficientData.
import { logger } from '../../shared/log.js';
import type { ControllerContext } from '../context.js';
import { registerSnsApi } from '../sns/api.js';
import { emailSender, smtpFromEnv, type SmtpOptions } from '../sns/email.js';
import { DeliveryWorker, type DeliveryOptions } from '../sns/deliveries.js';
import { migrateEndpointPasswords } from '../sns/endpoint-secret.js';
import { secretBoxFor } from '../auth/secret-box.js';
import { EventEvaluator, type EventEvaluatorOptions } from './events.js';
import { PrometheusManager, type PrometheusOptions } from './prometheus.js';
import { metricsRoutes } from './metrics-api.js';
import { AlarmEvaluator } from './alarms.js';
import { exportRoute } from './inventory-metrics.js';
import { METRICS_ROUTE_DOCS } from './openapi.js';
import { randomBytes } from 'node:crypto';

const log = logger('monitoring');

export interface MonitoringOptions {
  delivery?: DeliveryOptions;
  events?: EventEvaluatorOptions;
  /** false: no Prometheus (default: from TSTACK_PROMETHEUS, else none). */
  prometheus?: PrometheusOptions | false;
  /** Alarm evaluation interval (default 10 s). */
  alarmIntervalMs?: number;
  /** SMTP server for Email endpoints (default: TSTACK_SMTP_URL / TSTACK_SMTP_FROM). */
  smtp?: SmtpOptions;
}

/** TSTACK_PROMETHEUS → options. */
export function prometheusFromEnv(v: string | undefined): PrometheusOptions | false {
  if (!v) return false;
  if (v === 'start') return {};
  const m = /^start:(\d{1,5})$/.exec(v);
  if (m) return { port: Number(m[1]) };
  if (/^https?:\/\/[^\s]+$/.test(v)) return { url: v };
  throw new Error(`TSTACK_PROMETHEUS: expected start, start:<port> or an http:// URL, got '${v}'`);
}

/** What the module uses of the controller's context (controller/context.ts); controllerUrl: its
 * Prometheus scrapes the inventory metrics there (without it, no tstack-controller job). */
export type MonitoringServices = Pick<ControllerContext, 'store' | 'bus' | 'registry' | 'auth' | 'dataDir' | 'apiMiddleware'> & Partial<Pick<ControllerContext, 'controllerUrl'>>;

export interface MonitoringModule {
  name: string;
  install(s: MonitoringServices): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Set once installed / started. */
  worker?: DeliveryWorker;
  events?: EventEvaluator;
  alarms?: AlarmEvaluator;
  prometheus?: PrometheusManager;
}

export function monitoringModule(o: MonitoringOptions = {}): MonitoringModule {
  let s: MonitoringServices | undefined;
  let off: (() => void) | undefined;
  const promOpts = o.prometheus ?? prometheusFromEnv(process.env.TSTACK_PROMETHEUS);
  // what this controller's Prometheus presents at /v1/metrics/export (memory only: rewritten each start)
  const scrapeToken = randomBytes(32).toString('base64url');
  const m: MonitoringModule = {
    name: 'monitoring',
    install(services) {
      s = services;
      registerSnsApi(s.registry);
      const smtp = o.smtp ?? smtpFromEnv();
      const delivery: DeliveryOptions = { ...o.delivery };
      if (smtp) delivery.senders = { Email: emailSender(smtp), ...delivery.senders };
      delivery.secretBox = secretBoxFor(s.dataDir);
      const worker = new DeliveryWorker(s.store, `controller:${s.dataDir}:${process.pid}`, delivery);
      m.worker = worker;
      m.events = new EventEvaluator(s.store, s.bus, () => services.auth.adminAccountUuid, () => worker.kick(), o.events);
      m.alarms = new AlarmEvaluator(s.store, () => m.prometheus, () => worker.kick(), o.alarmIntervalMs !== undefined ? { intervalMs: o.alarmIntervalMs } : {});
      s.registry.documentRoutes('monitoring', METRICS_ROUTE_DOCS);
      s.apiMiddleware.push(exportRoute({ auth: s.auth, store: s.store, token: scrapeToken }));
      s.apiMiddleware.push(metricsRoutes({ auth: s.auth, store: s.store, prometheus: () => m.prometheus }));
    },
    async start() {
      if (s) {
        const sealed = await migrateEndpointPasswords(s.store, secretBoxFor(s.dataDir));
        if (sealed) log.info({ sealed }, 'SNS endpoint passwords stored in clear are sealed now');
      }
      await m.events?.start();
      m.worker?.start();
      if (s && promOpts) {
        const p = new PrometheusManager(s.store, s.dataDir, promOpts);
        // an external Prometheus (url) is configured elsewhere: it scrapes what its operator set up
        if (s.controllerUrl && !promOpts.url) p.self = { url: s.controllerUrl(), token: scrapeToken };
        try {
          await p.start();
          m.prometheus = p;
          // hosts come and go, agents move: keep the scrape targets current
          off = s.bus.subscribe((e) => {
            if ('kind' in e && e.kind === 'host') void p.sync().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'prometheus target sync failed'));
          });
        } catch (e) {
          log.error({ err: (e as Error).message }, 'prometheus did not start: no metrics or alarms on this controller');
          await p.stop().catch(() => undefined);
        }
      }
      m.alarms?.start();
    },
    async stop() {
      off?.();
      m.alarms?.stop();
      m.events?.stop();
      await m.worker?.stop();
      await m.prometheus?.stop();
    },
  };
  return m;
}
