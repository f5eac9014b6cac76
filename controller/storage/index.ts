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
/** A storage's per-host docs and totals are written one operation at a time (hosts connect concurrently). */
const psTotals = new ResourceQueues();
/**
 * A recomputation reads every host's doc (issue 19: one per joining host made 1,000 hosts
 * joining cost ~500,000 doc reads). Hosts that report while one is pending share it, and one
 * starts at most every TOTALS_GAP_MS per storage: a burst of hosts costs a few recomputations.
 */
const TOTALS_GAP_MS = 200;
const pendingTotals = new Map<string, { patch: Record<string, unknown>; done: Promise<void> }>();
const lastTotals = new Map<string, number>();

/**
 * The storage's totals recomputed from a read that starts after this call: resolves when they
 * are written. `patch` goes into the same record update.
 */
export function recomputeTotals(d: CloudDeps, psUuid: string, patch: Record<string, unknown> = {}): Promise<void> {
  const pending = pendingTotals.get(psUuid);
  if (pending) {
    Object.assign(pending.patch, patch);
    return pending.done;
  }
  const entry = { patch: { ...patch }, done: Promise.resolve() };
  pendingTotals.set(psUuid, entry);
  entry.done = (async () => {
    const wait = (lastTotals.get(psUuid) ?? 0) + TOTALS_GAP_MS - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await psTotals.run(psUuid, async () => {
      // from here on a caller's doc may be missed by the read below: it needs the next one
      if (pendingTotals.get(psUuid) === entry) pendingTotals.delete(psUuid);
      lastTotals.set(psUuid, Date.now());
      const ps = await d.store.get(psUuid);
      if (ps) await writeTotals(d, ps, entry.patch);
    });
  })();
  // a failure reaches every caller that shares it; none is left unhandled
  entry.done.catch(() => undefined);
  return entry.done;
}

/**
 * ps/init on one host; records the host's capacity and (unless `totals: false`: the caller
 * recomputes once after many hosts) waits for the totals that include it.
 */
export async function initPsOnHost(d: CloudDeps, ps: Resource, host: Resource, o: { totals?: boolean } = {}): Promise<void> {
  const cap = await d.agentClient.call(S.PsInit, refreshable(d, host, 'storageagent'), { ps: psSpec(ps) });
  await psTotals.run(ps.uuid, () => d.store.putDoc(hostCapacityDocs(ps.uuid), host.uuid, { total: cap.totalCapacity, available: cap.availableCapacity } satisfies HostCap));
  if (o.totals !== false) await recomputeTotals(d, ps.uuid, { status: 'Connected', statusReason: undefined });
}

/** A storage's totals from its hosts' docs (run under psTotals). */
async function writeTotals(d: CloudDeps, ps: Resource, patch: Record<string, unknown>): Promise<void> {
  const col = hostCapacityDocs(ps.uuid);
  const docs = await d.store.listDocs<HostCap>(col);
  // a record written before the split: its hosts' capacities move to docs (a doc is newer)
  const legacy = ps._hostCapacity as Record<string, HostCap> | undefined;
  if (legacy) {
    const have = new Set(docs.map((x) => x.id));
    for (const [h, v] of Object.entries(legacy)) {
      if (have.has(h)) continue;
      await d.store.putDoc(col, h, v);
      docs.push({ id: h, doc: v });
    }
  }
  const vals = docs.map((x) => x.doc);
  // local storage: every host has its own; shared kinds: the same space seen from every host
  const shared = ps.type !== 'LocalStorage';
  const sum = (f: (v: HostCap) => number): number => (shared ? Math.max(0, ...vals.map(f)) : vals.reduce((a, v) => a + f(v), 0));
  const total = sum((v) => v.total);
  const avail = sum((v) => v.available);
  await d.store.update(ps.uuid, { ...patch, ...(legacy ? { _hostCapacity: undefined } : {}), totalCapacity: total, availableCapacity: avail, totalPhysicalCapacity: total, availablePhysicalCapacity: avail });
}

/** A deleted host's capacity leaves the totals of its cluster's storages. */
export async function forgetHostCapacity(d: CloudDeps, host: Resource): Promise<void> {
  for (const psUuid of await attachedTo(d.store, 'cluster-primary-storage', String(host.parentUuid))) {
    const had = await psTotals.run(psUuid, async () => {
      const col = hostCapacityDocs(psUuid);
      if ((await d.store.getDoc(col, host.uuid)) === undefined) return false;
      await d.store.deleteDoc(col, host.uuid);
      return true;
    });
    if (had) await recomputeTotals(d, psUuid);
  }
}

/** A deleted storage's per-host docs go with it. */
export async function forgetPsCapacity(d: CloudDeps, psUuid: string): Promise<void> {
  await psTotals.run(psUuid, async () => {
    const col = hostCapacityDocs(psUuid);
    for (const { id } of await d.store.listDocs(col)) await d.store.deleteDoc(col, id);
  });
  lastTotals.delete(psUuid);
}

/** ps/init on every Connected host of the clusters, then the totals once. */
async function initPsOnClusters(d: CloudDeps, ps: Resource, clusters: string[]): Promise<void> {
  let n = 0;
  for (const c of clusters) {
    for (const h of await connectedHosts(d.store, c)) {
      await initPsOnHost(d, ps, h, { totals: false });
      n++;
    }
  }
  if (n > 0) await recomputeTotals(d, ps.uuid, { status: 'Connected', statusReason: undefined });
}

async function attachPs(cluster: Resource, params: Record<string, unknown>, oc: OpContext): Promise<Resource> {
  const d = oc;
  const ps = await mustGet(d.store, String(params.primaryStorageUuid), 'primary-storage', 'primaryStorageUuid');
  await attach(d.store, 'cluster-primary-storage', cluster.uuid, ps.uuid, oc.adminAccountUuid);
  try {
    await initPsOnClusters(d, ps, [cluster.uuid]);
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
  await initPsOnClusters(d, ps, await attachedFrom(d.store, 'cluster-primary-storage', ps.uuid));
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
