// Wiring of the cloud modules into a controller: hosts (controller/host), storage, networks and
// VMs register their API handlers; a flow engine runs (and at start resumes) their workflows;
// hosts that connect get the bridges and primary storage of their cluster; kvmagent VM state
// events update VM states. Called from controller/main.ts (startController).
import { logger } from '../../shared/log.js';
import { installHostModule, type HostModule } from '../host/api.js';
import type { HostOptions } from '../host/service.js';
import { registerStorageApi, onHostConnectedStorage, forgetHostCapacity, forgetPsCapacity } from '../storage/index.js';
import { registerVolumeApi } from '../storage/volumes.js';
import { registerVolumeAttachApi, volumeAttachFlow, volumeDetachFlow } from '../storage/volume-attach.js';
import { vmDestroyFlow, vmExpungeFlow, vmRecoverFlow } from '../compute/vm-destroy.js';
import { registerSnapshotApi, snapshotDeleteFlow, volumeRevertFlow, volumeSnapshotFlow } from '../storage/snapshots.js';
import { registerCloneApi, vmCloneFlow } from '../compute/clone.js';
import { imageFromVolumeFlow } from '../storage/volume-images.js';
import { registerQosApi } from '../storage/qos.js';
import { registerNetworkApi, onHostConnectedNetwork } from '../network/index.js';
import { registerComputeApi, vmCreateFlow, vmPowerFlow, vmStartFlow, watchVmEvents } from '../compute/vm.js';
import { migrationTargetRoutes, registerMigrationApi, vmMigrateFlow } from '../compute/migrate.js';
import { vmColdMigrateFlow } from '../compute/cold-migrate.js';
import { evacuateHost } from '../compute/maintenance.js';
import { registerAffinityApi } from '../compute/affinity.js';
import { HaMonitor, registerHaApi, type HaOptions } from '../compute/ha.js';
import { pruneOutcomes, resumeJournal } from '../workflow/flow.js';
import { flatArea, markHostFlat, watchFlatChanges } from '../network/flat-reconcile.js';
import { FlatNicCache } from '../network/flat-nics.js';
import type { CloudDeps } from './common.js';
import type { ControllerContext } from '../context.js';

const log = logger('cloud');

/** What the cloud module gets: the controller's context (controller/context.ts). */
export type CloudServices = ControllerContext;

export interface CloudModule {
  deps: CloudDeps;
  hosts?: HostModule;
  /** After the controller listens: resume unfinished flows, start host tracking. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface CloudOptions {
  /** Also install the host module (with these options); default: the controller's own 'hosts' module does. */
  hosts?: boolean;
  hostOptions?: HostOptions;
  /** Start host tracking (with hosts: true); default true. */
  tracker?: boolean;
  /** VM HA monitor timings; false: no HA monitor. */
  ha?: HaOptions | false;
}

