// Image store backends: a directory, or a Ceph pool. Both take a verified local file in
// (ingest), describe images (info) and hand out a local file to export.
import { mkdir, readFile, rename, rm, stat, statfs, writeFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';
import type { Capacity, ImageInfo, ImageStoreSpec } from '../../shared/protocol/storage.js';
import { StoreLayout, checkUuid } from '../paths.js';
import { Ceph } from '../ceph.js';
import * as qimg from '../qemu-img.js';
import type { CheckedImage } from '../image-check.js';
import type { AgentContext } from '../context.js';

export interface ExportFile {
  path: string;
  size: number;
  info: ImageInfo;
  release(): Promise<void>;
}

export interface ImageStore {
  readonly uuid: string;
  init(): Promise<Capacity>;
  capacity(): Promise<Capacity>;
  info(imageUuid: string): Promise<ImageInfo | undefined>;
  /** a temp path for an incoming image (same filesystem as the store when possible) */
  tmpPath(imageUuid: string): Promise<string>;
  ingest(imageUuid: string, tmp: string, c: CheckedImage, sums: { md5?: string; sha256?: string }, signal?: AbortSignal): Promise<ImageInfo>;
  delete(imageUuid: string): Promise<boolean>;
  exportFile(imageUuid: string, signal?: AbortSignal): Promise<ExportFile>;
}

async function duBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    let ents;
    try {
      ents = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await stat(p)).blocks * 512;
    }
  };
  await walk(dir);
  return total;
}
export { duBytes };

export class DirImageStore implements ImageStore {
  readonly layout: StoreLayout;
  constructor(
    readonly uuid: string,
    root: string,
  ) {
    this.layout = new StoreLayout(root);
  }
  async init(): Promise<Capacity> {
    await mkdir(join(this.layout.root, 'images'), { recursive: true });
    await mkdir(this.layout.tmpDir(), { recursive: true });
    return this.capacity();
  }
  async capacity(): Promise<Capacity> {
    if (!existsSync(this.layout.root)) throw new TStackError('STORAGE_ERROR', `image store directory ${this.layout.root} does not exist; run imagestore/init`);
    const s = await statfs(this.layout.root);
    return { totalCapacity: s.blocks * s.bsize, availableCapacity: s.bavail * s.bsize, usedByTstack: await duBytes(join(this.layout.root, 'images')) };
  }
  async info(imageUuid: string): Promise<ImageInfo | undefined> {
    try {
      return JSON.parse(await readFile(this.layout.meta(imageUuid), 'utf8')) as ImageInfo;
    } catch {
      return undefined;
    }
  }
  async tmpPath(imageUuid: string): Promise<string> {
    await mkdir(this.layout.tmpDir(), { recursive: true });
    return join(this.layout.tmpDir(), `${checkUuid('imageUuid', imageUuid)}.${randomBytes(4).toString('hex')}.part`);
  }
  async ingest(imageUuid: string, tmp: string, c: CheckedImage, sums: { md5?: string; sha256?: string }): Promise<ImageInfo> {
    const file = this.layout.imageFile(imageUuid, c.format);
    await mkdir(dirname(file), { recursive: true });
    await rename(tmp, file);
    const info: ImageInfo = { imageUuid: imageUuid.toLowerCase(), format: c.format, virtualSize: c.virtualSize, actualSize: c.actualSize, installPath: file };
    if (sums.md5) info.md5 = sums.md5;
    if (sums.sha256) info.sha256 = sums.sha256;
    // meta.json last: an image exists once its meta exists
    const metaTmp = this.layout.meta(imageUuid) + '.tmp';
    await writeFile(metaTmp, JSON.stringify(info, null, 2));
    await rename(metaTmp, this.layout.meta(imageUuid));
    return info;
  }
  async delete(imageUuid: string): Promise<boolean> {
    const d = this.layout.imageDir(imageUuid);
    const had = existsSync(d);
    await rm(d, { recursive: true, force: true });
    return had;
  }
  async exportFile(imageUuid: string): Promise<ExportFile> {
    const info = await this.info(imageUuid);
    if (!info) throw new TStackError('IMAGE_NOT_FOUND', `image ${imageUuid} is not in image store ${this.uuid}`);
    const st = await stat(info.installPath);
    return { path: info.installPath, size: st.size, info, release: async () => undefined };
  }
}

