// Storage in the cloud: image servers (image-store backup storage on a host's storageagent),
// images (download by URL as a job with the agent's progress events), primary storage attached
// to clusters (ps/init on every host of the cluster, capacity from the agents).
//
// Decisions (docs/cloud.md):
//  - an image store runs on the storageagent of a host already added: backup storage `hostname`
//    must be the managementIp of a host; `url` is the directory on that host.
//  - primary storage `url`: a directory (LocalStorage, SharedMountPoint), nfs://server/export or
//    server:/export (NFS), ceph://pool (Ceph). LocalStorage capacity is the sum over the hosts.
import { randomUUID } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import { logger } from '../../shared/log.js';
import * as S from '../../shared/protocol/storage.js';
import type { ApiRegistry, OpContext } from '../api/registry.js';
import type { Resource } from '../store/types.js';
import { mustKindDef, prepareCreate } from '../model/index.js';
import { attach, attachedFrom, attachedTo, detach } from '../model/attachments.js';
import { agentOf, connectedHosts, mustGet, refreshable, type CloudDeps } from '../cloud/common.js';
import { createImageFromVolume, fromVolume } from './volume-images.js';
import { ResourceQueues } from '../workflow/queues.js';

const log = logger('storage');

// ---------------------------------------------------------------------------------------------
// backup storage (image store)

/** ceph://pool → the cluster connection (conf, user) the agents get; a bad pool name is a 400. */
function cephConn(r: Resource): { pool: string; confPath?: string; user?: string } {
  const m = /^ceph:\/\/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\/?$/.exec(String(r.url));
  if (!m) throw new TStackError('INVALID_ARGUMENT', `url: a Ceph storage url is ceph://<pool> (pool: letters, digits, '_', '.', '-'), not ${String(r.url)}`, { field: 'url' });
  const c: { pool: string; confPath?: string; user?: string } = { pool: m[1]! };
  if (typeof r.cephConf === 'string') c.confPath = r.cephConf;
  if (typeof r.cephUser === 'string') c.user = r.cephUser;
  return c;
}

