// An image pulled into a primary storage's cache through a host (ps/image-cache), and a volume
// made from it. A VM create asked the host for the cache every time; with `reuse` it is not
// asked when this controller saw the host cache it (controller/host/known.ts). If the cache
// turns out to be gone (IMAGE_NOT_FOUND from the volume create: a reboot of a host with a cache
// on tmpfs, a cleanup by hand), it is pulled again and the volume made once more.
import * as S from '../../shared/protocol/storage.js';
import type { ResponseOf } from '../../shared/protocol/command.js';
import { logger } from '../../shared/log.js';
import type { Resource } from '../store/types.js';
import { mustGet, refreshable, type CloudDeps } from '../cloud/common.js';
import { imageStoreRef, psSpec } from './index.js';

type Cached = ResponseOf<typeof S.PsImageCache>;

const log = logger('storage');

/** The host knowledge key of an image in a primary storage's cache. */
const imageFact = (psUuid: string, imageUuid: string): string => `image:${psUuid}:${imageUuid}`;

export interface CacheImageArgs {
  hostUuid: string;
  ps: Resource;
  image: Resource;
  /** The backup storage the image is pulled from. */
  backupStorageUuid: string;
  /** The task id of the pull (a flow's stable id); the retry after IMAGE_NOT_FOUND adds '-again'. */
  taskId?: string;
  /** Not asked again when known to be cached. */
  reuse?: boolean;
  /** The host's record the caller holds (a create flow's; see callOn), else read here. */
  host?: Resource;
}

async function pull(d: CloudDeps, host: Resource, a: CacheImageArgs, taskId: string | undefined): Promise<Cached> {
  const key = imageFact(a.ps.uuid, a.image.uuid);
  const token = d.hostRuntime.known.begin(host.uuid, key);
  const req = { ps: psSpec(a.ps), imageUuid: a.image.uuid, imageStore: await imageStoreRef(d, a.backupStorageUuid) };
  const r = await d.agentClient.call(S.PsImageCache, refreshable(d, host, 'storageagent'), req, taskId ? { taskId } : {});
  d.hostRuntime.known.set(host, key, r, token);
  return r;
}

/**
 * The image cached in the primary storage (through the host), then `make` (the volume made from
 * it, given a suffix for its task id: '' the first time, '-again' after the cache was pulled
 * again because `make` said the image is not cached), given the host record to call it with.
 */
export async function withCachedImage<T>(d: CloudDeps, a: CacheImageArgs, make: (cached: Cached, again: string, host: Resource) => Promise<T>): Promise<{ cached: Cached; made: T }> {
  const host = a.host ?? (await mustGet(d.store, a.hostUuid, 'host'));
  const known = a.reuse ? d.hostRuntime.known.get<Cached>(host, imageFact(a.ps.uuid, a.image.uuid)) : undefined;
  const ask = (): Promise<Cached> => pull(d, host, a, a.taskId);
  // creates on this host at once wait for one pull (the same cache, from the same image store)
  const cached = known ?? (await (a.reuse ? d.hostRuntime.known.share(host.uuid, `${imageFact(a.ps.uuid, a.image.uuid)}\u0000${a.backupStorageUuid}`, ask) : ask()));
  try {
    const sentAt = d.hostRuntime.known.time();
    const made = await make(cached, '', host);
    // made from the cache: it was there (else IMAGE_NOT_FOUND), so the next create need not ask
    // either (issue 19: a host creating VMs for longer than a minute was asked again each minute)
    d.hostRuntime.known.confirm(host, imageFact(a.ps.uuid, a.image.uuid), sentAt);
    return { cached, made };
  } catch (e) {
    // gone since it was cached (or known to be): pulled again, once (a resumed flow may meet its first try's failure here too)
    if ((e as { code?: string }).code !== 'IMAGE_NOT_FOUND') throw e;
    log.info({ host: a.hostUuid, ps: a.ps.uuid, image: a.image.uuid, known: known !== undefined }, 'the image is not cached on the host (any more): pulling it again');
    const fresh = await mustGet(d.store, a.hostUuid, 'host');
    const again = await pull(d, fresh, a, a.taskId ? `${a.taskId}-again` : undefined);
    return { cached: again, made: await make(again, '-again', fresh) };
  }
}
