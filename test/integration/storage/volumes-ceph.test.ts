// The volume suite on Ceph RBD primary storage, against a throwaway single-node cluster.
import { startCeph, cephAvailable, type TestCeph } from '../../harness/ceph.js';
import { uuid } from './helpers.js';
import { volumeSuite } from './volume-suite.js';
import type * as S from '../../../shared/protocol/storage.js';

let ceph: TestCeph;

volumeSuite('ceph', async (cleanup) => {
  const missing = await cephAvailable();
  if (missing) throw new Error(`ceph tests need the ceph packages: ${missing}`);
  ceph = await startCeph(cleanup, { pool: 'tstack' });
  const q = (pool: string, spec: string): string => `rbd:${pool}/${spec}:conf=${ceph.conf}:id=admin`;
  return {
    ps: { type: 'ceph', uuid: uuid(), pool: ceph.pool, confPath: ceph.conf, user: 'admin' },
    target: (x: S.VolumeSource | string) => {
      if (typeof x === 'string') {
        const m = /^ceph:\/\/([^/]+)\/(.+)$/.exec(x);
        if (m) return { target: q(m[1]!, m[2]!), format: 'raw' };
        return { target: x, format: x.endsWith('.raw') ? 'raw' : 'qcow2' };
      }
      if (x.type !== 'rbd') throw new Error(`unexpected source ${x.type}`);
      if (x.monitors.length === 0 || !x.monitors.every((m) => /^127\.0\.0\.1:\d+$/.test(m))) throw new Error(`bad monitors ${x.monitors.join(',')}`);
      return { target: q(x.pool, x.image), format: 'raw' };
    },
  };
});
