// Files of image-based provisioning on the PXE server's host (docs/baremetal.md): the raw
// image cache (pulled from the image store's HTTP export once per image, checked against the
// store's checksum, converted to raw because the busybox deploy ramdisk has no qemu-img, and
// hashed again so the ramdisk can check what it streamed onto the disk) and each instance's
// config drive (a NoCloud 'cidata' ISO: hostname, keys, user-data, the static address, the
// root password's sha512-crypt hash in vendor-data). The PXE HTTP endpoint serves both.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { TStackError } from '../../shared/errors.js';
import { exec } from '../../shared/exec.js';
import type { Static } from '../../shared/protocol/schema.js';
import type { ConfigDriveInput, DeployPrepare } from '../../shared/protocol/baremetal.js';
import { buildConfigDrive } from '../configdrive.js';
import type { DeployFilesInfo } from '../render/pxe.js';

type PrepareReq = Static<typeof DeployPrepare.request>;
type Sized = { sizeBytes: number; sha256: string };
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const base = (u: string): string => u.replace(/\/+$/, '');

function checkUuid(u: string, field: string): string {
  if (!UUID_RE.test(u)) throw new TStackError('INVALID_ARGUMENT', `${field}: not a uuid`, { field });
  return u.toLowerCase();
}

async function sha256Of(file: string, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file, signal ? { signal } : {})) h.update(c as Buffer);
  return h.digest('hex');
}

/** The vendor-data that sets root's password from its hash (the test guest and cloud-init read chpasswd lists; a '$…' value is a hash). */
export function passwordVendorData(hash: string): string {
  return `#cloud-config\nchpasswd:\n  list: |\n    root:${hash}\n  expire: false\n`;
}

export class DeployFiles {
  private pulls = new Map<string, Promise<Sized>>();

  constructor(private readonly dataDir: string) {}

  private cacheDir(): string {
    return join(this.dataDir, 'baremetal', 'cache');
  }

  private instanceDir(instanceUuid: string): string {
    return join(this.dataDir, 'baremetal', 'instances', checkUuid(instanceUuid, 'instanceUuid'));
  }

  imagePath(imageUuid: string): string {
    return join(this.cacheDir(), `${checkUuid(imageUuid, 'imageUuid')}.raw`);
  }

  configDrivePath(instanceUuid: string): string {
    return join(this.instanceDir(instanceUuid), 'configdrive.iso');
  }

  private readInfo(file: string): Sized | undefined {
    try {
      return existsSync(file.replace(/\.(raw|iso)$/, '.json')) && existsSync(file) ? (JSON.parse(readFileSync(file.replace(/\.(raw|iso)$/, '.json'), 'utf8')) as Sized) : undefined;
    } catch {
      return undefined;
    }
  }

  /** What the instructions of a deploy name (undefined: not prepared on this host). */
  info(instanceUuid: string, imageUuid: string | undefined): DeployFilesInfo {
    const out: DeployFilesInfo = {};
    const img = imageUuid ? this.readInfo(this.imagePath(imageUuid)) : undefined;
    const cd = this.readInfo(this.configDrivePath(instanceUuid));
    if (img) out.image = img;
    if (cd) out.configDrive = cd;
    return out;
  }

  async prepare(req: PrepareReq, signal?: AbortSignal): Promise<{ image: Sized & { cached: boolean }; configDrive: Sized }> {
    const id = checkUuid(req.image.imageUuid, 'image.imageUuid');
    const have = this.readInfo(this.imagePath(id));
    let image: Sized & { cached: boolean };
    if (have) image = { ...have, cached: true };
    else {
      // one pull per image at a time: two machines deployed from one image share it
      let p = this.pulls.get(id);
      if (!p) {
        p = this.pull(req.image, signal).finally(() => this.pulls.delete(id));
        this.pulls.set(id, p);
      }
      image = { ...(await p), cached: false };
    }
    const configDrive = await this.buildConfigDrive(req.instanceUuid, req.configDrive, signal);
    return { image, configDrive };
  }

