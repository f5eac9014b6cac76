// NFS primary storage.
//  - mount mode (real hosts): the agent mounts server:/export at mountPath with the kernel
//    client (mount -t nfs) and then it is a file-based storage like a shared mount point.
//  - libnfs mode (no kernel NFS client, e.g. containers): the agent reaches the export the way
//    QEMU does, through nfs:// URLs (qemu-img) and libnfs-utils (nfs-ls, nfs-cp); VM disks are
//    {type:'nfs'} sources that QEMU opens itself. See docs/storage.md for what this mode can do.
import { readFile, mkdir } from 'node:fs/promises';
import { exec, execOk } from '../../shared/exec.js';
import { TStackError } from '../../shared/errors.js';
import type { PrimaryStorageSpec } from '../../shared/protocol/storage.js';
import type { AgentContext } from '../context.js';
import { FileBackend } from './file.js';
import { LocalFs } from './fs.js';
import { LibnfsFs } from './libnfs.js';
import type { PrimaryBackend } from './types.js';

type NfsSpec = Extract<PrimaryStorageSpec, { type: 'nfs' }>;

export function parseNfsUrl(url: string): { server: string; export: string } {
  const m = /^(\[[^\]]+\]|[^:/]+):(\/.*)$/.exec(url);
  if (!m) throw new TStackError('INVALID_ARGUMENT', `ps.url: expected server:/export, got ${url}`, { field: 'ps.url' });
  const exp = m[2]!.replace(/\/+$/, '') || '/';
  if (/(^|\/)\.\.(\/|$)/.test(exp)) throw new TStackError('INVALID_ARGUMENT', `ps.url: '..' in export path`, { field: 'ps.url' });
  return { server: m[1]!, export: exp };
}

/** Does this kernel have an NFS client? (/proc/filesystems lists nfs / nfs4) */
export async function kernelHasNfs(): Promise<boolean> {
  const fs = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (/\tnfs4?\n/.test(fs)) return true;
  // the module may be loadable
  return execOk('modprobe', ['-n', 'nfs'], { timeoutMs: 10_000 });
}

async function mountedAt(path: string): Promise<string | undefined> {
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  for (const line of mounts.split('\n')) {
    const [src, dst, type] = line.split(' ');
    if (dst === path && type?.startsWith('nfs')) return src;
  }
  return undefined;
}

/** How this host reaches the export: the spec's access, or for 'auto' a mount where there is (or can be) one, else libnfs. */
export async function nfsAccess(ps: NfsSpec): Promise<'mount' | 'libnfs'> {
  const access = ps.access ?? 'auto';
  if (access !== 'auto') return access;
  return (await mountedAt(ps.mountPath)) !== undefined || (await kernelHasNfs()) ? 'mount' : 'libnfs';
}

/** The export through libnfs (what the driver uses when nfsAccess() says 'libnfs'). */
export function libnfsOf(ps: NfsSpec, ctx: AgentContext): LibnfsFs {
  const target = parseNfsUrl(ps.url);
  return new LibnfsFs(target.server, target.export, ctx);
}

export async function openNfs(ps: NfsSpec, ctx: AgentContext): Promise<PrimaryBackend> {
  const target = parseNfsUrl(ps.url);
  if ((await nfsAccess(ps)) === 'libnfs') return new FileBackend(libnfsOf(ps, ctx), ctx, { access: 'libnfs' });
  const src = await mountedAt(ps.mountPath);
  if (src === undefined) {
    await mkdir(ps.mountPath, { recursive: true });
    const args = ['-t', 'nfs'];
    if (ps.mountOptions) args.push('-o', ps.mountOptions);
    args.push(`${target.server}:${target.export}`, ps.mountPath);
    await exec('mount', args, { timeoutMs: 120_000, errorCode: 'STORAGE_ERROR' }).catch((e: TStackError) => {
      throw new TStackError('STORAGE_ERROR', `cannot mount ${ps.url} on ${ps.mountPath}: ${e.message}`, e.details);
    });
  } else if (src.replace(/\/+$/, '') !== `${target.server}:${target.export}`) {
    throw new TStackError('STORAGE_ERROR', `${ps.mountPath} already has ${src} mounted, not ${ps.url}`);
  }
  return new FileBackend(new LocalFs(ps.mountPath), ctx, { access: 'mount' });
}

export async function unmountNfs(ps: NfsSpec): Promise<void> {
  if (await mountedAt(ps.mountPath)) await exec('umount', [ps.mountPath], { timeoutMs: 120_000, errorCode: 'STORAGE_ERROR' });
}
