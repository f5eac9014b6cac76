// Filesystem access for file-based primary storage. LocalFs works on a directory (local
// storage, a shared mount point, a mounted NFS export). The libnfs variant lives in nfs.ts.
import { mkdir, readdir, rename, rm, stat, statfs, copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { VolumeSource } from '../../shared/protocol/storage.js';
import { PsLayout } from '../paths.js';
import { duBytes } from '../imagestore/stores.js';

export interface PsFs {
  readonly layout: PsLayout;
  /** what qemu-img takes for a relative path (a local path or a URL) */
  target(rel: string): string;
  source(rel: string, format: 'qcow2' | 'raw'): VolumeSource;
  installPath(rel: string): string;
  /**
   * How an image at `fromRel` names its backing file `toRel`: a path relative to its directory
   * (local, shared mount point: survives mounting elsewhere) or an absolute URL (nfs://, where
   * QEMU cannot resolve relative names).
   */
  backingRef(fromRel: string, toRel: string): string;
  /**
   * Whether `qemu-img commit` into a backing file works here (QEMU's nfs driver cannot reopen a
   * read-only mount read-write, so on libnfs a snapshot is merged with rebase instead).
   */
  readonly canCommit: boolean;
  exists(rel: string): Promise<boolean>;
  mkdirp(rel: string): Promise<void>;
  /** remove a file; no error if absent */
  rm(rel: string): Promise<void>;
  /** remove a directory tree; no error if absent */
  rmTree(rel: string): Promise<void>;
  /** atomic replace */
  rename(from: string, to: string): Promise<void>;
  list(relDir: string): Promise<string[]>;
  statfs(): Promise<{ total: number; available: number }>;
  /** bytes allocated by tstack's files */
  usage(): Promise<number>;
  /** allocated bytes of one file */
  allocated(rel: string): Promise<number>;
  /** modification time of a file (ms since the epoch) */
  mtimeMs(rel: string): Promise<number>;
  /** a local temp path for a file that will end up at rel (same filesystem when possible) */
  stagingFor(rel: string): Promise<string>;
  /** move a staged local file to rel */
  commitStaged(local: string, rel: string, signal?: AbortSignal): Promise<void>;
}

export class LocalFs implements PsFs {
  readonly layout: PsLayout;
  readonly canCommit = true;
  constructor(root: string) {
    this.layout = new PsLayout(root);
  }
  abs(rel: string): string {
    return this.layout.abs(rel);
  }
  target(rel: string): string {
    return this.abs(rel);
  }
  source(rel: string, format: 'qcow2' | 'raw'): VolumeSource {
    return { type: 'file', path: this.abs(rel), format };
  }
  installPath(rel: string): string {
    return this.abs(rel);
  }
  backingRef(fromRel: string, toRel: string): string {
    return relative(dirname(this.abs(fromRel)), this.abs(toRel));
  }
  async exists(rel: string): Promise<boolean> {
    return existsSync(this.abs(rel));
  }
  async mkdirp(rel: string): Promise<void> {
    await mkdir(this.abs(rel), { recursive: true });
  }
  async rm(rel: string): Promise<void> {
    await rm(this.abs(rel), { force: true });
  }
  async rmTree(rel: string): Promise<void> {
    await rm(this.abs(rel), { recursive: true, force: true });
  }
  async rename(from: string, to: string): Promise<void> {
    await rename(this.abs(from), this.abs(to));
  }
  async list(relDir: string): Promise<string[]> {
    try {
      return await readdir(this.abs(relDir));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }
  async statfs(): Promise<{ total: number; available: number }> {
    const s = await statfs(this.layout.root);
    return { total: s.blocks * s.bsize, available: s.bavail * s.bsize };
  }
  async usage(): Promise<number> {
    return (await duBytes(join(this.layout.root, 'imagecache'))) + (await duBytes(join(this.layout.root, 'volumes')));
  }
  async allocated(rel: string): Promise<number> {
    return (await stat(this.abs(rel))).blocks * 512;
  }
  async mtimeMs(rel: string): Promise<number> {
    return (await stat(this.abs(rel))).mtimeMs;
  }
  async stagingFor(rel: string): Promise<string> {
    const p = this.abs(rel);
    await mkdir(dirname(p), { recursive: true });
    return `${p}.${randomBytes(4).toString('hex')}.part`;
  }
  async commitStaged(local: string, rel: string): Promise<void> {
    const p = this.abs(rel);
    await mkdir(dirname(p), { recursive: true });
    try {
      await rename(local, p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      await copyFile(local, p + '.copy');
      await rename(p + '.copy', p);
      await rm(local, { force: true });
    }
  }
}
