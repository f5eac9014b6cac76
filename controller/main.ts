#!/usr/bin/env node
// tstack-controller: the REST API, inventory, jobs and events of a tstack cloud.
//   tstack-controller [--config f] [--listen 0.0.0.0:8080] [--data-dir /var/lib/tstack]
//                     [--token-file f] [--store redis://…] [--admin-password-file f] [--log-level l]
// `startController(opts)` runs the same thing in-process (tests) and returns {url, close()}.
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { logger } from '../shared/log.js';
import { parseDaemonArgs, runDaemon } from '../shared/daemon.js';
import { tstackVersion } from '../shared/sysinfo.js';
import { openStore, type StoreConfig } from './store/index.js';
import { storeIndexes } from './model/indexes.js';
import { AuthService } from './auth/accounts.js';
import { JobManager } from './jobs/jobs.js';
import { EventBus } from './events/bus.js';
import { observedStore } from './events/observed-store.js';
import { AgentRegistry } from './events/agent-events.js';
import { startRedisRelay, type EventRelay } from './events/redis-relay.js';
import { AgentClient } from './agent-client/client.js';
import type Koa from 'koa';
import { buildApi, statusOf, type ApiApp } from './api/app.js';
import { createAudit } from './audit/index.js';
import { ApiRegistry } from './api/registry.js';
import type { ControllerContext } from './context.js';
import { FlowEngine } from './workflow/engine.js';
import { newHostRuntime } from './host/runtime.js';
import { ReconcileQueue, type ReconcileOptions } from './reconcile/queue.js';
import { uiMiddleware } from './webui/serve.js';
import { attachConsoleProxy, type ConsoleProxy } from './console/proxy.js';
import { applyServerLimits, serverOptions } from '../shared/http/limits.js';
import { ensureGlobalConfigs, registerGlobalConfigApi } from './config/global-config.js';
import { registerJobResumers } from './api/resume.js';

const log = logger('controller');

export interface ControllerOptions {
  dataDir: string;
  listenHost?: string;
  /** 0 = any free port. */
  listenPort?: number;
  /** 'sqlite' (default: <dataDir>/inventory.db), a sqlite file path, or a redis:// URL. */
  store?: string;
  /** Key prefix when the store is Redis. */
  storePrefix?: string;
  /** Admin password (else TSTACK_ADMIN_PASSWORD, else generated into <dataDir>/admin-password). */
  adminPassword?: string;
  /** Secret that may read /metrics (the --token-file content). */
  token?: string;
  sessionTtlMs?: number;
  /** A session unused this long ends (default 7200 s). */
  sessionIdleMs?: number;
  /** Shared (Redis) store: a controller whose flow heartbeat lease is this old has its flows taken over (default 15 s; tests use less). */
  flowLeaseTtlMs?: number;
  /** Shared (Redis) store: a controller silent this long has its Running jobs taken over (default 45 s). */
  jobStaleMs?: number;
  /** URL agents use to reach this controller (callbacks, events); default http://<listen>. */
  advertiseUrl?: string;
  /** The API registry to fill (default: a new one for this controller). */
  registry?: ApiRegistry;
  /** Print the generated admin password to stdout (the daemon does; tests don't). */
  printAdminPassword?: boolean;
  /** Called after the store and services exist, before listening (register collections, resumers…). */
  beforeListen?: (c: ControllerServices) => Promise<void> | void;
  /** The built web console (default <package>/dist/ui). */
  uiDir?: string;
  /** Feature modules (hosts, storage, network, VMs…); default builtinModules(). */
  modules?: ControllerModule[];
  /** The reconcile queue's periodic pass and retries (default: a pass every 60 s). */
  reconcile?: ReconcileOptions;
  /** Audit records older than this are deleted (default 90). */
  auditRetentionDays?: number;
  /** API requests in progress at once before 503 + Retry-After (default API_MAX_IN_FLIGHT). */
  maxInFlight?: number;
}

/**
 * A feature of the controller. install() runs before the API listens (register handlers,
 * actions, job resumers, event listeners); start() after (trackers, timers); stop() on close.
 */
export interface ControllerModule {
  name: string;
  install(s: ModuleContext): void | Promise<void>;
  start?(): void | Promise<void>;
  stop?(): Promise<void>;
}

