// PsFs over libnfs: qemu-img opens nfs:// URLs itself (libnfs inside QEMU); file uploads go
// through nfs-cp (libnfs-utils). Namespace operations libnfs-utils has no tool for (readdir
// with exact errors, mkdir, remove, rename, fsstat) go through a minimal NFSv3 client (nfs3.ts):
// nfs-ls cannot tell "no such directory" from "access denied" (both are a failed MOUNT).
import { exec } from '../../shared/exec.js';
import type { VolumeSource } from '../../shared/protocol/storage.js';
import { PsLayout } from '../paths.js';
import type { AgentContext } from '../context.js';
import type { PsFs } from './fs.js';
import { Nfs3Client, NfsStatusError } from './nfs3.js';

export class LibnfsFs implements PsFs {
  readonly layout: PsLayout;
  readonly canCommit = false;
  private client?: Nfs3Client;
  constructor(
    readonly server: string,
    readonly exportPath: string,
    private readonly ctx: AgentContext,
  ) {
    // the layout validates relative paths; its root is the export path as seen by the server
    this.layout = new PsLayout(exportPath === '/' ? '/nfs-root' : exportPath);
  }
  private relOk(rel: string): string {
    return this.layout.rel(rel);
  }
  url(rel: string): string {
    const r = rel ? '/' + this.relOk(rel) : '';
    return `nfs://${this.server}${this.exportPath === '/' ? '' : this.exportPath}${r}`;
  }
  target(rel: string): string {
    return this.url(rel);
  }
  source(rel: string, format: 'qcow2' | 'raw'): VolumeSource {
    return { type: 'nfs', server: this.server, export: this.exportPath, path: '/' + this.relOk(rel), format };
  }
  installPath(rel: string): string {
    return this.url(rel);
  }
  /**
   * An absolute URL (QEMU's nfs driver resolves no relative names) that says uid=0/gid=0: QEMU
   * opens backing layers from these names with its own uid (libvirt-qemu) otherwise, and the
   * layers are root's 0600 files (NFS3ERR_ACCES). The top layer gets root from <identity>.
   */
  backingRef(_fromRel: string, toRel: string): string {
    return `${this.url(toRel)}?uid=0&gid=0`;
  }
  private async nfs(): Promise<Nfs3Client> {
    this.client ??= await Nfs3Client.connect(this.server, this.exportPath);
    return this.client;
  }
  /** Drop the NFS connection (the next operation connects again: a long-lived user recovers from a broken one). */
  close(): void {
    this.client?.close();
    this.client = undefined;
  }
  async list(relDir: string): Promise<string[]> {
    try {
      return await (await this.nfs()).readdir(relDir ? this.relOk(relDir) : '');
    } catch (e) {
      if (e instanceof NfsStatusError && (e.status === 2 || e.status === 20)) return [];
      throw e;
    }
  }
  async exists(rel: string): Promise<boolean> {
    try {
      await (await this.nfs()).getattr(this.relOk(rel));
      return true;
    } catch (e) {
      if (e instanceof NfsStatusError && (e.status === 2 || e.status === 20)) return false;
      throw e;
    }
  }
  async mkdirp(rel: string): Promise<void> {
    await (await this.nfs()).mkdirp(this.relOk(rel));
  }
  async rm(rel: string): Promise<void> {
    await (await this.nfs()).remove(this.relOk(rel));
  }
  async rmTree(rel: string): Promise<void> {
    await (await this.nfs()).removeTree(this.relOk(rel));
  }
  async rename(from: string, to: string): Promise<void> {
    await (await this.nfs()).rename(this.relOk(from), this.relOk(to));
  }
  async statfs(): Promise<{ total: number; available: number }> {
    const s = await (await this.nfs()).fsstat();
    return { total: s.total, available: s.available };
  }
  async usage(): Promise<number> {
    const c = await this.nfs();
    return (await c.usage('imagecache')) + (await c.usage('volumes'));
  }
  async allocated(rel: string): Promise<number> {
    return (await (await this.nfs()).getattr(this.relOk(rel))).used;
  }
  async mtimeMs(rel: string): Promise<number> {
    return (await (await this.nfs()).getattr(this.relOk(rel))).mtimeMs;
  }
  async stagingFor(rel: string): Promise<string> {
    return this.ctx.tmpFile(`nfs-stage-${this.relOk(rel).replace(/\//g, '_')}`);
  }
  async commitStaged(local: string, rel: string, signal?: AbortSignal): Promise<void> {
    const tmpRel = `${this.relOk(rel)}.part`;
    await exec('nfs-cp', [local, this.url(tmpRel)], { timeoutMs: 6 * 3600_000, errorCode: 'STORAGE_ERROR', ...(signal ? { signal } : {}) });
    await this.rename(tmpRel, rel);
  }
}