  /** Pull from the image store's export into <cache>/<uuid>.raw (raw, hashed), atomically. */
  private async pull(ref: PrepareReq['image'], signal?: AbortSignal): Promise<Sized> {
    const dir = this.cacheDir();
    mkdirSync(dir, { recursive: true });
    const url = `${base(ref.imageStore.url)}/export/images/${encodeURIComponent(ref.imageUuid)}`;
    const headers = { authorization: `Bearer ${ref.imageStore.token}` };
    const sig = (ms: number): AbortSignal => (signal ? AbortSignal.any([signal, AbortSignal.timeout(ms)]) : AbortSignal.timeout(ms));
    const get = async (u: string, ms: number): Promise<Response> => {
      let res: Response;
      try {
        res = await fetch(u, { headers, signal: sig(ms) });
      } catch (e) {
        throw new TStackError('DOWNLOAD_FAILED', `image: the image store ${base(ref.imageStore.url)} is unreachable: ${(e as Error).message}`, { step: 'image' });
      }
      if (res.status === 404) throw new TStackError('IMAGE_NOT_FOUND', `image: image ${ref.imageUuid} is not on the image store ${base(ref.imageStore.url)}`, { step: 'image' });
      if (!res.ok) throw new TStackError('DOWNLOAD_FAILED', `image: the image store ${base(ref.imageStore.url)} answered HTTP ${res.status}`, { step: 'image' });
      return res;
    };
    const info = (await (await get(`${url}/info`, 30_000)).json()) as { format: string; md5?: string; sha256?: string };
    if (info.format !== 'qcow2' && info.format !== 'raw') throw new TStackError('INVALID_ARGUMENT', `image: image ${ref.imageUuid} is ${info.format}, not a disk image (qcow2 or raw)`, { field: 'imageUuid', step: 'image' });
    const tmp = join(dir, `.${ref.imageUuid}.${process.pid}.${Date.now()}`);
    const raw = `${tmp}.raw`;
    try {
      const res = await get(url, 6 * 3600_000);
      const md5 = createHash('md5');
      const sha = createHash('sha256');
      const hashing = new Transform({
        transform(c: Buffer, _e, cb) {
          md5.update(c);
          sha.update(c);
          cb(null, c);
        },
      });
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), hashing, createWriteStream(tmp), signal ? { signal } : {});
      const want = { md5: ref.md5 ?? info.md5, sha256: ref.sha256 ?? info.sha256 };
      const got = { md5: md5.digest('hex'), sha256: sha.digest('hex') };
      for (const k of ['md5', 'sha256'] as const) {
        if (want[k] && want[k]!.toLowerCase() !== got[k]) throw new TStackError('CHECKSUM_MISMATCH', `image: image ${ref.imageUuid} from the image store has ${k} ${got[k]}, expected ${want[k]}`, { step: 'image' });
      }
      // the format is the store's, never probed from the content (a raw image could pose as qcow2)
      if (info.format === 'qcow2') await exec('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', tmp, raw], { timeoutMs: 3600_000, errorCode: 'STORAGE_ERROR', ...(signal ? { signal } : {}) });
      else renameSync(tmp, raw);
      const out = { sizeBytes: statSync(raw).size, sha256: await sha256Of(raw, signal) };
      const final = this.imagePath(ref.imageUuid);
      writeFileSync(final.replace(/\.raw$/, '.json'), JSON.stringify(out));
      renameSync(raw, final);
      return out;
    } finally {
      rmSync(tmp, { force: true });
      rmSync(raw, { force: true });
    }
  }

  private async buildConfigDrive(instanceUuid: string, c: Static<typeof ConfigDriveInput>, signal?: AbortSignal): Promise<Sized> {
    const path = this.configDrivePath(instanceUuid);
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
    let vendorData: string | undefined;
    if (c.rootPassword !== undefined) {
      const hash = (await exec('openssl', ['passwd', '-6', '-stdin'], { stdin: `${c.rootPassword}\n`, timeoutMs: 10_000, quiet: true })).stdout.trim();
      if (!/^\$6\$[A-Za-z0-9./]+\$[A-Za-z0-9./]+$/.test(hash)) throw new TStackError('INTERNAL', 'configdrive: openssl passwd -6 gave no sha512-crypt hash');
      vendorData = passwordVendorData(hash);
    }
    const r = await buildConfigDrive(
      path,
      {
        instanceId: instanceUuid,
        hostname: c.hostname,
        ...(c.userData !== undefined ? { userData: c.userData } : {}),
        ...(c.sshKeys ? { sshKeys: c.sshKeys } : {}),
        networks: [c.network],
        ...(vendorData !== undefined ? { vendorData } : {}),
      },
      signal,
    );
    const out = { sizeBytes: r.sizeBytes, sha256: r.sha256 };
    writeFileSync(path.replace(/\.iso$/, '.json'), JSON.stringify(out));
    return out;
  }

  /** Forget an instance's config drive (keys, password hash); the image cache stays for the next deploy. */
  cleanup(instanceUuid: string): boolean {
    const dir = this.instanceDir(instanceUuid);
    const had = existsSync(dir);
    rmSync(dir, { recursive: true, force: true });
    return had;
  }
}
