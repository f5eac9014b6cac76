// The storage and vrouter sides of a simulated host: every command of shared/protocol's storage,
// ha, vrouter and vpc modules answered from memory (the commands whose results the controller
// reads have explicit answers, the rest the schema's default value), on the host's AgentServer.
// The hypervisor side is kvmagent's own code on its FakeDriver (simulator/host.ts).
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { TStackError } from '../shared/errors.js';
import type { AgentServer } from '../shared/agent/server.js';
import type { CommandDef } from '../shared/protocol/command.js';
import { check } from '../shared/protocol/schema.js';
import * as S from '../shared/protocol/storage.js';
import * as H from '../shared/protocol/ha.js';
import * as V from '../shared/protocol/vrouter.js';
import * as VPC from '../shared/protocol/vpc.js';
import { digestAfter, digestOf, dnsMismatch } from '../shared/dns-set.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each answer types its own request; the server validated it against the schema
type Answer = (req: any) => unknown;

const isCommand = (x: unknown): x is CommandDef => typeof x === 'object' && x !== null && 'path' in x && 'request' in x && 'response' in x && 'name' in x;
const commandsOf = (mod: Record<string, unknown>): CommandDef[] => Object.values(mod).filter(isCommand);

/** What a simulated host's storage holds (per host: local storage is local). */
export interface FakeStorageState {
  volumes: Map<string, S.VolumeInfo>;
  snapshots: Map<string, S.SnapshotInfo[]>;
  images: Set<string>;
  /** Storage commands on a snapshot, volume or image that ran (not those a repeated task id joined): [command, that uuid]; the last MAX_CALLS. */
  calls: Array<[string, string]>;
}

const MAX_CALLS = 100_000;

export const newStorageState = (): FakeStorageState => ({ volumes: new Map(), snapshots: new Map(), images: new Set(), calls: [] });

function storageAnswers(st: FakeStorageState): Record<string, Answer> {
  let seq = 0;
  const capacity = (): S.Capacity => ({ totalCapacity: 10 * 1024 * GiB, availableCapacity: 10 * 1024 * GiB - st.volumes.size * MiB, usedByTstack: st.volumes.size * MiB });
  const volume = (req: { ps: { path?: string }; volumeUuid: string; size?: number }, size = 64 * MiB): S.VolumeInfo => {
    const path = `${req.ps.path ?? '/sim'}/${req.volumeUuid}.qcow2`;
    const v: S.VolumeInfo = { volumeUuid: req.volumeUuid, source: { type: 'file', path, format: 'qcow2' }, installPath: path, format: 'qcow2', size: req.size ?? size, actualSize: MiB };
    st.volumes.set(req.volumeUuid, v);
    return v;
  };
  const snaps = (v: string): S.SnapshotInfo[] => st.snapshots.get(v) ?? st.snapshots.set(v, []).get(v)!;
  const snapshot = (req: { ps: { path?: string }; volumeUuid: string; snapshotUuid: string }): S.SnapshotInfo => {
    const have = snaps(req.volumeUuid).find((x) => x.snapshotUuid === req.snapshotUuid);
    if (have) return have;
    const info: S.SnapshotInfo = { snapshotUuid: req.snapshotUuid, volumeUuid: req.volumeUuid, size: 64 * MiB, actualSize: MiB, installPath: `${req.ps.path ?? '/sim'}/${req.volumeUuid}/${req.snapshotUuid}.qcow2` };
    snaps(req.volumeUuid).push(info);
    return info;
  };
  const image = (imageUuid: string): S.ImageInfo => {
    st.images.add(imageUuid);
    return { imageUuid, format: 'qcow2', virtualSize: 64 * MiB, actualSize: 16 * MiB, installPath: `/sim/bs/${imageUuid}.qcow2` };
  };
  return {
    [H.HeartbeatSet.name]: () => ({ files: [], writer: 'sim' }),
    [H.HeartbeatCheck.name]: (req: { ps: Array<{ uuid: string }> }) => ({ beats: req.ps.map((p) => ({ psUuid: p.uuid, writer: 'sim', seq: ++seq })), volumesInUse: [] }),
    [S.ImageStoreInit.name]: capacity,
    [S.ImageStoreCapacity.name]: capacity,
    [S.ImageStoreDownload.name]: (req: { imageUuid: string }) => image(req.imageUuid),
    [S.ImageStoreImageInfo.name]: (req: { imageUuid: string }) => image(req.imageUuid),
    [S.ImageStoreDelete.name]: (req: { imageUuid: string }) => ({ deleted: st.images.delete(req.imageUuid) }),
    [S.PsInit.name]: capacity,
    [S.PsCapacity.name]: capacity,
    [S.PsImageCache.name]: (req: { ps: { path?: string }; imageUuid: string }) => {
      const path = `${req.ps.path ?? '/sim'}/cache/${req.imageUuid}.qcow2`;
      return { imageUuid: req.imageUuid, source: { type: 'file', path, format: 'qcow2' }, installPath: path, format: 'qcow2', virtualSize: 64 * MiB, actualSize: 16 * MiB, alreadyCached: true };
    },
    [S.CreateRootVolume.name]: (req) => volume(req),
    [S.CreateEmptyVolume.name]: (req) => volume(req),
    [S.FlattenVolume.name]: (req) => volume(req),
    [S.ResizeVolume.name]: (req) => volume(req),
    [S.DeleteVolume.name]: (req: { volumeUuid: string }) => ({ deleted: st.volumes.delete(req.volumeUuid) }),
    [S.CreateSnapshot.name]: snapshot,
    [S.CommitLiveSnapshot.name]: snapshot,
    [S.PrepareLiveSnapshot.name]: (req: { ps: { path?: string }; volumeUuid: string; snapshotUuid: string }) => ({ newTopPath: `${req.ps.path ?? '/sim'}/${req.volumeUuid}/top-${req.snapshotUuid}.qcow2` }),
    [S.ListSnapshots.name]: (req: { volumeUuid: string }) => ({ snapshots: snaps(req.volumeUuid) }),
    [S.DeleteSnapshot.name]: (req: { volumeUuid: string; snapshotUuid: string }) => {
      const l = snaps(req.volumeUuid);
      const i = l.findIndex((x) => x.snapshotUuid === req.snapshotUuid);
      if (i >= 0) l.splice(i, 1);
      return { deleted: i >= 0 };
    },
    [S.RevertSnapshot.name]: (req) => volume(req),
    [S.VolumeToImage.name]: (req: { imageUuid: string }) => image(req.imageUuid),
  };
}

