#!/usr/bin/env node
// tstack-vrouteragent: network functions in namespaces. For flat networks: per-L3 service
// namespaces with DHCP + DNS (dnsmasq) and the metadata service, and NoCloud config drives.
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import type { AgentServer } from '../shared/agent/server.js';
import { startAgent } from '../shared/agent/main-helper.js';
import { baremetal, ipsec, lb, vrouter, vpc } from '../shared/protocol/index.js';
import { FlatService } from './flat.js';
import { RouterService } from './router.js';
import { FlatEipService } from './flat-eip.js';
import { buildConfigDrive } from './configdrive.js';
import { checkScheme, DEFAULT_SCHEME, type NameScheme } from './names.js';
import { VipMetrics } from './vip-metrics.js';
import { ipmiBootDevice, ipmiPower } from './baremetal/ipmi.js';
import { PxeService } from './baremetal/pxe.js';
import { DeployFiles } from './baremetal/deploy.js';
import { join } from 'node:path';

export interface VrouterAgentOptions {
  dataDir: string;
  /** Name prefixes of namespaces / interfaces (default tsflat / tsf). */
  scheme?: Partial<NameScheme>;
  /** Port of the metadata service inside the namespaces (default 80). */
  metadataPort?: number;
  /** How often the watchdog restarts dead dnsmasq / metadata listeners (default 10 s; 0 = off). */
  watchdogMs?: number;
  /** ZStack/VIP metrics sample interval (default 10 s; 0 = off). */
  metricsIntervalMs?: number;
  /** How long after answering a flat/apply its desired.json is written (default 20 ms; tests widen the window). */
  saveDelayMs?: number;
  /** Where the bare-metal ramdisks are (vmlinuz, inspect.img, deploy.img; default <dataDir>/baremetal/images). */
  baremetalImagesDir?: string;
}

export const VROUTER_CAPABILITIES = ['flat-dhcp', 'flat-dns', 'flat-metadata', 'configdrive', 'vpc-router', 'vpc-lb', 'baremetal-ipmi', 'vpc-ipsec', 'baremetal-pxe', 'flat-eip', 'baremetal-deploy'];