/** Images as raw RBD images `img-<uuid>` (ISO stays an ISO byte stream), metadata in image-meta. */
export class CephImageStore implements ImageStore {
  readonly ceph: Ceph;
  constructor(
    readonly uuid: string,
    spec: ConstructorParameters<typeof Ceph>[0],
    private readonly ctx: AgentContext,
  ) {
    this.ceph = new Ceph(spec);
  }
  private name(imageUuid: string): string {
    return `img-${checkUuid('imageUuid', imageUuid)}`;
  }
  async init(): Promise<Capacity> {
    return this.ceph.capacity();
  }
  capacity(): Promise<Capacity> {
    return this.ceph.capacity();
  }
  async info(imageUuid: string): Promise<ImageInfo | undefined> {
    const n = this.name(imageUuid);
    if (!(await this.ceph.exists(n))) return undefined;
    const meta = await this.ceph.rbd(['image-meta', 'get', this.ceph.spec_(n), 'tstack.info'], { okCodes: [0, 2] }).catch(() => '');
    if (!meta.trim()) return undefined; // still being imported
    return JSON.parse(meta) as ImageInfo;
  }
  tmpPath(imageUuid: string): Promise<string> {
    return this.ctx.tmpFile(`img-${checkUuid('imageUuid', imageUuid)}`);
  }
  async ingest(imageUuid: string, tmp: string, c: CheckedImage, sums: { md5?: string; sha256?: string }, signal?: AbortSignal): Promise<ImageInfo> {
    const n = this.name(imageUuid);
    try {
      // an image without its metadata is a half-made import from an earlier crash
      if (await this.ceph.exists(n)) await this.ceph.remove(n);
      // RBD clones need raw data: convert qcow2 to raw on the way in (an ISO is copied as is)
      await qimg.convert(tmp, this.ceph.qemu(n), { srcFormat: c.format === 'qcow2' ? 'qcow2' : 'raw', dstFormat: 'raw', ...(signal ? { signal } : {}) });
      const info: ImageInfo = {
        imageUuid: imageUuid.toLowerCase(),
        format: c.format === 'iso' ? 'iso' : 'raw',
        virtualSize: c.virtualSize,
        actualSize: await this.ceph.used(n),
        installPath: `ceph://${this.ceph.pool}/${n}`,
        cephFsid: await this.ceph.fsid(),
      };
      if (c.format === 'raw' || c.format === 'iso') {
        if (sums.md5) info.md5 = sums.md5;
        if (sums.sha256) info.sha256 = sums.sha256;
      }
      await this.ceph.rbd(['image-meta', 'set', this.ceph.spec_(n), 'tstack.info', JSON.stringify(info)]);
      return info;
    } catch (e) {
      await this.ceph.remove(n).catch(() => undefined);
      throw e;
    } finally {
      await rm(tmp, { force: true });
    }
  }
  async delete(imageUuid: string): Promise<boolean> {
    return this.ceph.remove(this.name(imageUuid));
  }
  async exportFile(imageUuid: string, signal?: AbortSignal): Promise<ExportFile> {
    const info = await this.info(imageUuid);
    if (!info) throw new TStackError('IMAGE_NOT_FOUND', `image ${imageUuid} is not in image store ${this.uuid}`);
    const tmp = await this.ctx.tmpFile(`export-${imageUuid}`);
    await this.ceph.rbd(['export', '--no-progress', this.ceph.spec_(this.name(imageUuid)), tmp], signal ? { signal } : {});
    const st = await stat(tmp);
    return { path: tmp, size: st.size, info, release: () => rm(tmp, { force: true }) };
  }
}

/** Image stores this agent serves, remembered across restarts in <dataDir>/imagestores.json. */
export class StoreRegistry {
  private specs = new Map<string, ImageStoreSpec>();
  private loaded = false;
  constructor(private readonly ctx: AgentContext) {}
  private file(): string {
    return join(this.ctx.dataDir, 'imagestores.json');
  }
  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    try {
      for (const s of JSON.parse(await readFile(this.file(), 'utf8')) as ImageStoreSpec[]) this.specs.set(s.uuid.toLowerCase(), s);
    } catch {
      /* none yet */
    }
  }
  open(spec: ImageStoreSpec): ImageStore {
    const uuid = checkUuid('store.uuid', spec.uuid);
    if (spec.type === 'dir') return new DirImageStore(uuid, spec.path);
    const { type: _t, uuid: _u, ...conn } = spec;
    return new CephImageStore(uuid, conn, this.ctx);
  }
  async register(spec: ImageStoreSpec): Promise<void> {
    await this.load();
    this.specs.set(spec.uuid.toLowerCase(), spec);
    await mkdir(this.ctx.dataDir, { recursive: true });
    const tmp = this.file() + '.tmp';
    await writeFile(tmp, JSON.stringify([...this.specs.values()], null, 2), { mode: 0o600 });
    await rename(tmp, this.file());
  }
  async all(): Promise<ImageStore[]> {
    await this.load();
    return [...this.specs.values()].map((s) => this.open(s));
  }
  async get(uuid: string): Promise<ImageStore | undefined> {
    await this.load();
    const s = this.specs.get(uuid.toLowerCase());
    return s ? this.open(s) : undefined;
  }
  /** the store that holds an image */
  async find(imageUuid: string): Promise<{ store: ImageStore; info: ImageInfo } | undefined> {
    for (const st of await this.all()) {
      const info = await st.info(imageUuid).catch(() => undefined);
      if (info) return { store: st, info };
    }
    return undefined;
  }
}