/** What a simulated host's vrouter holds: per L3, the digest of the DNS records it was sent (lost when the host's agent restarts). */
export interface FakeVrouterState {
  dnsDigests: Map<string, string>;
  /**
   * L3s whose files on the host differ from the state (tests add them): repaired by what the
   * real agent checks against the disk, a flat/apply with `verify` (the controller's periodic
   * pass) or the same whole set again.
   */
  drifted: Set<string>;
}

export const newVrouterState = (): FakeVrouterState => ({ dnsDigests: new Map(), drifted: new Set() });

type FlatApplyReq = { network: { l3NetworkUuid: string; metadata?: boolean }; verify?: boolean; dns: { records?: Array<{ name: string; ip: string }>; delta?: Parameters<typeof digestAfter>[0] } };

/**
 * A host's vrouter: flat/apply keeps, per L3, only the digest of the DNS records it was sent
 * (1,000 hosts holding each L3's 10,000 names would not fit): a delta is checked by digest
 * arithmetic, as the real agent checks it (a base it does not hold, a result that is not the
 * digest sent: DNS_BASE_MISMATCH), and answered with the digest held.
 */
function vrouterAnswers(vr: FakeVrouterState): Record<string, Answer> {
  const digests = vr.dnsDigests;
  return {
    [VPC.RouterApply.name]: (req: { router: { routerUuid: string } }) => ({ router: { routerUuid: req.router.routerUuid, namespace: 'sim', interfaces: [] }, changed: true, natRules: 0, durationMs: 0 }),
    [V.FlatApply.name]: (req: FlatApplyReq) => {
      const l3 = req.network.l3NetworkUuid;
      const held = digests.get(l3);
      const d = req.dns.delta;
      let digest: string;
      if (d) {
        if (held !== d.base) throw dnsMismatch(`the DNS records held (${held ?? 'none'}) are not the delta's base ${d.base} (simulator)`, held, 'dns.delta.base');
        const got = digestAfter(d);
        if (got !== d.digest) throw dnsMismatch(`the DNS records after the delta (${got}) are not ${d.digest} (simulator)`, held, 'dns.delta.digest');
        digest = got;
      } else digest = digestOf(req.dns.records ?? []);
      if (req.verify === true || (d === undefined && digest === held)) vr.drifted.delete(l3);
      digests.set(l3, digest);
      return { namespace: { l3NetworkUuid: l3, namespace: 'sim', hostVeth: 'simh', nsVeth: 'simn', metadata: req.network.metadata !== false }, changed: digest !== held, releasedLeases: 0, dnsDigest: digest };
    },
    [V.NamespaceDelete.name]: (req: { l3NetworkUuid: string }) => {
      vr.drifted.delete(req.l3NetworkUuid);
      return { deleted: digests.delete(req.l3NetworkUuid) };
    },
  };
}

/** The schema's default value of each command without an explicit answer (made once; never mutated). */
const defaults = new Map<CommandDef, unknown>();
function defaultAnswer(cmd: CommandDef): unknown {
  if (!defaults.has(cmd)) {
    const res = Value.Create(cmd.response as TSchema);
    defaults.set(cmd, check(cmd.response as TSchema, res).length ? undefined : res);
  }
  const res = defaults.get(cmd);
  if (res === undefined) throw new TStackError('NOT_IMPLEMENTED', `the simulator has no answer for ${cmd.name} (add one in simulator/fakes.ts)`);
  return res;
}

function register(server: AgentServer, commands: CommandDef[], answers: Record<string, Answer>, calls?: FakeStorageState['calls']): void {
  for (const cmd of commands) {
    const answer = answers[cmd.name];
    server.handle(cmd, async (req: unknown) => {
      const r = req as { snapshotUuid?: unknown; volumeUuid?: unknown; imageUuid?: unknown };
      const on = r.snapshotUuid ?? r.volumeUuid ?? r.imageUuid;
      // the periodic commands (capacity, heartbeats) name none; bounded for long simulator runs
      if (calls && typeof on === 'string') {
        if (calls.length >= MAX_CALLS) calls.splice(0, MAX_CALLS / 2);
        calls.push([cmd.name, on]);
      }
      return (answer ? answer(req) : defaultAnswer(cmd)) as never;
    });
  }
}

// listed once per process, not once per host
const storageCommands = [...commandsOf(S), ...commandsOf(H)];
const vrouterCommands = [...commandsOf(V), ...commandsOf(VPC)];

/** Register the storage (+ha) and vrouter (+vpc) commands of a simulated host on its server. */
export function registerFakeStorageAndVrouter(server: AgentServer, st: FakeStorageState, vr: FakeVrouterState = newVrouterState()): void {
  register(server, storageCommands, storageAnswers(st), st.calls);
  register(server, vrouterCommands, vrouterAnswers(vr));
}
