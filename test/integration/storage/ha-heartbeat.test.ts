// The storage heartbeat and disk-lock check behind VM HA (storageagent/ha.ts): one storage agent
// beats on a shared mount point, another reads it as a peer would; a disk opened by a QEMU
// process (qemu-io holding its image lock) is reported in use, a closed one is not. On NFS with
// no kernel client (libnfs access: nothing is mounted) the heartbeat goes through libnfs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startNfs } from '../../harness/nfs.js';
import { kernelHasNfs } from '../../../storageagent/primary/nfs.js';
import * as H from '../../../shared/protocol/ha.js';
import type { RequestOf } from '../../../shared/protocol/command.js';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { makeQcow2, startTestAgent, uuid } from './helpers.js';

type Agent = Awaited<ReturnType<typeof startTestAgent>>;
type Ps = RequestOf<typeof H.HeartbeatSet>['ps'][number];

/** `a` beats for `hostA` on `ps` (already set): peer `b` sees the seq rise, then stay once `a` stops. */
async function beatsThenStops(a: Agent, b: Agent, hostA: string, ps: Ps, writer: string | undefined, t: { intervalMs: number; beatWaitMs: number; stopWaitMs: number }): Promise<void> {
  const look = async () => (await b.call(H.HeartbeatCheck, { hostUuid: hostA, ps: [ps], volumePaths: [] })).beats[0]!;
  const first = await look();
  assert.equal(first.error, undefined);
  assert.equal(first.writer, writer);
  await new Promise((r) => setTimeout(r, t.beatWaitMs));
  const second = await look();
  assert.ok(second.seq! > first.seq!, `beats: ${first.seq} → ${second.seq}`);
  await a.call(H.HeartbeatSet, { hostUuid: hostA, ps: [], intervalMs: t.intervalMs });
  const stopped = await look();
  await new Promise((r) => setTimeout(r, t.stopWaitMs));
  assert.equal((await look()).seq, stopped.seq, 'no beat once stopped');
}

/** A host that never beat on `ps` has no heartbeat there, and that is no error. */
async function neverBeat(b: Agent, ps: Ps): Promise<void> {
  const never = (await b.call(H.HeartbeatCheck, { hostUuid: uuid(), ps: [ps], volumePaths: [] })).beats[0]!;
  assert.equal(never.seq, undefined, 'a host that never beat has no heartbeat');
  assert.equal(never.error, undefined);
}

describe('storage agent: HA heartbeat and disk locks', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');

  it('a host’s heartbeat changes while it beats and stops changing when it stops; a peer sees both', async () => {
    const [a, b] = [await startTestAgent(cleanup, 'ha-a'), await startTestAgent(cleanup, 'ha-b')];
    const shared = await tmpDir('ha-shared', cleanup);
    const ps = { type: 'sharedmountpoint' as const, uuid: uuid(), path: shared };
    const hostA = uuid();
    const set = await a.call(H.HeartbeatSet, { hostUuid: hostA, ps: [ps], intervalMs: 200 });
    assert.deepEqual(set.files, [join(shared, '.tstack-ha', `${hostA}.json`)]);
    await beatsThenStops(a, b, hostA, ps, set.writer, { intervalMs: 200, beatWaitMs: 700, stopWaitMs: 700 });
    await neverBeat(b, ps);
    const local = await a.call(H.HeartbeatSet, { hostUuid: hostA, ps: [{ type: 'local', uuid: uuid(), path: shared }], intervalMs: 200 }).catch((e: Error & { code?: string }) => e);
    assert.equal((local as { code?: string }).code, 'INVALID_ARGUMENT', 'local storage has no heartbeat');
  });

  it('NFS through libnfs (nothing mounted): the heartbeat is written and read on the export', async () => {
    const [a, b] = [await startTestAgent(cleanup, 'ha-na'), await startTestAgent(cleanup, 'ha-nb')];
    const nfs = await startNfs(cleanup, 'hanfs');
    const mountPath = await tmpDir('ha-nfs-mnt', cleanup);
    // as the controller sends it (access 'auto'), which means libnfs where the kernel has no NFS client
    const ps = { type: 'nfs' as const, uuid: uuid(), url: nfs.url, mountPath, ...((await kernelHasNfs()) ? { access: 'libnfs' as const } : {}) };
    const hostA = uuid();
    const set = await a.call(H.HeartbeatSet, { hostUuid: hostA, ps: [ps], intervalMs: 300 });
    assert.deepEqual(set.files, [`nfs://${nfs.server}${nfs.exportPath}/.tstack-ha/${hostA}.json`]);
    assert.equal(set.skipped, undefined);
    const onServer = join(nfs.dir, '.tstack-ha', `${hostA}.json`);
    assert.equal(JSON.parse(readFileSync(onServer, 'utf8')).writer, set.writer, 'the file is on the export');
    assert.deepEqual(readdirSync(mountPath), [], 'nothing was written under the mount point');
    await beatsThenStops(a, b, hostA, ps, set.writer, { intervalMs: 300, beatWaitMs: 1_500, stopWaitMs: 1_000 });
    assert.deepEqual(readdirSync(join(nfs.dir, '.tstack-ha')), [`${hostA}.json`], 'no temp file left');
    await neverBeat(b, ps);
    assert.ok(!existsSync(join(mountPath, '.tstack-ha')));
  });

  it('reports a disk held by a QEMU process, not a closed one', async () => {
    const a = await startTestAgent(cleanup, 'ha-lock');
    const dir = await tmpDir('ha-disks', cleanup);
    const [held, free] = [join(dir, 'held.qcow2'), join(dir, 'free.qcow2')];
    await makeQcow2(held, 8, 0);
    await makeQcow2(free, 8, 0);
    const q = spawn('qemu-io', ['-c', 'sleep 20000', held], { stdio: 'ignore' });
    cleanup.add(() => void q.kill('SIGKILL'), 'qemu-io');
    await new Promise((r) => setTimeout(r, 700));
    const ps = { type: 'sharedmountpoint' as const, uuid: uuid(), path: dir };
    const r = await a.call(H.HeartbeatCheck, { hostUuid: uuid(), ps: [ps], volumePaths: [held, free, join(dir, 'missing.qcow2')] });
    assert.deepEqual(r.volumesInUse, [held]);
    q.kill('SIGKILL');
    await new Promise((res) => q.once('exit', res));
    assert.deepEqual((await a.call(H.HeartbeatCheck, { hostUuid: uuid(), ps: [ps], volumePaths: [held] })).volumesInUse, [], 'the lock goes with the process');
  });
});