/** What install() gets: the controller's one context (the same object for every module). */
export type ModuleContext = ControllerContext;

/**
 * A module loaded on demand: a module that fails to load is logged and left out (its
 * endpoints answer 501) instead of taking the whole controller down.
 */
function lazyModule(name: string, load: () => Promise<Omit<ControllerModule, 'name'>>): ControllerModule {
  let m: Omit<ControllerModule, 'name'> | undefined;
  return {
    name,
    async install(s) {
      try {
        m = await load();
      } catch (e) {
        log.error({ err: e, module: name }, `module ${name} failed to load; its API answers 501 until fixed`);
        return;
      }
      await m.install(s);
    },
    start: async () => m?.start?.(),
    stop: async () => m?.stop?.(),
  };
}

/** The modules a real controller runs. */
export function builtinModules(): ControllerModule[] {
  return [
    lazyModule('hosts', async () => {
      const { installHostModule } = await import('./host/api.js');
      let hosts: ReturnType<typeof installHostModule> | undefined;
      return {
        install: (s) => {
          hosts = installHostModule(s);
        },
        start: () => void hosts?.startTracker(),
        stop: async () => hosts?.stop(),
      };
    }),
    // images, storage, networks and VMs (controller/cloud): after 'hosts', whose API it builds on
    lazyModule('cloud', async () => (await import('./cloud/install.js')).cloudModule()),
    // SNS topics/endpoints and deliveries, event subscriptions, alarms, metrics
    lazyModule('monitoring', async () => (await import('./monitoring/module.js')).monitoringModule()),
    lazyModule('secgroups', async () => (await import('./secgroup/module.js')).secgroupModule()),
    // quotas (and, as issue 18 goes on, users, policies, sharing)
    lazyModule('identity', async () => (await import('./identity/module.js')).identityModule()),
    // VPC routers, VIPs, EIPs, port forwarding (after 'cloud': it uses the cloud's agent plumbing)
    lazyModule('vpc', async () => (await import('./vpc/module.js')).vpcModule()),
    // scheduler jobs and triggers (定时任务): after 'cloud', whose VM and volume actions its jobs run
    lazyModule('scheduler', async () => (await import('./scheduler/module.js')).schedulerModule()),
    // bare metal: chassis (IPMI through a host's vrouteragent); after 'cloud'
    lazyModule('baremetal', async () => (await import('./baremetal/module.js')).baremetalModule()),
  ];
}

/** The controller's services (its context; kept under this name for existing callers). */
export type ControllerServices = ControllerContext;

export interface RunningController extends ControllerContext {
  url: string;
  /** The console WebSocket proxy (its open sessions). */
  consoleProxy: ConsoleProxy;
  /** The API's read path (api/read-path.ts): switch, and how many requests it served. */
  readPath: ApiApp['readPath'];
  port: number;
  /** Set when the admin password was generated by this start. */
  generatedAdminPassword?: string;
  close(): Promise<void>;
}

