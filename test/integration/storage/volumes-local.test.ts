// The volume suite on local and shared-mount-point primary storage.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../../shared/exec.js';
import { tmpDir } from '../../harness/tmp.js';
import { uuid } from './helpers.js';
import { volumeSuite } from './volume-suite.js';
import type * as S from '../../../shared/protocol/storage.js';

const fileTarget = (x: S.VolumeSource | string): { target: string; format: string } => {
  if (typeof x === 'string') return { target: x, format: x.endsWith('.raw') ? 'raw' : 'qcow2' };
  if (x.type !== 'file') throw new Error(`unexpected source ${x.type}`);
  return { target: x.path, format: x.format };
};

volumeSuite('local', async (cleanup) => ({
  ps: { type: 'local', uuid: uuid(), path: await tmpDir('ps-local', cleanup) },
  target: fileTarget,
}));

// A shared mount point: the storage directory is mounted (bind mount standing in for NFS/GlusterFS)
// at the path given to the agent; the original directory plays the other host's view.
volumeSuite('sharedmountpoint', async (cleanup) => {
  const shared = await tmpDir('smp-shared', cleanup);
  const mnt = await tmpDir('smp-mnt', cleanup);
  await exec('mount', ['--bind', shared, mnt]);
  cleanup.add(() => exec('umount', [mnt]), `umount ${mnt}`);
  return {
    ps: { type: 'sharedmountpoint', uuid: uuid(), path: mnt },
    target: fileTarget,
    peerSees: (rel: string) => existsSync(join(shared, rel)),
  };
});
