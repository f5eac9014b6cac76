// Validated, contained paths. Every uuid or name that ends up in a path goes through here, and
// every path is checked to stay inside its storage root (no '..', no symlink games via names).
import { resolve, sep, relative, isAbsolute } from 'node:path';
import { TStackError } from '../shared/errors.js';

const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkUuid(field: string, v: string): string {
  if (typeof v !== 'string' || !UUID_RE.test(v)) throw new TStackError('INVALID_ARGUMENT', `${field}: not a uuid: ${JSON.stringify(v)}`, { field });
  return v.toLowerCase();
}

export function checkName(field: string, v: string): string {
  if (typeof v !== 'string' || !NAME_RE.test(v) || v === '.' || v === '..') {
    throw new TStackError('INVALID_ARGUMENT', `${field}: not a safe name: ${JSON.stringify(v)}`, { field });
  }
  return v;
}

export function checkRoot(field: string, root: string): string {
  if (typeof root !== 'string' || !isAbsolute(root) || root.includes('\0') || /(^|\/)\.\.(\/|$)/.test(root)) {
    throw new TStackError('INVALID_ARGUMENT', `${field}: must be an absolute path without '..': ${JSON.stringify(root)}`, { field });
  }
  const r = resolve(root);
  if (r === '/') throw new TStackError('INVALID_ARGUMENT', `${field}: the filesystem root cannot be a storage root`, { field });
  return r;
}

/** Join parts under root; throws if the result is not strictly inside root. */
export function within(root: string, ...parts: string[]): string {
  const r = resolve(root);
  const p = resolve(r, ...parts);
  const rel = relative(r, p);
  if (!rel || rel.startsWith('..') || isAbsolute(rel) || p.includes('\0')) {
    throw new TStackError('INVALID_ARGUMENT', `path escapes its storage root ${r}: ${parts.join('/')}`);
  }
  return p;
}

/**
 * Layout of a file-based primary storage (local, shared mount point, NFS), relative to its root.
 * Snapshots sit beside the live file so that relative backing-file names survive renames.
 *   imagecache/<imageUuid>/<imageUuid>.<qcow2|raw|iso>
 *   volumes/<volumeUuid>/<volumeUuid>.qcow2            (the live volume, stable path)
 *   volumes/<volumeUuid>/snap-<snapshotUuid>.qcow2     (frozen snapshot layers)
 *   volumes/<volumeUuid>/next-<snapshotUuid>.qcow2     (new top of a live snapshot in progress)
 */
export class PsLayout {
  readonly root: string;
  constructor(root: string) {
    this.root = checkRoot('ps.path', root);
  }
  rel(...parts: string[]): string {
    return relative(this.root, within(this.root, ...parts));
  }
  abs(rel: string): string {
    return within(this.root, rel);
  }
  imageDirRel(imageUuid: string): string {
    return this.rel('imagecache', checkUuid('imageUuid', imageUuid));
  }
  imageFileRel(imageUuid: string, ext: string): string {
    const u = checkUuid('imageUuid', imageUuid);
    return this.rel('imagecache', u, `${u}.${checkName('format', ext)}`);
  }
  volumeDirRel(volumeUuid: string): string {
    return this.rel('volumes', checkUuid('volumeUuid', volumeUuid));
  }
  volumeFileRel(volumeUuid: string): string {
    const u = checkUuid('volumeUuid', volumeUuid);
    return this.rel('volumes', u, `${u}.qcow2`);
  }
  snapshotFileRel(volumeUuid: string, snapshotUuid: string): string {
    const u = checkUuid('volumeUuid', volumeUuid);
    return this.rel('volumes', u, `snap-${checkUuid('snapshotUuid', snapshotUuid)}.qcow2`);
  }
  nextTopFileRel(volumeUuid: string, snapshotUuid: string): string {
    const u = checkUuid('volumeUuid', volumeUuid);
    return this.rel('volumes', u, `next-${checkUuid('snapshotUuid', snapshotUuid)}.qcow2`);
  }
}

export const NEXT_TOP_FILE_RE = /^next-([0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})\.qcow2$/;
export const SNAP_FILE_RE = /^snap-([0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})\.qcow2$/;

/** Layout of a directory image store: images/<uuid>/<uuid>.<ext> + images/<uuid>/meta.json */
export class StoreLayout {
  readonly root: string;
  constructor(root: string) {
    this.root = checkRoot('store.path', root);
  }
  imageDir(imageUuid: string): string {
    return within(this.root, 'images', checkUuid('imageUuid', imageUuid));
  }
  imageFile(imageUuid: string, ext: string): string {
    const u = checkUuid('imageUuid', imageUuid);
    return within(this.root, 'images', u, `${u}.${checkName('format', ext)}`);
  }
  meta(imageUuid: string): string {
    return within(this.root, 'images', checkUuid('imageUuid', imageUuid), 'meta.json');
  }
  tmpDir(): string {
    return within(this.root, 'tmp');
  }
}

export { sep };
