// The volume suite on Ceph RBD primary storage, and the Ceph image store, each against a
// throwaway single-node cluster.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startCeph, cephAvailable, type TestCeph } from '../../harness/ceph.js';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { exec } from '../../../shared/exec.js';
import type { TStackError } from '../../../shared/errors.js';
import { makeQcow2, qemuRead, startTestAgent, uuid, type TestAgent } from './helpers.js';
import { volumeSuite } from './volume-suite.js';
import * as S from '../../../shared/protocol/storage.js';

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

describe('storage: Ceph image store (backup storage)', function () {
  this.timeout(300_000);
  const cleanup = useCleanup();
  let c: TestCeph;
  let agent: TestAgent;
  let store: S.ImageStoreSpec;
  let img: string;

  before(async function () {
    const missing = await cephAvailable();
    if (missing) throw new Error(`ceph tests need the ceph packages: ${missing}`);
    c = await startCeph(cleanup, { pool: 'images' });
    agent = await startTestAgent(cleanup, 'cephbs');
    store = { type: 'ceph', uuid: uuid(), pool: c.pool, confPath: c.conf };
    img = join(await tmpDir('cephbs-src', cleanup), 'disk.qcow2');
    await makeQcow2(img, 48, 2, 0x2b);
  });

  it('refuses a pool that does not exist, as image store and as primary storage, saying how to create it', async function () {
    const pool = 'nosuchpool';
    const missing = (e: TStackError): boolean => e.code === 'STORAGE_ERROR' && /ceph pool nosuchpool does not exist; create it first/.test(e.message);
    await assert.rejects(agent.call(S.ImageStoreInit, { store: { type: 'ceph', uuid: uuid(), pool, confPath: c.conf } }), missing);
    await assert.rejects(agent.call(S.PsInit, { ps: { type: 'ceph', uuid: uuid(), pool, confPath: c.conf } }), missing);
  });

  it('downloads an image into the pool as raw RBD, exports it, feeds a Ceph primary storage of the same cluster by rbd copy, deletes it', async function () {
    const cap = await agent.call(S.ImageStoreInit, { store });
    assert.ok(cap.totalCapacity > 0);
    const imageUuid = uuid();
    const info = await agent.call(S.ImageStoreDownload, { store, imageUuid, url: `file://${img}` });
    assert.equal(info.format, 'raw');
    assert.equal(info.virtualSize, 48 << 20);
    assert.equal(info.installPath, `ceph://${c.pool}/img-${imageUuid}`);
    const rbd = `rbd:${c.pool}/img-${imageUuid}:conf=${c.conf}:id=admin`;
    assert.equal((await exec('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', img, rbd], { okCodes: [0, 1] })).code, 0, 'RBD image equals the source');
    assert.deepEqual(await agent.call(S.ImageStoreImageInfo, { store, imageUuid }), info);
    // the export serves the raw bytes
    const res = await fetch(`${agent.endpoint.url}/export/images/${imageUuid}`, { headers: { authorization: `Bearer ${agent.endpoint.token}`, range: 'bytes=0-1048575' } });
    assert.equal(res.status, 206);
    const head = Buffer.from(await res.arrayBuffer());
    assert.equal(head.length, 1 << 20);
    assert.ok(head.every((b) => b === 0x2b));
    // a Ceph primary storage in the same cluster pulls it and clones a root volume from it
    assert.match(info.cephFsid ?? '', /^[0-9a-f-]{36}$/);
    const ps: S.PrimaryStorageSpec = { type: 'ceph', uuid: uuid(), pool: c.pool, confPath: c.conf };
    const before = agent.events.length;
    const cached = await agent.call(S.PsImageCache, { ps, imageUuid, imageStore: { url: agent.endpoint.url, token: agent.endpoint.token } });
    assert.equal(cached.format, 'raw');
    assert.equal(cached.virtualSize, 48 << 20);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      agent.events.slice(before).filter((e) => e.type === S.DOWNLOAD_PROGRESS_EVENT && e.data.imageUuid === imageUuid),
      [],
      'same cluster: copied inside Ceph, nothing downloaded over HTTP',
    );
    const volumeUuid = uuid();
    const v = await agent.call(S.CreateRootVolume, { ps, volumeUuid, imageUuid });
    assert.equal(v.source.type, 'rbd');
    assert.ok(await qemuRead(`rbd:${c.pool}/vol-${volumeUuid}:conf=${c.conf}:id=admin`, 'raw', 0, 2, 0x2b));
    await agent.call(S.DeleteVolume, { ps, volumeUuid });
    await agent.call(S.PsImageCacheDelete, { ps, imageUuid });
    assert.deepEqual(await agent.call(S.ImageStoreDelete, { store, imageUuid }), { deleted: true });
    await assert.rejects(agent.call(S.ImageStoreImageInfo, { store, imageUuid }), (e: TStackError) => e.code === 'IMAGE_NOT_FOUND');
    const left = JSON.parse((await exec('rbd', ['-c', c.conf, 'ls', '--format', 'json', c.pool])).stdout) as string[];
    assert.deepEqual(left, []);
  });
});