export function imageStoreSpec(bs: Resource): S.ImageStoreSpec {
  if (bs.type === 'Ceph') return { type: 'ceph', uuid: bs.uuid, ...cephConn(bs) };
  return { type: 'dir', uuid: bs.uuid, path: String(bs.url).replace(/^file:\/\//, '') };
}

async function bsHost(d: CloudDeps, bs: Resource): Promise<Resource> {
  if (typeof bs._hostUuid === 'string') return mustGet(d.store, bs._hostUuid, 'host');
  return hostByAddress(d, String(bs.hostname));
}

async function hostByAddress(d: CloudDeps, addr: string): Promise<Resource> {
  const r = await d.store.list({ kind: 'host', filters: [{ field: 'managementIp', op: '=', value: addr }], limit: 1 });
  if (r.total === 0) {
    throw new TStackError('INVALID_ARGUMENT', `hostname: no host with managementIp ${addr}; an image store runs on the storage agent of a host: add the host first`, { field: 'hostname' });
  }
  return r.items[0]!;
}

/** The storage agent endpoint that serves a backup storage (for image-cache pulls). */
export async function imageStoreRef(d: CloudDeps, bsUuid: string): Promise<{ url: string; token: string; storeUuid: string }> {
  const bs = await mustGet(d.store, bsUuid, 'backup-storage');
  const host = await bsHost(d, bs);
  return { ...agentOf(host, 'storageagent'), storeUuid: bs.uuid };
}

async function connectBs(d: CloudDeps, bs: Resource): Promise<Resource> {
  const host = await bsHost(d, bs);
  try {
    const cap = await d.agentClient.call(S.ImageStoreInit, refreshable(d, host, 'storageagent'), { store: imageStoreSpec(bs) });
    return await d.store.update(bs.uuid, { status: 'Connected', statusReason: undefined, _hostUuid: host.uuid, totalCapacity: cap.totalCapacity, availableCapacity: cap.availableCapacity });
  } catch (e) {
    await d.store.update(bs.uuid, { status: 'Disconnected', statusReason: (e as Error).message }).catch(() => undefined);
    throw e;
  }
}

async function createBackupStorage(body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const p = await prepareCreate(d.store, mustKindDef('backup-storage'), body, { ownerAccountUuid: oc.adminAccountUuid });
  // a Ceph image store is a pool that the storage agent of host `hostname` reaches
  if (p.resource.type === 'Ceph') cephConn(p.resource);
  else if (!String(p.resource.url).replace(/^file:\/\//, '').startsWith('/')) throw new TStackError('INVALID_ARGUMENT', 'url: the image store directory must be an absolute path on the host', { field: 'url' });
  const host = await hostByAddress(d, String(p.resource.hostname));
  p.resource._hostUuid = host.uuid;
  const bs = await d.store.create(p.resource);
  try {
    return await connectBs(d, bs);
  } catch (e) {
    await d.store.delete(bs.uuid);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// images

async function createImage(body: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const def = mustKindDef('image');
  const p = await prepareCreate(d.store, def, body, { ownerAccountUuid: oc.principal.accountUuid, canUse: (r) => r.kind !== 'volume' && r.kind !== 'volume-snapshot' ? true : r.ownerAccountUuid === oc.principal.accountUuid });
  if (fromVolume(p.resource)) return createImageFromVolume(p.resource, oc);
  const img: Resource = await d.store.create<Resource>({ ...p.resource, status: 'Downloading', progress: 0, backupStorageRefs: [] });
  const bsUuids = img.backupStorageUuids as string[];
  let url = String(img.url);
  if (url.startsWith('/')) url = `file://${url}`;
  const unsub = d.bus.onAgentEvent(S.DOWNLOAD_PROGRESS_EVENT, (e) => {
    if (e.data.imageUuid !== img.uuid) return;
    const pct = typeof e.data.percent === 'number' ? Math.floor(e.data.percent) : undefined;
    if (pct !== undefined) {
      oc.job?.progress(Math.min(99, pct), `downloading: ${String(e.data.bytes)} bytes (${String(e.data.stage)})`);
      void d.store.update(img.uuid, { progress: pct }).catch(() => undefined);
    }
  });
  const refs: Array<Record<string, unknown>> = [];
  try {
    let info: S.ImageInfo | undefined;
    for (const bsUuid of bsUuids) {
      const bs = await mustGet(d.store, bsUuid, 'backup-storage');
      const host = await bsHost(d, bs);
      const req: Parameters<typeof d.agentClient.call<typeof S.ImageStoreDownload>>[2] = { store: imageStoreSpec(bs), imageUuid: img.uuid, url, format: img.format as S.ImageFormat };
      if (typeof img.md5sum === 'string') req.md5 = img.md5sum.toLowerCase();
      info = await d.agentClient.call(S.ImageStoreDownload, refreshable(d, host, 'storageagent'), req);
      refs.push({ backupStorageUuid: bsUuid, installPath: info.installPath, status: 'Ready' });
      await d.store.update(img.uuid, { backupStorageRefs: refs });
    }
    oc.job?.progress(100, 'downloaded');
    return await d.store.update(img.uuid, { status: 'Ready', progress: 100, size: info!.virtualSize, actualSize: info!.actualSize, md5sum: info!.md5 ?? img.md5sum, backupStorageRefs: refs });
  } catch (e) {
    // like ZStack's AddImage: a failed add leaves no image behind
    for (const r of refs) {
      const bs = await d.store.get(String(r.backupStorageUuid));
      if (bs) await deleteFromBs(d, bs, img.uuid).catch(() => undefined);
    }
    await d.store.delete(img.uuid);
    throw e;
  } finally {
    unsub();
  }
}

export async function deleteFromBs(d: CloudDeps, bs: Resource, imageUuid: string): Promise<void> {
  const host = await bsHost(d, bs);
  await d.agentClient.call(S.ImageStoreDelete, refreshable(d, host, 'storageagent'), { store: imageStoreSpec(bs), imageUuid });
}

async function deleteImage(img: Resource, _q: Record<string, string>, oc: OpContext): Promise<Resource> {
  const d = oc;
  for (const r of (img.backupStorageRefs as Array<{ backupStorageUuid: string }> | undefined) ?? []) {
    const bs = await d.store.get(r.backupStorageUuid);
    if (bs) await deleteFromBs(d, bs, img.uuid);
  }
  await d.store.delete(img.uuid);
  return img;
}

// ---------------------------------------------------------------------------------------------
// primary storage

export function psSpec(ps: Resource): S.PrimaryStorageSpec {
  const url = String(ps.url);
  switch (ps.type) {
    case 'LocalStorage':
      return { type: 'local', uuid: ps.uuid, path: url.replace(/^file:\/\//, '') };
    case 'SharedMountPoint':
      return { type: 'sharedmountpoint', uuid: ps.uuid, path: url.replace(/^file:\/\//, '') };
    case 'NFS': {
      const m = /^nfs:\/\/([^/]+)(\/.*)$/.exec(url);
      const spec: S.PrimaryStorageSpec = { type: 'nfs', uuid: ps.uuid, url: m ? `${m[1]}:${m[2]}` : url, mountPath: `/var/lib/tstack/mnt/${ps.uuid}` };
      if (typeof ps.mountOptions === 'string' && ps.mountOptions) spec.mountOptions = ps.mountOptions;
      return spec;
    }
    case 'Ceph':
      // the libvirt secret with the cephx key for the VMs' disks is named after the storage
      return { type: 'ceph', uuid: ps.uuid, ...cephConn(ps), secretUuid: ps.uuid };
    default:
      throw new TStackError('INVALID_ARGUMENT', `primary storage type ${String(ps.type)} is not supported`);
  }
}

// A storage's capacity as each host's agent reported it: one small doc per (storage, host), so
// the storage record stays small (issue 19: as a field of the record, 1,000 hosts made every
// read of the storage, several per VM create, parse ~90 KB).
const hostCapacityDocs = (psUuid: string): string => `ps-host-capacity:${psUuid}`;
type HostCap = { total: number; available: number };
/** One recomputation of a storage's totals at a time (hosts connect concurrently). */
const psTotals = new ResourceQueues();

/** ps/init on one host; records the host's capacity and recomputes the totals. */
export async function initPsOnHost(d: CloudDeps, ps: Resource, host: Resource): Promise<void> {
  const cap = await d.agentClient.call(S.PsInit, refreshable(d, host, 'storageagent'), { ps: psSpec(ps) });
  await psTotals.run(ps.uuid, async () => {
    const col = hostCapacityDocs(ps.uuid);
    const fresh = (await d.store.get(ps.uuid)) ?? ps;
    // a record written before the split: its hosts' capacities move to docs (a doc is newer)
    const legacy = fresh._hostCapacity as Record<string, HostCap> | undefined;
    if (legacy) {
      for (const [h, v] of Object.entries(legacy)) if (h !== host.uuid && (await d.store.getDoc(col, h)) === undefined) await d.store.putDoc(col, h, v);
    }
    await d.store.putDoc(col, host.uuid, { total: cap.totalCapacity, available: cap.availableCapacity } satisfies HostCap);
    await writeTotals(d, fresh, { ...(legacy ? { _hostCapacity: undefined } : {}), status: 'Connected', statusReason: undefined });
  });
}

/** A storage's totals from its hosts' docs (run under psTotals). */
async function writeTotals(d: CloudDeps, ps: Resource, patch: Record<string, unknown> = {}): Promise<void> {
  const vals = (await d.store.listDocs<HostCap>(hostCapacityDocs(ps.uuid))).map((x) => x.doc);
  // local storage: every host has its own; shared kinds: the same space seen from every host
  const shared = ps.type !== 'LocalStorage';
  const sum = (f: (v: HostCap) => number): number => (shared ? Math.max(0, ...vals.map(f)) : vals.reduce((a, v) => a + f(v), 0));
  const total = sum((v) => v.total);
  const avail = sum((v) => v.available);
  await d.store.update(ps.uuid, { ...patch, totalCapacity: total, availableCapacity: avail, totalPhysicalCapacity: total, availablePhysicalCapacity: avail });
}

/** A deleted host's capacity leaves the totals of its cluster's storages. */
export async function forgetHostCapacity(d: CloudDeps, host: Resource): Promise<void> {
  for (const psUuid of await attachedTo(d.store, 'cluster-primary-storage', String(host.parentUuid))) {
    await psTotals.run(psUuid, async () => {
      const col = hostCapacityDocs(psUuid);
      if ((await d.store.getDoc(col, host.uuid)) === undefined) return;
      await d.store.deleteDoc(col, host.uuid);
      const ps = await d.store.get(psUuid);
      if (ps) await writeTotals(d, ps);
    });
  }
}

/** A deleted storage's per-host docs go with it. */
export async function forgetPsCapacity(d: CloudDeps, psUuid: string): Promise<void> {
  await psTotals.run(psUuid, async () => {
    const col = hostCapacityDocs(psUuid);
    for (const { id } of await d.store.listDocs(col)) await d.store.deleteDoc(col, id);
  });
}

async function attachPs(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const ps = await mustGet(d.store, String(params.primaryStorageUuid), 'primary-storage', 'primaryStorageUuid');
  await attach(d.store, 'cluster-primary-storage', cluster.uuid, ps.uuid, oc.adminAccountUuid);
  try {
    for (const h of await connectedHosts(d.store, cluster.uuid)) await initPsOnHost(d, ps, h);
  } catch (e) {
    await detach(d.store, 'cluster-primary-storage', cluster.uuid, ps.uuid);
    throw e;
  }
  return mustGet(d.store, cluster.uuid, 'cluster');
}

async function detachPs(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const psUuid = String(params.primaryStorageUuid);
  const vols = await d.store.list({ kind: 'volume', filters: [{ field: 'primaryStorageUuid', op: '=', value: psUuid }, { field: 'clusterUuid', op: '=', value: cluster.uuid }], limit: 1 });
  if (vols.total > 0) throw new TStackError('CONFLICT', `volumes of cluster ${cluster.name} are on primary storage ${psUuid}; delete them first`);
  await detach(d.store, 'cluster-primary-storage', cluster.uuid, psUuid);
  return mustGet(d.store, cluster.uuid, 'cluster');
}

async function reconnectPs(ps: Resource, _p: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  for (const c of await attachedFrom(d.store, 'cluster-primary-storage', ps.uuid)) {
    for (const h of await connectedHosts(d.store, c)) await initPsOnHost(d, ps, h);
  }
  return mustGet(d.store, ps.uuid, 'primary-storage');
}

/** A host became Connected: prepare every primary storage attached to its cluster. */
export async function onHostConnectedStorage(d: CloudDeps, host: Resource): Promise<void> {
  for (const psUuid of await attachedTo(d.store, 'cluster-primary-storage', String(host.parentUuid))) {
    const ps = await d.store.get(psUuid);
    if (ps) await initPsOnHost(d, ps, host).catch((e: unknown) => log.warn({ host: host.uuid, ps: psUuid, err: (e as Error).message }, 'ps/init on a connected host failed'));
  }
}

// zone ⇄ backup storage (no agent work)
async function attachBs(zone: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  await attach(oc.store, 'zone-backup-storage', zone.uuid, String(params.backupStorageUuid), oc.adminAccountUuid);
  return mustGet(oc.store, zone.uuid, 'zone');
}
async function detachBs(zone: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  await detach(oc.store, 'zone-backup-storage', zone.uuid, String(params.backupStorageUuid));
  return mustGet(oc.store, zone.uuid, 'zone');
}

const once = (reg: ApiRegistry, col: string, name: string, spec: Parameters<ApiRegistry['registerAction']>[2]): void => {
  if (!reg.action(col, name)?.run) reg.registerAction(col, name, spec);
};

export function registerStorageApi(reg: ApiRegistry): void {
  reg.setCreate('backup-storage', { long: true, run: createBackupStorage });
  once(reg, 'backup-storage', 'reconnect', { long: true, adminOnly: true, run: (bs, _p, oc) => connectBs(oc, bs) });
  reg.setCreate('images', { long: true, run: createImage });
  reg.setDelete('images', { long: true, run: deleteImage });
  once(reg, 'clusters', 'attachPrimaryStorage', { long: true, adminOnly: true, run: attachPs });
  once(reg, 'clusters', 'detachPrimaryStorage', { long: true, adminOnly: true, run: detachPs });
  once(reg, 'primary-storage', 'reconnect', { long: true, adminOnly: true, run: reconnectPs });
  once(reg, 'zones', 'attachBackupStorage', { long: false, adminOnly: true, run: attachBs });
  once(reg, 'zones', 'detachBackupStorage', { long: false, adminOnly: true, run: detachBs });
}

export const newUuid = (): string => randomUUID();