export function storeConfig(spec: string | undefined, dataDir: string, prefix?: string): StoreConfig {
  if (!spec || spec === 'sqlite') return { backend: 'sqlite', path: join(dataDir, 'inventory.db') };
  if (/^rediss?:\/\//.test(spec)) return prefix ? { backend: 'redis', url: spec, prefix } : { backend: 'redis', url: spec };
  if (spec.startsWith('sqlite:')) return { backend: 'sqlite', path: spec.slice('sqlite:'.length).replace(/^\/\//, '') };
  if (spec.startsWith('/')) return { backend: 'sqlite', path: spec };
  throw new Error(`--store: expected 'sqlite', a file path, sqlite:<path> or redis://host:port, got '${spec}'`);
}

export async function startController(o: ControllerOptions): Promise<RunningController> {
  const version = tstackVersion();
  const bus = new EventBus();
  const raw = await openStore({ ...storeConfig(o.store, o.dataDir, o.storePrefix), ...storeIndexes() });
  const store = observedStore(raw, bus);
  let server: Server | undefined;
  const jobs = new JobManager(store, bus, o.jobStaleMs !== undefined ? { staleMs: o.jobStaleMs } : {});
  const modules = o.modules ?? builtinModules();
  let relay: EventRelay | undefined;
  const reconcile = new ReconcileQueue(o.reconcile);
  let stopAudit = (): void => undefined;
  let consoleProxy: ConsoleProxy | undefined;
  try {
    const auth = new AuthService(store, { ...(o.sessionTtlMs !== undefined ? { sessionTtlMs: o.sessionTtlMs } : {}), ...(o.sessionIdleMs !== undefined ? { sessionIdleMs: o.sessionIdleMs } : {}) });
    const pw = o.adminPassword ?? process.env.TSTACK_ADMIN_PASSWORD;
    const boot = await auth.bootstrapAdmin(pw !== undefined && pw !== '' ? { dataDir: o.dataDir, password: pw } : { dataDir: o.dataDir });
    if (boot.generatedPassword && o.printAdminPassword) {
      process.stdout.write(`tstack: created account 'admin' with password ${boot.generatedPassword}\n(also in ${join(o.dataDir, 'admin-password')}, mode 0600; change it with: tstack account update <uuid> --password …)\n`);
    }
    const agents = new AgentRegistry();
    const registry = o.registry ?? new ApiRegistry();
    // agents check every request they receive: no second schema pass here (see checkRequests)
    const agentClient = new AgentClient({ checkRequests: false });
    let advertised = o.advertiseUrl;
    const controllerUrl = (): string => {
      if (!advertised) throw new Error('the controller URL is known once it listens');
      return advertised;
    };
    const apiMiddleware: Koa.Middleware[] = [];
    // on a shared (Redis) inventory each controller keeps a heartbeat lease and takes over the
    // flows of one whose heartbeat expired (flows still serialise per resource in-process only)
    const engine = new FlowEngine({ store, controllerId: `controller:${o.dataDir}`, controller: () => services, ...(raw.backend === 'redis' ? { leases: { perResource: false, ...(o.flowLeaseTtlMs !== undefined ? { ttlMs: o.flowLeaseTtlMs } : {}) } } : {}) });
    // the one context of this controller: every module's install() gets this same object
    const services: ControllerContext = {
      store, auth, jobs, bus, agents, agentClient, registry, engine, reconcile, controllerUrl, apiMiddleware,
      dataDir: o.dataDir,
      adminAccountUuid: auth.adminAccountUuid,
      hostRuntime: newHostRuntime(),
    };
    const audit = createAudit(services, o.auditRetentionDays !== undefined ? { retentionDays: o.auditRetentionDays } : {});
    // global configs are core: every module may read them, whichever modules run
    registerGlobalConfigApi(registry);
    await ensureGlobalConfigs(store, auth.adminAccountUuid);
    for (const m of modules) await m.install(services);
    await o.beforeListen?.(services);
    const apiDeps: Parameters<typeof buildApi>[0] = { ...services, version };
    if (o.token) apiDeps.metricsToken = o.token;
    apiDeps.middleware = [...audit.middleware(statusOf), ...apiMiddleware];
    if (o.maxInFlight !== undefined) apiDeps.maxInFlight = o.maxInFlight;
    const api = buildApi(apiDeps);
    const { app } = api;
    // the jobs of resumable creates and actions are seen through by the controller that takes them
    // over; after buildApi, which registers the collections a create's resumer shapes with (before
    // it, a create never started was refused as 'request not kept' and a result shown unhidden)
    registerJobResumers(services);
    await jobs.init();
    app.use(uiMiddleware(o.uiDir)); // the web console at / (after the API routes)
    const host = o.listenHost ?? '0.0.0.0';
    server = await new Promise<Server>((resolve, reject) => {
      const s = createServer(serverOptions(), api.listener());
      s.once('error', reject);
      s.listen(o.listenPort ?? 8080, host, () => resolve(s));
    });
    server.keepAliveTimeout = 5_000;
    consoleProxy = attachConsoleProxy(server, { store, auth }); // WebSocket /v1/console/<token>
    applyServerLimits(server);
    const port = (server.address() as AddressInfo).port;
    const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    const url = `http://${urlHost}:${port}`;
    // the agent client needs to know where agents call back
    advertised = (o.advertiseUrl ?? url).replace(/\/+$/, '');
    agentClient.setCallbackUrl(`${advertised}/v1/agent-callbacks`);
    await engine.start();
    for (const m of modules) await m.start?.();
    engine.startTakeover();
    reconcile.start();
    audit.log.start();
    stopAudit = () => audit.log.stop();
    // controllers sharing a Redis inventory share their event streams too
    const storeCfg = storeConfig(o.store, o.dataDir, o.storePrefix);
    if (storeCfg.backend === 'redis') relay = await startRedisRelay(bus, storeCfg.url, `${storeCfg.prefix ?? 'tstack:'}events`);
    const gc = setInterval(() => void auth.gcSessions().catch(() => undefined), 600_000);
    gc.unref();
    log.info({ url, store: raw.backend, version }, 'tstack-controller listening');
    const running: RunningController = {
      ...services,
      url,
      port,
      consoleProxy,
      readPath: api.readPath,
      async close() {
        clearInterval(gc);
        await reconcile.stop();
        stopAudit();
        consoleProxy?.close();
        await relay?.close();
        for (const m of [...modules].reverse()) await m.stop?.().catch((e: unknown) => log.warn({ err: e, module: m.name }, 'module stop failed'));
        await engine.stop().catch((e: unknown) => log.warn({ err: e }, 'giving back the heartbeat lease failed'));
        jobs.close();
        server!.closeAllConnections?.();
        await new Promise<void>((r) => server!.close(() => r()));
        await raw.close();
      },
    };
    if (boot.generatedPassword) running.generatedAdminPassword = boot.generatedPassword;
    return running;
  } catch (e) {
    await reconcile.stop();
    jobs.close();
    await relay?.close();
    for (const m of [...modules].reverse()) await m.stop?.().catch(() => undefined);
    consoleProxy?.close();
    server?.close();
    await raw.close().catch(() => undefined);
    throw e;
  }
}

function main(): void {
  const cfg = parseDaemonArgs({
    name: 'tstack-controller',
    port: 8080,
    description: 'tstack controller: REST API, inventory, jobs, events',
    options: [
      ['--store <spec>', "inventory: 'sqlite' (default, <data-dir>/inventory.db), a file path, or redis://host:port/db"],
      ['--admin-password-file <file>', 'password of account admin (else TSTACK_ADMIN_PASSWORD, else generated)'],
      ['--session-ttl <seconds>', 'session lifetime (default 43200)'],
      ['--advertise-url <url>', 'URL agents use to reach the controller (default http://<listen address>)'],
      ['--reconcile-period <seconds>', 'how often every network service is re-applied to repair drift (default 60)'],
      ['--audit-retention-days <days>', 'delete audit records older than this (default 90)'],
    ],
  });
  runDaemon('tstack-controller', async () => {
    const x = cfg.extra;
    const pwFile = (x.adminPasswordFile ?? x['admin-password-file']) as string | undefined;
    const o: ControllerOptions = { dataDir: cfg.dataDir, listenHost: cfg.listenHost, listenPort: cfg.listenPort, token: cfg.token, printAdminPassword: true };
    const st = (x.store as string | undefined) ?? process.env.TSTACK_STORE;
    if (st) o.store = st;
    const adv = (x.advertiseUrl ?? x['advertise-url']) as string | undefined;
    if (adv) o.advertiseUrl = adv;
    if (pwFile) o.adminPassword = readFileSync(pwFile, 'utf8').trim();
    const ttl = x.sessionTtl ?? x['session-ttl'];
    if (ttl !== undefined) {
      const n = Number(ttl);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`--session-ttl: expected seconds, got ${String(ttl)}`);
      o.sessionTtlMs = n * 1000;
    }
    const rp = x.reconcilePeriod ?? x['reconcile-period'];
    if (rp !== undefined) {
      const n = Number(rp);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--reconcile-period: expected seconds (0 = off), got ${String(rp)}`);
      o.reconcile = { periodMs: n * 1000 };
    }
    const ret = x.auditRetentionDays ?? x['audit-retention-days'];
    if (ret !== undefined) {
      const n = Number(ret);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`--audit-retention-days: expected a positive number, got ${String(ret)}`);
      o.auditRetentionDays = n;
    }
    const c = await startController(o);
    return () => c.close();
  });
}

/** Run as a program (also through an npm bin symlink), not when imported. */
function isMain(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) main();
