// VM HA commands of the storage agent: the storage heartbeat on shared primary storage and the
// checks a healthy peer host makes before the controller declares another host dead.
//
// Every host's storageagent writes <shared PS>/.tstack-ha/<hostUuid>.json every intervalMs
// ({writer, seq, at}; writer is random per agent process). A peer reads it for the controller,
// which calls the host silent only when (writer, seq) stops changing for its configured time
// (clock-skew free: only the controller's clock measures). The same peer checks whether a
// VM's disk files are still locked by a QEMU (QEMU's image locking): a VM whose disk is held
// must not be started elsewhere, whatever the heartbeat says.
import { defineCommand } from './command.js';
import { Obj, Type, Uuid, AbsPath, type Static } from './schema.js';
import { PrimaryStorageSpec } from './storage.js';

export const HeartbeatSet = defineCommand({
  name: 'ha/heartbeat-set',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 30_000,
  request: Obj({
    hostUuid: Uuid(),
    /** the shared primary storages of the host's cluster (sharedmountpoint, nfs in mount mode); [] stops the heartbeat */
    ps: Type.Array(PrimaryStorageSpec, { maxItems: 64 }),
    intervalMs: Type.Integer({ minimum: 200, maximum: 60_000 }),
  }),
  response: Obj({
    files: Type.Array(Type.String()),
    writer: Type.String(),
    /** storages it cannot beat on, with the reason (with several storages; a single one fails the call) */
    skipped: Type.Optional(Type.Array(Type.String())),
  }),
  description: 'start (or change) writing this host’s heartbeat file on each shared primary storage',
});

export const Beat = Obj({
  psUuid: Uuid(),
  /** absent: no heartbeat file (never written, or the storage is not readable from the peer) */
  writer: Type.Optional(Type.String({ maxLength: 64 })),
  seq: Type.Optional(Type.Integer({ minimum: 0 })),
  /** the writer's clock, for humans only */
  at: Type.Optional(Type.String({ maxLength: 64 })),
  error: Type.Optional(Type.String({ maxLength: 1024 })),
});
export type Beat = Static<typeof Beat>;

export const HeartbeatCheck = defineCommand({
  name: 'ha/heartbeat-check',
  agent: 'storage',
  mode: 'sync',
  timeoutMs: 60_000,
  request: Obj({
    /** the host whose heartbeat and disks are checked (not the one answering) */
    hostUuid: Uuid(),
    ps: Type.Array(PrimaryStorageSpec, { maxItems: 64 }),
    /** disk files of the host's VMs: reported when a process holds QEMU's write lock on them */
    volumePaths: Type.Array(AbsPath(), { maxItems: 1024 }),
  }),
  response: Obj({ beats: Type.Array(Beat), volumesInUse: Type.Array(Type.String()) }),
  description: 'read another host’s heartbeat files and test whether its VMs’ disks are still locked by a QEMU',
});

export const commands = [HeartbeatSet, HeartbeatCheck] as const;