export function installCloud(s: CloudServices, o: CloudOptions = {}): CloudModule {
  const { engine, reconcile } = s;
  const deps: CloudDeps = s;
  engine.register(vmCreateFlow);
  engine.register(vmStartFlow);
  engine.register(vmPowerFlow);
  engine.register(vmDestroyFlow);
  engine.register(vmRecoverFlow);
  engine.register(vmExpungeFlow);
  engine.register(volumeAttachFlow);
  engine.register(volumeDetachFlow);
  engine.register(vmMigrateFlow);
  engine.register(vmColdMigrateFlow);
  engine.register(volumeSnapshotFlow);
  engine.register(volumeRevertFlow);
  engine.register(snapshotDeleteFlow);
  engine.register(vmCloneFlow);
  engine.register(imageFromVolumeFlow);
  // the flat L3s' NICs in memory, fed by resource events: subscribed before watchFlatChanges, so
  // an apply that a change marks reads that change
  const flatNics = new FlatNicCache(s.store);
  const offFlatNics = flatNics.watch(s.bus);
  reconcile.register(flatArea(deps, flatNics));
  // host maintenance migrates (or, on local storage, stops) the host's VMs first
  s.evacuate = (hostUuid) => evacuateHost(deps, hostUuid);
  let hosts: HostModule | undefined;
  if (o.hosts) hosts = installHostModule(s, o.hostOptions ? { options: o.hostOptions } : {});
  registerStorageApi(s.registry);
  registerVolumeApi(s.registry);
  registerVolumeAttachApi(s.registry);
  registerSnapshotApi(s.registry);
  registerCloneApi(s.registry);
  registerQosApi(s.registry);
  registerNetworkApi(s.registry);
  registerComputeApi(s.registry);
  registerMigrationApi(s.registry);
  registerAffinityApi(s.registry);
  registerHaApi(s.registry);
  s.apiMiddleware.push(migrationTargetRoutes(deps, (t) => s.auth.authenticate(t)));
  const offs: Array<() => void> = [offFlatNics];
  offs.push(watchVmEvents(deps));
  offs.push(watchFlatChanges(deps, s.bus));
  // a host that (re)connects gets its cluster's bridges and primary storage
  const prepared = new Set<string>();
  offs.push(
    s.bus.subscribe((e) => {
      if (e.type !== 'resource.updated' || e.kind !== 'host' || e.resource.status !== 'Connected') return;
      const key = `${e.uuid}:${String(e.resource.lastConnectDate ?? '')}`;
      if (prepared.has(key)) return;
      prepared.add(key);
      void (async () => {
        await onHostConnectedNetwork(deps, e.resource);
        await markHostFlat(deps, e.uuid);
        await onHostConnectedStorage(deps, e.resource);
      })().catch((err: unknown) => log.warn({ host: e.uuid, err: (err as Error).message }, 'preparing a connected host failed'));
    }),
  );
  // a deleted host's capacity leaves its storages' totals; a deleted storage's per-host docs go
  offs.push(
    s.bus.subscribe((e) => {
      if (e.type !== 'resource.deleted') return;
      const done = e.kind === 'host' ? forgetHostCapacity(deps, e.resource) : e.kind === 'primary-storage' ? forgetPsCapacity(deps, e.uuid) : undefined;
      void done?.catch((err: unknown) => log.warn({ [e.kind]: e.uuid, err: (err as Error).message }, 'forgetting per-host storage capacity failed'));
    }),
  );
  // a rollback that failed (an agent was down) is retried until it succeeds: nothing stays leaked
  const retrying = new Set<string>();
  const retryRollbacks = async (): Promise<void> => {
    await pruneOutcomes(s.store);
    for (const j of await engine.unfinished()) {
      const def = engine.registry.get(j.flow);
      if (j.state !== 'rollback-failed' || !def || retrying.has(j.id)) continue;
      retrying.add(j.id);
      try {
        const r = await engine.queues.run(j.lockKeys ?? [], () => resumeJournal(s.store, def, j, undefined, () => s));
        log.info({ flow: j.flow, id: j.id, action: r.action }, 'retried a failed rollback');
      } finally {
        retrying.delete(j.id);
      }
    }
  };
  let retryTimer: NodeJS.Timeout | undefined;
  const ha = o.ha === false ? undefined : new HaMonitor(deps, o.ha ?? {});
  const m: CloudModule = {
    deps,
    async start() {
      if (o.tracker !== false) hosts?.startTracker();
      // not awaited: a resumed create completes (issue 19), and its agent commands are answered
      // through this controller's API (task callbacks), which serves only once start() returned;
      // each resumed flow holds its resources' locks meanwhile
      void engine
        .resume()
        .then((reports) => {
          for (const r of reports) if (r.action !== 'skipped') log.info({ flow: r.flow, id: r.id, action: r.action }, 'resumed flow');
        })
        .catch((e: unknown) => log.error({ err: (e as Error).message }, 'resuming unfinished flows failed; they stay for the next start'));
      retryTimer = setInterval(() => void retryRollbacks().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'retrying failed rollbacks failed')), 30_000);
      retryTimer.unref();
      ha?.start();
    },
    async stop() {
      if (retryTimer) clearInterval(retryTimer);
      await ha?.stop();
      for (const f of offs) f();
      await hosts?.stop();
    },
  };
  if (hosts) m.hosts = hosts;
  return m;
}

/** The cloud as a controller module (controller/main.ts ControllerModule shape). */
export function cloudModule(o: CloudOptions = {}): { name: string; install(s: CloudServices): void; start(): Promise<void>; stop(): Promise<void>; readonly installed: CloudModule | undefined } {
  let m: CloudModule | undefined;
  return {
    name: 'cloud',
    /** What install() made (tests reach the host module and its tracker through it). */
    get installed() {
      return m;
    },
    install: (s) => {
      m = installCloud(s, o);
    },
    start: async () => m?.start(),
    stop: async () => m?.stop(),
  };
}
