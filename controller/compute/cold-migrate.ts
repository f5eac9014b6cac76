// Cold migration of a stopped VM on local storage (manual 冷迁移: "本地存储的云主机支持热迁移与冷迁移";
// ZStack's LocalStorageMigrateVolume, done for all the VM's volumes at once): vm-instances action
// `migrate {hostUuid?}` on a Stopped VM copies its local-storage volumes to the destination host's
// local storage and repoints them there; the VM then starts on the destination.
//
// vm-cold-migrate steps (onResume 'rollback': a failure, or a controller killed at any point,
// leaves the VM Stopped on the source with its files untouched):
//   state   Stopped → Migrating                                      ⟲ back to Stopped
//   copy    each local volume: source storageagent ps/volume/export, destination ps/volume/import
//           (every file sha256-verified there; progress from the agent's events)
//                                                                    ⟲ delete the copies on the destination
//   switch  volumes' hostUuid/clusterUuid → destination, the VM's lastHostUuid/clusterUuid too,
//           state back to Stopped                                    ⟲ records back to the source
// The source's files are deleted only after the flow has finished (outside it: a controller
// killed then leaves orphan files on the source, never a VM without a disk); best effort.
// Test-only fault injection: TSTACK_FAULT_INJECT=vm-cold-migrate:<step> (cloud/common.ts).
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as S from '../../shared/protocol/storage.js';
import type { OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import type { FlowContext, FlowDef } from '../workflow/flow.js';
import { agentOf, callHost, injectFault, mustGet, type CloudDeps } from '../cloud/common.js';
import { attachedTo } from '../model/attachments.js';
import { psSpec } from '../storage/index.js';
import { dataVolumesOf } from '../storage/volumes.js';

const log = logger('vm-cold-migrate');
const FLOW = 'vm-cold-migrate';

export interface ColdMigrateData extends Record<string, unknown> {
  vmUuid: string;
  srcHostUuid: string;
  destHostUuid: string;
  /** the local-storage volumes to copy */
  volumeUuids: string[];
  /** volumes whose copy on the destination may exist (rollback deletes them there) */
  copied: string[];
}

type Ctx = FlowContext<ColdMigrateData>;

/** The VM's volumes (root first) whose primary storage is LocalStorage. */
export async function localVolumesOf(d: CloudDeps, vm: Resource): Promise<Resource[]> {
  const root = await mustGet(d.store, String(vm.rootVolumeUuid), 'volume');
  const out: Resource[] = [];
  for (const v of [root, ...(await dataVolumesOf(d, vm.uuid))]) {
    const ps = await mustGet(d.store, String(v.primaryStorageUuid), 'primary-storage');
    if (ps.type === 'LocalStorage') out.push(v);
  }
  return out;
}

/** Point the VM's records at `hostUuid` (idempotent; used by switch and its rollback). */
async function pointTo(ctx: Ctx, hostUuid: string, state?: string): Promise<void> {
  const host = await mustGet(ctx.store, hostUuid, 'host');
  for (const u of ctx.data.volumeUuids) await ctx.store.update(u, { hostUuid, clusterUuid: host.parentUuid });
  await ctx.store.update(ctx.data.vmUuid, { lastHostUuid: hostUuid, clusterUuid: host.parentUuid, ...(state ? { state } : {}) });
}

async function copyVolume(ctx: Ctx, vol: Resource, index: number): Promise<void> {
  const d: CloudDeps = ctx.controller;
  const { srcHostUuid, destHostUuid, volumeUuids } = ctx.data;
  const ps = psSpec(await mustGet(ctx.store, String(vol.primaryStorageUuid), 'primary-storage'));
  const src = await mustGet(ctx.store, srcHostUuid, 'host');
  const share = 80 / volumeUuids.length;
  const base = 10 + index * share;
  ctx.progress(Math.floor(base), `copying volume ${vol.name}: hashing on the source`);
  const ex = await callHost(d, srcHostUuid, 'storageagent', S.VolumeExport, { ps, volumeUuid: vol.uuid });
  const unsub = d.bus.onAgentEvent(S.VOLUME_TRANSFER_EVENT, (e) => {
    if (e.data.volumeUuid !== vol.uuid || typeof e.data.percent !== 'number') return;
    ctx.progress(Math.floor(base + (share * e.data.percent) / 100), `copying volume ${vol.name}: ${String(e.data.bytes)} of ${String(e.data.total)} bytes`);
  });
  try {
    await callHost(d, destHostUuid, 'storageagent', S.VolumeImport, { ps, volumeUuid: vol.uuid, from: { ...agentOf(src, 'storageagent'), ticket: ex.ticket, files: ex.files } });
  } finally {
    unsub();
    await callHost(d, srcHostUuid, 'storageagent', S.VolumeExportEnd, { ticket: ex.ticket }).catch(() => undefined);
  }
}

export const vmColdMigrateFlow: FlowDef<ColdMigrateData> = {
  name: FLOW,
  onResume: 'rollback',
  steps: [
    {
      name: 'state',
      async run(ctx) {
        await ctx.store.transition(ctx.data.vmUuid, 'Stopped', 'Migrating');
        injectFault(FLOW, 'state');
      },
      async rollback(ctx) {
        const vm = await ctx.store.get(ctx.data.vmUuid);
        if (vm?.state === 'Migrating') await ctx.store.update(vm.uuid, { state: 'Stopped' });
      },
    },
    {
      name: 'copy',
      async run(ctx) {
        for (const [i, u] of ctx.data.volumeUuids.entries()) {
          const vol = await mustGet(ctx.store, u, 'volume');
          if (!ctx.data.copied.includes(u)) {
            ctx.data.copied.push(u);
            await ctx.save();
          }
          await copyVolume(ctx, vol, i);
          injectFault(FLOW, 'copy');
        }
      },
      async rollback(ctx) {
        const d: CloudDeps = ctx.controller;
        for (const u of ctx.data.copied) {
          const vol = await ctx.store.get(u);
          if (!vol) continue;
          const ps = await mustGet(ctx.store, String(vol.primaryStorageUuid), 'primary-storage');
          // only the destination's copy: the source keeps the VM's disks
          await callHost(d, ctx.data.destHostUuid, 'storageagent', S.DeleteVolume, { ps: psSpec(ps), volumeUuid: u });
        }
      },
    },
    {
      name: 'switch',
      async run(ctx) {
        ctx.progress(95, 'switching the volumes to the destination');
        await pointTo(ctx, ctx.data.destHostUuid, 'Stopped');
        injectFault(FLOW, 'switch');
      },
      async rollback(ctx) {
        await pointTo(ctx, ctx.data.srcHostUuid);
      },
    },
  ],
};

/**
 * Cold-migrate a Stopped VM whose volumes are on local storage to `dest` (chosen by the caller
 * from the migration targets). The source's files are freed after the flow succeeded.
 */
export async function coldMigrate(d: CloudDeps, vm: Resource, srcHostUuid: string, destHostUuid: string, job?: OpContext['job']): Promise<Resource> {
  const vols = await localVolumesOf(d, vm);
  const dest = await mustGet(d.store, destHostUuid, 'host');
  const attached = new Set(await attachedTo(d.store, 'cluster-primary-storage', String(dest.parentUuid)));
  const missing = vols.filter((v) => !attached.has(String(v.primaryStorageUuid)));
  if (missing.length) {
    throw new TStackError('CONFLICT', `host ${dest.name} cannot hold volume(s) ${missing.map((v) => v.name).join(', ')}: their local primary storage is not attached to its cluster`, { volumes: missing.map((v) => v.uuid) });
  }
  const data: ColdMigrateData = { vmUuid: vm.uuid, srcHostUuid, destHostUuid, volumeUuids: vols.map((v) => v.uuid), copied: [] };
  const runOpts: Parameters<typeof d.engine.run>[2] = { lockKeys: [vm.uuid, ...data.volumeUuids] };
  if (job) {
    runOpts.id = job.jobUuid;
    runOpts.keepOutcome = true; // for the job's resumer (api/resume.ts)
    runOpts.onProgress = (pc, m) => job.progress(pc, m);
  }
  await d.engine.run(vmColdMigrateFlow, data, runOpts);
  for (const v of vols) {
    const ps = await mustGet(d.store, String(v.primaryStorageUuid), 'primary-storage');
    await callHost(d, srcHostUuid, 'storageagent', S.DeleteVolume, { ps: psSpec(ps), volumeUuid: v.uuid }).catch((e: unknown) =>
      log.warn({ vm: vm.uuid, volume: v.uuid, host: srcHostUuid, err: (e as Error).message }, 'the copy is live on the destination; the source files could not be deleted (orphans)'),
    );
  }
  job?.progress(100, 'migrated');
  return mustGet(d.store, vm.uuid, 'vm-instance');
}