/** Register every vrouter command on `server`, re-adopt what runs on the host; returns the shutdown hook. */
export async function registerVrouterAgent(server: AgentServer, opts: VrouterAgentOptions): Promise<{ flat: FlatService; routers: RouterService; pxe: PxeService; close: () => Promise<void> }> {
  const scheme = checkScheme({ ...DEFAULT_SCHEME, ...opts.scheme });
  const flat = new FlatService({ dataDir: opts.dataDir, scheme, log: server.log, metadataPort: opts.metadataPort ?? 80, ...(opts.saveDelayMs !== undefined ? { saveDelayMs: opts.saveDelayMs } : {}) });
  const byL3 = { key: (r: { l3NetworkUuid: string }) => `l3:${r.l3NetworkUuid.replace(/-/g, '').toLowerCase()}` };

  server.handle(vrouter.NamespaceEnsure, async (req, ctx) => flat.ensure(req.network, ctx.signal), { key: (r) => byL3.key(r.network) });
  server.handle(vrouter.NamespaceDelete, async (req) => ({ deleted: await flat.delete(req.l3NetworkUuid) }), byL3);
  server.handle(vrouter.FlatStatus, async (req) => ({ networks: flat.status(req.l3NetworkUuid) }));
  server.handle(vrouter.FlatApply, async (req, ctx) => flat.apply(req, ctx.signal, ctx.body), { key: (r) => byL3.key(r.network) });
  server.handle(vrouter.DhcpApply, async (req) => flat.dhcpApply(req.l3NetworkUuid, req.entries), byL3);
  server.handle(vrouter.DnsApply, async (req) => flat.dnsApply(req.l3NetworkUuid, req.records, req.forwarders), byL3);
  server.handle(vrouter.MetadataApply, async (req) => flat.metadataApply(req.l3NetworkUuid, req.records), byL3);
  server.handle(
    vrouter.ConfigDriveBuild,
    async (req, ctx) => buildConfigDrive(req.path, req, ctx.signal),
    { key: (r) => `configdrive:${r.path}` },
  );

  const routers = new RouterService({ dataDir: opts.dataDir, scheme, log: server.log });
  const byRouter = { key: (r: { routerUuid: string }) => `router:${r.routerUuid.replace(/-/g, '').toLowerCase()}` };
  server.handle(vpc.RouterApply, async (req, ctx) => routers.apply(req.router, ctx.signal), { key: (r) => byRouter.key(r.router) });
  server.handle(vpc.RouterDelete, async (req) => ({ deleted: await routers.delete(req.routerUuid) }), byRouter);
  server.handle(vpc.RouterStatus, async () => ({ routers: routers.status() }));
  server.handle(lb.LbStatus, async (req) => routers.lbStatus(req.routerUuid));
  // not in the router's queue: a status read must not wait behind a long apply
  server.handle(ipsec.IpsecStatus, async (req) => routers.ipsecStatus(req.routerUuid));
  const eips = new FlatEipService({ dataDir: opts.dataDir, scheme, log: server.log });
  const byEip = { key: () => 'flat-eip' };
  server.handle(vrouter.FlatEipApply, async (req, ctx) => eips.apply(req, ctx.signal), byEip);

  // bare metal: one IPMI conversation at a time per BMC (a power-on must not cross a status read)
  const byBmc = { key: (r: { bmc: { address: string; port: number } }) => `bmc:${r.bmc.address}:${r.bmc.port}` };
  server.handle(baremetal.IpmiPower, async (req, ctx) => ipmiPower(req.bmc, req.op, { signal: ctx.signal }), byBmc);
  server.handle(baremetal.IpmiBootDevice, async (req, ctx) => ipmiBootDevice(req.bmc, req.device, { signal: ctx.signal }), byBmc);
  const deployFiles = new DeployFiles(opts.dataDir);
  const pxe = new PxeService({ dataDir: opts.dataDir, scheme, imagesDir: opts.baremetalImagesDir ?? join(opts.dataDir, 'baremetal', 'images'), log: server.log, deploy: deployFiles });
  server.handle(baremetal.DeployPrepare, async (req, ctx) => deployFiles.prepare(req, ctx.signal), { key: (r) => `bm-instance:${r.instanceUuid.toLowerCase()}` });
  server.handle(baremetal.DeployCleanup, async (req) => ({ removed: deployFiles.cleanup(req.instanceUuid) }), { key: (r) => `bm-instance:${r.instanceUuid.toLowerCase()}` });
  const byPxe = { key: (r: { pxeServerUuid: string }) => `pxe:${r.pxeServerUuid.toLowerCase()}` };
  server.handle(baremetal.PxeApply, async (req, ctx) => pxe.apply(req.server, ctx.signal), { key: (r) => byPxe.key(r.server) });
  server.handle(baremetal.PxeDelete, async (req) => ({ deleted: await pxe.delete(req.pxeServerUuid) }), byPxe);
  server.handle(baremetal.PxeStatus, async (req) => {
    const state = pxe.status(req.pxeServerUuid);
    return state ? { state } : {};
  });

  await flat.recover();
  await routers.recover();
  await pxe.recover();
  await eips.recover();
  const metricsMs = opts.metricsIntervalMs ?? 10_000;
  // a router is read in its own queue: never while an apply rewrites its rules
  const vipSource = { routers: () => routers.list(), vipCounters: (routerUuid: string) => server.queues.run(byRouter.key({ routerUuid }), () => routers.vipCountersOf(routerUuid)) };
  const vipMetrics = metricsMs > 0 ? new VipMetrics(vipSource, server.metrics.registry, server.log, metricsMs) : undefined;
  vipMetrics?.start();
  // watchdog: DHCP must keep working even if a dnsmasq dies between two commands
  let timer: NodeJS.Timeout | undefined;
  const watchdogMs = opts.watchdogMs ?? 10_000;
  if (watchdogMs > 0) {
    timer = setInterval(() => {
      for (const l3 of flat.list()) {
        void server.queues
          .run(byL3.key({ l3NetworkUuid: l3 }), () => flat.heal(l3))
          .catch((e: unknown) => server.log.error({ l3, err: (e as Error).message }, 'watchdog could not heal the flat L3'));
      }
      for (const routerUuid of routers.list()) {
        void server.queues
          .run(byRouter.key({ routerUuid }), () => routers.heal(routerUuid))
          .catch((e: unknown) => server.log.error({ router: routerUuid, err: (e as Error).message }, 'watchdog could not heal the VPC router'));
      }
      if (eips.active) {
        void server.queues.run(byEip.key(), () => eips.heal()).catch((e: unknown) => server.log.error({ err: (e as Error).message }, 'watchdog could not heal the flat EIPs'));
      }
    }, watchdogMs);
    timer.unref();
  }
  return {
    flat,
    routers,
    pxe,
    close: async () => {
      if (timer) clearInterval(timer);
      vipMetrics?.stop();
      await pxe.close();
      await flat.close();
    },
  };
}

