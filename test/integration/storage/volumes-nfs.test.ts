// The volume suite on NFS primary storage, served by nfs-ganesha in a test namespace.
//  - libnfs access: the agent reaches the export like QEMU does (nfs:// URLs, libnfs-utils, and
//    its own NFSv3 RPCs for mkdir/remove/rename/fsstat); VM disks are {type:'nfs'} sources.
//  - mount access: the agent mounts server:/export with the kernel NFS client; skipped (with the
//    reason) on kernels without one.
import { tmpDir } from '../../harness/tmp.js';
import { startNfs, type TestNfs } from '../../harness/nfs.js';
import { kernelHasNfs } from '../../../storageagent/primary/nfs.js';
import { uuid } from './helpers.js';
import { volumeSuite } from './volume-suite.js';
import type * as S from '../../../shared/protocol/storage.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../../shared/exec.js';
import { nfsServerPath } from '../../../shared/protocol/kvm.js';

const nfsTarget = (nfs: TestNfs, mountPath?: string) => (x: S.VolumeSource | string): { target: string; format: string } => {
  if (typeof x === 'string') return { target: x, format: x.endsWith('.raw') ? 'raw' : 'qcow2' };
  if (x.type === 'nfs') {
    if (x.server !== nfs.server || x.export !== nfs.exportPath) throw new Error(`unexpected nfs source ${JSON.stringify(x)}`);
    return { target: `nfs://${x.server}${nfsServerPath(x)}`, format: x.format ?? 'qcow2' };
  }
  if (x.type === 'file' && mountPath && x.path.startsWith(mountPath + '/')) return { target: x.path, format: x.format };
  throw new Error(`unexpected source ${JSON.stringify(x)}`);
};

volumeSuite('nfs (libnfs access)', async (cleanup) => {
  const nfs = await startNfs(cleanup, 'nfsl');
  return {
    ps: { type: 'nfs', uuid: uuid(), url: nfs.url, mountPath: await tmpDir('nfs-mnt', cleanup), access: 'libnfs' },
    target: nfsTarget(nfs),
    // the server's exported directory is the "other host" view
    peerSees: (rel: string) => existsSync(join(nfs.dir, rel)),
  };
});

volumeSuite('nfs (kernel mount)', async (cleanup) => {
  if (!(await kernelHasNfs())) return 'this kernel has no NFS client (no nfs in /proc/filesystems, modprobe nfs fails), so mount -t nfs cannot work here';
  const nfs = await startNfs(cleanup, 'nfsm');
  const mountPath = await tmpDir('nfs-kmnt', cleanup);
  cleanup.add(() => exec('umount', [mountPath]).catch(() => undefined), `umount ${mountPath}`);
  return {
    ps: { type: 'nfs', uuid: uuid(), url: nfs.url, mountPath, access: 'mount', mountOptions: 'vers=3,nolock' },
    target: nfsTarget(nfs, mountPath),
    peerSees: (rel: string) => existsSync(join(nfs.dir, rel)),
  };
});
