// A whole cloud in one process, in about a second: a real controller (SQLite, HTTP, the cloud
// modules, flows) and one host whose agents are in-process AgentServers — the real kvmagent
// code on its fake hypervisor and fake network, and protocol-level fakes of the storage and
// vrouter agents (every command of their protocol answered from memory; the ones the flows
// read results from have explicit answers). Flows, rollbacks, fault injection and races run
// here in seconds; e2e stays for what needs real guests.
//
//   const fc = await startFakeCloud(cleanup);
//   const vm = await fc.createVm('vm1');                     // POST /v1/vm-instances?wait=true
//   fc.storage.failNext('volume/create-root', 'STORAGE_ERROR'); // fault injection
//   await fc.restartKvmAgent();                              // same port and token, fresh process state
//   await fc.restartStorageAgent();                          // its calls in flight break; tasks forgotten, disk state kept
import type { ControllerModule } from '../../controller/main.js';
import { randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { AgentServer } from '../../shared/agent/server.js';
import { check } from '../../shared/protocol/schema.js';
import type { CommandDef } from '../../shared/protocol/command.js';
import * as S from '../../shared/protocol/storage.js';
import * as V from '../../shared/protocol/vrouter.js';
import * as VPC from '../../shared/protocol/vpc.js';
import * as LB from '../../shared/protocol/lb.js';
import * as IPSEC from '../../shared/protocol/ipsec.js';
import * as H from '../../shared/protocol/ha.js';
import * as BM from '../../shared/protocol/baremetal.js';
import { TStackError } from '../../shared/errors.js';
import { registerKvmAgent, KVM_CAPABILITIES, type KvmAgent } from '../../kvmagent/main.js';
import { FakeDriver } from '../../kvmagent/hypervisor/fake-driver.js';
import { FakeNetwork } from '../../kvmagent/network/bridges.js';
import { ApiRegistry } from '../../controller/api/registry.js';
import { cloudModule } from '../../controller/cloud/install.js';
import type { HaOptions } from '../../controller/compute/ha.js';
import { attach } from '../../controller/model/attachments.js';
import type { Resource } from '../../controller/store/types.js';
import type { ReconcileOptions } from '../../controller/reconcile/queue.js';
import type { Static } from '../../shared/protocol/schema.js';
import { DnsSet } from '../../shared/dns-set.js';
import { wholeFlat } from '../../vrouteragent/render/flat-desired.js';
import type { FlatApplyRequest, FlatApplySpec } from '../../vrouteragent/validate.js';
import { testController, type ApiClient, type TestController } from './controller.js';
import type { Cleanup } from './cleanup.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const isCommand = (x: unknown): x is CommandDef => typeof x === 'object' && x !== null && 'path' in x && 'request' in x && 'response' in x && 'name' in x;

type Answer = (req: any) => unknown;

/**
 * An agent that speaks a whole protocol module from memory: `answers` for the commands whose
 * results matter, the schema's default value for the rest. Records every call; `failNext`
 * makes the next call of a command fail with a typed error.
 */
export class ProtocolFake {
  readonly calls: Array<{ command: string; req: unknown }> = [];
  private faults = new Map<string, TStackError[]>();
  private holds = new Map<string, Array<{ skip: number; after: boolean; late: boolean; match?: (req: any) => boolean; reached: () => void; gate: Promise<void> }>>();
  server!: AgentServer;
  url = '';

  constructor(
    readonly agent: string,
    readonly token: string,
    private readonly commands: CommandDef[],
    private readonly answers: Record<string, Answer>,
  ) {}

  /** The next call of `command` (its name, e.g. 'volume/create-root') fails with this error. */
  failNext(command: string, code = 'INJECTED_FAULT', message = `fault injected at ${command}`): void {
    if (!this.commands.some((c) => c.name === command)) throw new Error(`${this.agent} has no command ${command}`);
    const q = this.faults.get(command) ?? [];
    q.push(new TStackError(code, message));
    this.faults.set(command, q);
  }

  /** Drop the faults still queued for `command`. */
  clearFaults(command: string): void {
    this.faults.delete(command);
  }

  /**
   * Hold a call of `command` (the `skip`+1-th from now) until release(): `after` applies its
   * effect first (the agent did the work, its answer is lost), otherwise nothing happens. The
   * held call then fails as if the caller's connection had dropped — to stand for a controller
   * killed while waiting for the agent. `late`: the call is only slow — on release it takes
   * effect and answers normally (a request overtaken by a later one). `match`: only calls whose
   * request it accepts count.
   */
  hold(command: string, o: { after?: boolean; late?: boolean; skip?: number; match?: (req: any) => boolean } = {}): { reached: Promise<void>; release(): void } {
    let reached!: () => void;
    let release!: () => void;
    const r = new Promise<void>((res) => (reached = res));
    const gate = new Promise<void>((res) => (release = res));
    const q = this.holds.get(command) ?? [];
    q.push({ skip: o.skip ?? 0, after: o.after ?? false, late: o.late ?? false, ...(o.match ? { match: o.match } : {}), reached, gate });
    this.holds.set(command, q);
    return { reached: r, release };
  }

  callsOf(command: string): unknown[] {
    return this.calls.filter((c) => c.command === command).map((c) => c.req);
  }

  async listen(port = 0): Promise<number> {
    this.server = new AgentServer({ agent: this.agent, version: 'fake', token: this.token });
    for (const cmd of this.commands) {
      this.server.handle(cmd, async (req: unknown) => {
        this.calls.push({ command: cmd.name, req });
        const fault = this.faults.get(cmd.name)?.shift();
        if (fault) throw fault;
        const held = this.holds.get(cmd.name)?.[0];
        if (held && (held.match?.(req) ?? true) && held.skip-- <= 0) {
          this.holds.get(cmd.name)!.shift();
          if (held.after) this.answers[cmd.name]?.(req);
          held.reached();
          await held.gate;
          if (!held.late) throw new TStackError('AGENT_UNREACHABLE', `${cmd.name}: the caller went away (held by the test)`);
        }
        const answer = this.answers[cmd.name];
        const res = answer ? answer(req) : Value.Create(cmd.response as TSchema);
        if (!answer && check(cmd.response as TSchema, res).length) {
          throw new TStackError('INTERNAL', `fake ${this.agent}: no answer for ${cmd.name}; add one in test/harness/fake-cloud.ts`);
        }
        return res as never;
      });
    }
    const a = await this.server.listen('127.0.0.1', port);
    this.url = `http://127.0.0.1:${a.port}`;
    return a.port;
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

const commandsOf = (mod: Record<string, unknown>): CommandDef[] => Object.values(mod).filter(isCommand);

/** What the fake storage agent holds: snapshots per volume, images in the image store, reverts done. */
export interface FakeStorageState {
  snapshots: Map<string, S.SnapshotInfo[]>;
  images: Set<string>;
  reverts: Array<{ volumeUuid: string; snapshotUuid: string }>;
}

/** What the fake storage agents answer for VM HA: every check of a host's heartbeat sees a new beat unless the host is `dead`; `locked` disk paths are held by a QEMU. */
export interface FakeHa {
  dead: Set<string>;
  locked: Set<string>;
}

/** Storage agent: volumes are records in memory; image caches always hit. */
function fakeStorage(token: string, st: FakeStorageState, ha: FakeHa): ProtocolFake & { capacity: S.Capacity } {
  let seq = 0;
  const capacity = { totalCapacity: 1024 * GiB, availableCapacity: 1000 * GiB, usedByTstack: 0 };
  const volume = (req: { ps: { path?: string }; volumeUuid: string; size?: number }, size = 64 * MiB): S.VolumeInfo => {
    const path = `${req.ps.path ?? '/fake'}/${req.volumeUuid}.qcow2`;
    return { volumeUuid: req.volumeUuid, source: { type: 'file', path, format: 'qcow2' }, installPath: path, format: 'qcow2', size: req.size ?? size, actualSize: MiB };
  };
  const snaps = (v: string): S.SnapshotInfo[] => st.snapshots.get(v) ?? st.snapshots.set(v, []).get(v)!;
  const snapshot = (req: { ps: { path?: string }; volumeUuid: string; snapshotUuid: string }): S.SnapshotInfo => {
    const have = snaps(req.volumeUuid).find((x) => x.snapshotUuid === req.snapshotUuid);
    if (have) return have;
    const info: S.SnapshotInfo = { snapshotUuid: req.snapshotUuid, volumeUuid: req.volumeUuid, size: 64 * MiB, actualSize: MiB, installPath: `${req.ps.path ?? '/fake'}/${req.volumeUuid}/${req.snapshotUuid}.qcow2` };
    snaps(req.volumeUuid).push(info);
    return info;
  };
  const fake = new ProtocolFake('tstack-storageagent', token, [...commandsOf(S), ...commandsOf(H)], {
    [H.HeartbeatSet.name]: () => ({ files: [], writer: 'fake' }),
    [H.HeartbeatCheck.name]: (req: { hostUuid: string; ps: Array<{ uuid: string }>; volumePaths: string[] }) => ({
      beats: req.ps.map((p) => ({ psUuid: p.uuid, writer: 'fake', seq: ha.dead.has(req.hostUuid) ? 0 : ++seq })),
      volumesInUse: req.volumePaths.filter((v) => ha.locked.has(v)),
    }),
    [S.CreateSnapshot.name]: snapshot,
    [S.CommitLiveSnapshot.name]: snapshot,
    [S.PrepareLiveSnapshot.name]: (req: { ps: { path?: string }; volumeUuid: string; snapshotUuid: string }) => ({ newTopPath: `${req.ps.path ?? '/fake'}/${req.volumeUuid}/top-${req.snapshotUuid}.qcow2` }),
    [S.ListSnapshots.name]: (req: { volumeUuid: string }) => ({ snapshots: snaps(req.volumeUuid) }),
    [S.DeleteSnapshot.name]: (req: { volumeUuid: string; snapshotUuid: string }) => {
      const l = snaps(req.volumeUuid);
      const i = l.findIndex((x) => x.snapshotUuid === req.snapshotUuid);
      if (i >= 0) l.splice(i, 1);
      return { deleted: i >= 0 };
    },
    [S.RevertSnapshot.name]: (req: { ps: { path?: string }; volumeUuid: string; snapshotUuid: string }) => {
      st.reverts.push({ volumeUuid: req.volumeUuid, snapshotUuid: req.snapshotUuid });
      return volume(req);
    },
    [S.VolumeToImage.name]: (req: { imageUuid: string }) => {
      st.images.add(req.imageUuid);
      return { imageUuid: req.imageUuid, format: 'qcow2', virtualSize: 64 * MiB, actualSize: 16 * MiB, installPath: `/fake/bs/${req.imageUuid}.qcow2` };
    },
    [S.FlattenVolume.name]: (req) => volume(req),
    [S.ImageStoreDelete.name]: (req: { imageUuid: string }) => ({ deleted: st.images.delete(req.imageUuid) }),
    [S.PsInit.name]: () => capacity,
    [S.ImageStoreInit.name]: () => capacity,
    [S.CreateRootVolume.name]: (req) => volume(req),
    [S.VolumeExport.name]: (req: { volumeUuid: string }) => ({
      ticket: randomUUID().replace(/-/g, ''),
      files: [{ rel: `volumes/${req.volumeUuid}/${req.volumeUuid}.qcow2`, size: MiB, sha256: 'a'.repeat(64) }],
      size: 64 * MiB,
    }),
    [S.VolumeImport.name]: (req) => volume(req),
    [S.CreateEmptyVolume.name]: (req) => volume(req),
    [S.VolumeInfoCmd.name]: (req) => volume(req),
    [S.DeleteVolume.name]: () => ({ deleted: true }),
    [S.PsImageCache.name]: (req: { ps: { path?: string }; imageUuid: string }) => {
      const path = `${req.ps.path ?? '/fake'}/cache/${req.imageUuid}.qcow2`;
      return { imageUuid: req.imageUuid, source: { type: 'file', path, format: 'qcow2' }, installPath: path, format: 'qcow2', virtualSize: 64 * MiB, actualSize: 16 * MiB, alreadyCached: true };
    },
  });
  // what ps/init and image-store/init report: tests change it to move capacity
  return Object.assign(fake, { capacity });
}

/** A flat/apply with its DNS records whole (as the fake keeps it). */
export type FlatState = FlatApplySpec;
export type FlatEipState = Static<typeof V.FlatEipApply.request>;

/**
 * vrouter agent: VPC routers are accepted and counted; flat/apply keeps each L3's whole desired
 * state in `flat` (what the real agent keeps in its data dir), namespace/delete drops it.
 */
/** A BMC the fake vrouter answers for ("address:port" → its password and state); others are unreachable. */
export interface FakeBmc {
  password: string;
  power: 'on' | 'off';
  bootDevice?: string;
}

/** What the fake deploy ramdisk reports ('silent': nothing, as a machine that never PXE-boots); the instances whose files were prepared. */
export interface FakeDeploy {
  result: BM.DeployReportT | 'silent';
  prepared: Set<string>;
}

function fakeBmcOf(bmcs: Map<string, FakeBmc>, bmc: Static<typeof BM.BmcTarget>, step: string): FakeBmc {
  const b = bmcs.get(`${bmc.address}:${bmc.port}`);
  if (!b) throw new TStackError('BMC_UNREACHABLE', `${step}: no answer from the BMC at ${bmc.address}:${bmc.port} (fake)`, { step });
  if (b.password !== bmc.password) throw new TStackError('IPMI_AUTH_FAILED', `${step}: the BMC at ${bmc.address}:${bmc.port} refused user '${bmc.username}' (fake)`, { step });
  return b;
}

function fakeVrouter(token: string): ProtocolFake & { flat: Map<string, FlatState>; flatDrift: Set<string>; bmcs: Map<string, FakeBmc>; pxe: Map<string, BM.PxeServerSpecT>; flatEips: Map<string, FlatEipState>; inspect: { hardware?: BM.InspectionReportT }; deploy: FakeDeploy } {
  const bmcs = new Map<string, FakeBmc>();
  const pxe = new Map<string, BM.PxeServerSpecT>();
  const inspect: { hardware?: BM.InspectionReportT } = {};
  const deploy: FakeDeploy = { result: { ok: true }, prepared: new Set() };
  const lbs = new Map<string, VPC.RouterSpecT['loadBalancers']>();
  const tunnels = new Map<string, VPC.RouterSpecT['ipsec']>();
  const flat = new Map<string, FlatState>();
  const flatDrift = new Set<string>();
  const flatEips = new Map<string, FlatEipState>();
  const steps: Record<string, string> = { on: 'powerOn', off: 'powerOff', reset: 'powerReset', status: 'powerStatus' };
  const fake = new ProtocolFake('tstack-vrouteragent', token, [...commandsOf(V), ...commandsOf(VPC), ...commandsOf(LB), ...commandsOf(BM), ...commandsOf(IPSEC)], {
    [BM.IpmiPower.name]: (req: { bmc: Static<typeof BM.BmcTarget>; op: BM.PowerOp }) => {
      const b = fakeBmcOf(bmcs, req.bmc, steps[req.op]!);
      if (req.op === 'on' || req.op === 'off') b.power = req.op;
      return { powerState: b.power };
    },
    [BM.PxeApply.name]: (req: { server: BM.PxeServerSpecT }) => {
      pxe.set(req.server.pxeServerUuid, structuredClone(req.server));
      return { state: { pxeServerUuid: req.server.pxeServerUuid, namespace: `fake-pxe-${req.server.pxeServerUuid.slice(0, 8)}`, running: req.server.running, http: req.server.running, recentBoots: [], reports: [] }, changed: true };
    },
    // a machine PXE-booting the inspection ramdisk reports `hardware` (when the test set it)
    [BM.PxeStatus.name]: (req: { pxeServerUuid: string }) => {
      const sp = pxe.get(req.pxeServerUuid);
      if (!sp) return {};
      const hw = inspect.hardware;
      const reports = sp.discoveryToken && hw ? [{ token: sp.discoveryToken, at: new Date().toISOString(), report: hw }] : [];
      // a machine sent to the deploy ramdisk reports deploy.result at once (none while 'silent')
      const deploying = sp.machines.filter((m) => m.boot === 'deploy' && m.token);
      const deployReports = deploy.result === 'silent' ? [] : deploying.map((m) => ({ token: m.token!, at: new Date().toISOString(), report: deploy.result as BM.DeployReportT }));
      const recentBoots = deploying.map((m) => ({ mac: m.mac, boot: 'deploy', at: new Date().toISOString() }));
      return { state: { pxeServerUuid: sp.pxeServerUuid, namespace: 'fake', running: sp.running, http: sp.running, recentBoots, reports, deployReports } };
    },
    [BM.DeployPrepare.name]: (req: { instanceUuid: string }) => {
      deploy.prepared.add(req.instanceUuid);
      return { image: { sizeBytes: 18 * MiB, sha256: 'a'.repeat(64), cached: false }, configDrive: { sizeBytes: 360_448, sha256: 'b'.repeat(64) } };
    },
    [BM.DeployCleanup.name]: (req: { instanceUuid: string }) => ({ removed: deploy.prepared.delete(req.instanceUuid) }),
    [BM.PxeDelete.name]: (req: { pxeServerUuid: string }) => ({ deleted: pxe.delete(req.pxeServerUuid) }),
    [BM.IpmiBootDevice.name]: (req: { bmc: Static<typeof BM.BmcTarget>; device: BM.BootDevice }) => {
      fakeBmcOf(bmcs, req.bmc, 'setBootDevice').bootDevice = req.device;
      return { device: req.device };
    },
    // DNS records sent as a delta are applied to the set held, as the real agent does (a base
    // not held: DNS_BASE_MISMATCH); `flat` keeps the request with its records whole (and without
    // `verify`, which is no part of the state). `flatDrift`: L3s whose host files a test made
    // drift; what the real agent checks against the disk repairs them: `verify` (the periodic
    // pass) or the same whole state again
    [V.FlatApply.name]: (req: FlatApplyRequest) => {
      const l3 = req.network.l3NetworkUuid;
      const was = flat.get(l3);
      const { verify, ...state } = req;
      const { want } = wholeFlat(state, was && DnsSet.of(was.dns.records));
      const changed = JSON.stringify(was) !== JSON.stringify(want);
      if (verify === true || (req.dns.records !== undefined && !changed)) flatDrift.delete(l3);
      const held = DnsSet.of(want.dns.records);
      flat.set(l3, structuredClone(want));
      return { namespace: { l3NetworkUuid: l3, namespace: `fake-${l3.slice(0, 8)}`, hostVeth: 'fakeh', nsVeth: 'faken', metadata: req.network.metadata !== false }, changed, releasedLeases: 0, dnsDigest: held.digest };
    },
    [V.NamespaceDelete.name]: (req: { l3NetworkUuid: string }) => ({ deleted: flat.delete(req.l3NetworkUuid) }),
    // one agent stands for every host: the host's set is kept under its uuid
    [V.FlatEipApply.name]: (req: FlatEipState) => {
      const changed = JSON.stringify(flatEips.get(req.hostUuid)?.eips ?? []) !== JSON.stringify(req.eips);
      if (req.eips.length) flatEips.set(req.hostUuid, structuredClone(req));
      else flatEips.delete(req.hostUuid);
      return { ...(req.eips.length ? { namespace: 'fake-eip' } : {}), eips: req.eips.length, changed };
    },
    [VPC.RouterApply.name]: (req: { router: VPC.RouterSpecT }) => {
      lbs.set(req.router.routerUuid, req.router.loadBalancers);
      tunnels.set(req.router.routerUuid, req.router.ipsec);
      return { router: { routerUuid: req.router.routerUuid, namespace: 'fake', interfaces: [] }, changed: true, natRules: 0, durationMs: 0 };
    },
    // every backend of the last applied state is UP (haproxy's checks are not simulated)
    [LB.LbStatus.name]: (req: { routerUuid: string }) => ({
      running: (lbs.get(req.routerUuid) ?? []).length > 0,
      listeners: (lbs.get(req.routerUuid) ?? []).map((l) => ({ listenerUuid: l.listenerUuid, servers: l.backends.map((b) => ({ vmNicUuid: b.vmNicUuid, ip: b.ip, status: 'UP', checkStatus: 'L4OK' })) })),
    }),
    // every connection of the last applied state is up (no peer is simulated)
    [IPSEC.IpsecStatus.name]: (req: { routerUuid: string }) => ({
      running: (tunnels.get(req.routerUuid) ?? []).length > 0,
      dataPlane: 'libipsec',
      connections: (tunnels.get(req.routerUuid) ?? []).map((c) => ({ connectionUuid: c.connectionUuid, status: 'up', ikeState: 'ESTABLISHED', childState: 'INSTALLED' })),
    }),
  });
  return Object.assign(fake, { flat, flatDrift, bmcs, pxe, flatEips, inspect, deploy });
}

export interface FakeCloud {
  controller: TestController;
  api: ApiClient;
  registry: ApiRegistry;
  /** Inventory uuids: zone, cluster, host, ps, bs, image, offering, l2, l3. */
  ids: Record<string, string>;
  kvm: { agent: KvmAgent; driver: FakeDriver; server: AgentServer; port: number; token: string; network?: FakeNetwork };
  /** Every host: [0] is fc-host (ids.host, kvm above), then the extra hosts fc-host2, fc-host3, … */
  hosts: Array<{ uuid: string; kvm: { agent: KvmAgent; driver: FakeDriver; server: AgentServer; port: number; token: string; network?: FakeNetwork }; kill(): Promise<void> }>;
  /** The storage agents' HA answers (test/harness: dead heartbeats, locked disks). */
  ha: FakeHa;
  /** `capacity`: what ps/init reports (change it, then reconnect the storage). */
  storage: ProtocolFake & { capacity: S.Capacity };
  /** Each host's storage agent, in `hosts` order: `storage` for all, unless started with `storagePerHost`. */
  storages: Array<ProtocolFake & { capacity: S.Capacity }>;
  /** `flat`: each L3's desired state as last applied (flat/apply). */
  /** `flatDrift`: L3s whose files on the host differ from the state (a test adds them; a check repairs them). */
  /** `flatEips`: each host's flat EIP set as last applied (flat/eip/apply), by host uuid. */
  vrouter: ProtocolFake & { flat: Map<string, FlatState>; flatDrift: Set<string>; bmcs: Map<string, FakeBmc>; pxe: Map<string, BM.PxeServerSpecT>; flatEips: Map<string, FlatEipState>; inspect: { hardware?: BM.InspectionReportT }; deploy: FakeDeploy };
  /**
   * The vrouter agent killed and started again on the same port and token: connections in
   * progress break. `lose`: it comes back without its state (a wiped data dir).
   */
  restartVrouter(o?: { lose?: boolean }): Promise<void>;
  /** Create a VM (job, waited for); returns the response ({status, body}). */
  createVm(name: string, extra?: Record<string, unknown>): Promise<{ status: number; body: any }>;
  /** POST an action and wait for its job. */
  action(vmUuid: string, action: string, params?: Record<string, unknown>): Promise<{ status: number; body: any }>;
  /** Kill the in-process kvmagent and start a fresh one on the same port and token (hypervisor state kept, as libvirt keeps domains). */
  restartKvmAgent(): Promise<void>;
  /**
   * Kill the fake storage agent and start it again on the same port and token: calls in flight
   * lose their connection and the new one knows none of the old tasks (the controller sees
   * TASK_LOST); what it holds (snapshots, images) stays, as files on disk would.
   */
  restartStorageAgent(): Promise<void>;
  /** The fake storage agent's snapshots, images and reverts. */
  storageState: FakeStorageState;
  /**
   * A controller killed mid-way: the running one is closed without waiting for its flows (its
   * inventory file and flow journals stay as they are) and a fresh one starts on the same data
   * dir, resuming the unfinished flows; `controller`, `api` and `registry` then point to it.
   * A cloud started with extra modules passes fresh instances of them (module objects hold state).
   * `whileDown` runs between the two.
   */
  crashController(modules?: ControllerModule[], c?: { whileDown?: () => unknown }): Promise<void>;
}

/**
 * `modules`: more controller modules next to the cloud (e.g. monitoring); `store`/`storePrefix`: a
 * redis:// inventory instead of SQLite; `extraHosts`: hosts besides fc-host, each with its own
 * in-process kvmagent (the storage and vrouter fakes are shared); `psType`: the primary
 * storage's type (SharedMountPoint for HA and migration); `ha`: HA monitor timings (default: fast, for tests);
 * `storagePerHost`: every extra host gets its own fake storage agent (same state), so a test sees
 * which host's agent a call went to (local storage: cold migration).
 */
export async function startFakeCloud(cleanup: Cleanup, o: { modules?: ControllerModule[]; store?: string; storePrefix?: string; extraHosts?: number; psType?: 'LocalStorage' | 'SharedMountPoint'; ha?: HaOptions | false; storagePerHost?: boolean; reconcile?: ReconcileOptions } = {}): Promise<FakeCloud> {
  const kvmToken = randomUUID() + randomUUID();
  const driver = new FakeDriver();
  const network = new FakeNetwork(['eth0']);
  const startKvm = async (port = 0, token = kvmToken, drv = driver, net = network): Promise<{ agent: KvmAgent; server: AgentServer; port: number }> => {
    const server = new AgentServer({ agent: 'tstack-kvmagent', version: 'fake', token, capabilities: KVM_CAPABILITIES });
    const agent = await registerKvmAgent(server, { driver: drv, network: net }, { noWatcher: true, checkHostResources: false, kernelFeatures: { vlan8021q: true, vxlan: true } });
    const a = await server.listen('127.0.0.1', port);
    return { agent, server, port: a.port };
  };
  const kvm = { ...(await startKvm()), driver, token: kvmToken, network };
  cleanup.add(async () => {
    await kvm.agent.stop();
    await kvm.server.close();
  }, 'fake kvmagent');
  const storageState: FakeStorageState = { snapshots: new Map(), images: new Set(), reverts: [] };
  const ha: FakeHa = { dead: new Set(), locked: new Set() };
  const storage = fakeStorage(randomUUID() + randomUUID(), storageState, ha);
  const vrouter = fakeVrouter(randomUUID() + randomUUID());
  const storagePort = await storage.listen();
  const vrouterPort = await vrouter.listen();
  cleanup.add(() => storage.close(), 'fake storageagent');
  cleanup.add(() => vrouter.close(), 'fake vrouteragent');

  const registry = new ApiRegistry();
  const stores = {
    ...(o.store !== undefined ? { store: o.store, ...(o.storePrefix !== undefined ? { storePrefix: o.storePrefix } : {}) } : {}),
    ...(o.reconcile ? { reconcile: o.reconcile } : {}),
  };
  const controller = await testController(cleanup, { registry, modules: [cloudModule({ hosts: false, ha: o.ha ?? { checkIntervalMs: 100, hostDeadAfterMs: 400, retryMs: 300 } }), ...(o.modules ?? [])], ...stores } as never);
  const api = await controller.login('admin', controller.adminPassword);
  const admin = controller.auth.adminAccountUuid;
  const now = new Date().toISOString();
  const rec = (kind: string, name: string, extra: Record<string, unknown>): Resource => ({ uuid: randomUUID(), kind, name, createDate: now, lastOpDate: now, ownerAccountUuid: admin, tags: [], ...extra }) as Resource;
  const post = async (path: string, body: unknown): Promise<any> => {
    const r = await api.post(path, body);
    if (r.status >= 300) throw new Error(`fake cloud: POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };

  const ids: Record<string, string> = {};
  ids.zone = (await post('/v1/zones', { name: 'fc-zone' })).uuid;
  ids.cluster = (await post('/v1/clusters', { name: 'fc-cluster', zoneUuid: ids.zone })).uuid;
  // the host as the host module leaves it after an SSH add: Connected, agents registered
  const host = await controller.store.create(
    rec('host', 'fc-host', {
      parentUuid: ids.cluster, clusterUuid: ids.cluster, zoneUuid: ids.zone, managementIp: '127.0.0.1', state: 'Enabled', status: 'Connected', hypervisorType: 'KVM', virtType: 'qemu',
      totalCpu: 8, totalMemory: 16 * GiB,
      _agents: { kvmagent: { port: kvm.port, token: kvmToken }, storageagent: { port: storagePort, token: storage.token }, vrouteragent: { port: vrouterPort, token: vrouter.token } },
    }),
  );
  ids.host = host.uuid;
  const hosts: FakeCloud['hosts'] = [];
  const killer = (k: { agent: KvmAgent; server: AgentServer }) => async (): Promise<void> => {
    await k.agent.stop();
    await k.server.close();
  };
  hosts.push({ uuid: host.uuid, kvm, kill: killer(kvm) });
  const storages = [storage];
  for (let n = 2; n <= (o.extraHosts ?? 0) + 1; n++) {
    let st = { port: storagePort, token: storage.token };
    if (o.storagePerHost) {
      const own = fakeStorage(randomUUID() + randomUUID(), storageState, ha);
      st = { port: await own.listen(), token: own.token };
      cleanup.add(() => own.close(), `fake storageagent of fc-host${n}`);
      storages.push(own);
    } else storages.push(storage);
    const token = randomUUID() + randomUUID();
    const drv = new FakeDriver();
    const net = new FakeNetwork(['eth0']);
    const k: FakeCloud['kvm'] = { ...(await startKvm(0, token, drv, net)), driver: drv, token, network: net };
    let dead = false;
    cleanup.add(async () => {
      if (!dead) await killer(k)();
    }, `fake kvmagent of fc-host${n}`);
    const h = await controller.store.create(
      rec('host', `fc-host${n}`, {
        parentUuid: ids.cluster, clusterUuid: ids.cluster, zoneUuid: ids.zone, managementIp: '127.0.0.1', state: 'Enabled', status: 'Connected', hypervisorType: 'KVM', virtType: 'qemu',
        totalCpu: 8, totalMemory: 16 * GiB,
        _agents: { kvmagent: { port: k.port, token }, storageagent: st, vrouteragent: { port: vrouterPort, token: vrouter.token } },
      }),
    );
    ids[`host${n}`] = h.uuid;
    hosts.push({
      uuid: h.uuid,
      kvm: k,
      kill: async () => {
        dead = true;
        await killer(k)();
      },
    });
  }
  ids.ps = (await controller.store.create(rec('primary-storage', 'fc-ps', { parentUuid: ids.zone, zoneUuid: ids.zone, type: o.psType ?? 'LocalStorage', url: '/fake/ps', state: 'Enabled', status: 'Connected', totalCapacity: 1024 * GiB, availableCapacity: 1000 * GiB }))).uuid;
  await attach(controller.store, 'cluster-primary-storage', ids.cluster, ids.ps, admin);
  ids.bs = (await controller.store.create(rec('backup-storage', 'fc-bs', { type: 'ImageStoreBackupStorage', hostname: '127.0.0.1', url: '/fake/bs', state: 'Enabled', status: 'Connected', _hostUuid: host.uuid }))).uuid;
  ids.image = (await controller.store.create(rec('image', 'fc-image', { state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 64 * MiB, backupStorageRefs: [{ backupStorageUuid: ids.bs }] }))).uuid;
  ids.offering = (await post('/v1/instance-offerings', { name: 'fc-small', cpuNum: 1, memorySize: 128 * MiB })).uuid;
  ids.l2 = (await post('/v1/l2-networks', { name: 'fc-l2', zoneUuid: ids.zone, physicalInterface: 'eth0' })).uuid;
  ids.l3 = (await post('/v1/l3-networks', { name: 'fc-l3', l2NetworkUuid: ids.l2 })).uuid;
  await post('/v1/ip-ranges', { name: 'fc-range', l3NetworkUuid: ids.l3, startIp: '10.77.0.10', endIp: '10.77.0.50', netmask: '255.255.255.0', gateway: '10.77.0.1' });
  await post(`/v1/clusters/${ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: ids.l2 } });

  const fc: FakeCloud = {
    controller,
    api,
    registry,
    ids,
    kvm,
    hosts,
    ha,
    storage,
    storages,
    vrouter,
    createVm: (name, extra = {}) => fc.api.post('/v1/vm-instances?wait=true', { name, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], ...extra }),
    action: (vmUuid, action, params = {}) => fc.api.post(`/v1/vm-instances/${vmUuid}/actions?wait=true`, { [action]: params }),
    storageState,
    async restartVrouter(r = {}) {
      await vrouter.close();
      if (r.lose) vrouter.flat.clear();
      await vrouter.listen(vrouterPort);
    },
    async crashController(modules?: ControllerModule[], c = {}) {
      if (o.modules?.length && !modules) throw new Error('crashController: a fake cloud with extra modules needs fresh instances of them');
      const old = fc.controller;
      await old.stop();
      await c.whileDown?.();
      const reg = new ApiRegistry();
      const next = await testController(cleanup, { registry: reg, dataDir: old.dataDir, adminPassword: old.adminPassword, modules: [cloudModule({ hosts: false }), ...(modules ?? [])], ...stores } as never);
      Object.assign(fc, { controller: next, registry: reg, api: await next.login('admin', next.adminPassword) });
    },
    async restartStorageAgent() {
      await storage.close();
      await storage.listen(storagePort);
    },
    async restartKvmAgent() {
      const port = kvm.port;
      await kvm.agent.stop();
      await kvm.server.close();
      Object.assign(kvm, await startKvm(port));
    },
  };
  return fc;
}