function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  startAgent(
    {
      name: 'tstack-vrouteragent',
      port: 7272,
      description: 'network-function agent: DHCP, DNS, metadata in namespaces',
      options: [
        ['--name-prefix <prefix>', 'prefix of namespace names (default tsflat)'],
        ['--if-prefix <prefix>', 'prefix of interface names, ≤ 7 chars (default tsf)'],
        ['--watchdog-ms <ms>', 'how often dead dnsmasq / metadata listeners are restarted (default 10000; 0 = off)'],
        ['--metrics-interval-ms <ms>', 'ZStack/VIP metrics sample interval (default 10000; 0 = off)'],
        ['--save-delay-ms <ms>', 'how long after answering a flat/apply its desired.json is written (default 20)'],
        ['--baremetal-images <dir>', 'bare-metal ramdisks served by PXE servers: vmlinuz, inspect.img, deploy.img (default <data-dir>/baremetal/images)'],
      ],
    },
    async (server, cfg) => {
      const scheme: Partial<NameScheme> = {};
      const np = cfg.extra.namePrefix as string | undefined;
      const ip = cfg.extra.ifPrefix as string | undefined;
      if (np) scheme.nsPrefix = np;
      if (ip) scheme.ifPrefix = ip;
      const wd = cfg.extra.watchdogMs;
      const watchdogMs = wd === undefined ? undefined : Number(wd);
      if (watchdogMs !== undefined && !(Number.isInteger(watchdogMs) && watchdogMs >= 0)) throw new Error(`--watchdog-ms: expected a number of milliseconds, got ${String(wd)}`);
      const mi = cfg.extra.metricsIntervalMs;
      const metricsIntervalMs = mi === undefined ? undefined : Number(mi);
      if (metricsIntervalMs !== undefined && !(Number.isInteger(metricsIntervalMs) && metricsIntervalMs >= 0)) throw new Error(`--metrics-interval-ms: expected a number of milliseconds, got ${String(mi)}`);
      const sd = cfg.extra.saveDelayMs;
      const saveDelayMs = sd === undefined ? undefined : Number(sd);
      if (saveDelayMs !== undefined && !(Number.isInteger(saveDelayMs) && saveDelayMs >= 0)) throw new Error(`--save-delay-ms: expected a number of milliseconds, got ${String(sd)}`);
      const bmi = (cfg.extra.baremetalImages ?? cfg.extra['baremetal-images']) as string | undefined;
      const { close } = await registerVrouterAgent(server, { dataDir: cfg.dataDir, scheme, ...(watchdogMs !== undefined ? { watchdogMs } : {}), ...(metricsIntervalMs !== undefined ? { metricsIntervalMs } : {}), ...(saveDelayMs !== undefined ? { saveDelayMs } : {}), ...(bmi ? { baremetalImagesDir: bmi } : {}) });
      return close;
    },
    { capabilities: VROUTER_CAPABILITIES },
  );
}
