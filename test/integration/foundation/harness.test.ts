// The test harness itself, against the real things it starts.
import assert from 'node:assert/strict';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Cleanup, useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { startRedis } from '../../harness/redis.js';
import { createBridge, createNetns, createVeth, createTap, moveToNetns, attachToBridge, addAddress, nsExec, linkExists, netnsExists } from '../../harness/net.js';
import { startAgentProcess, freePort } from '../../harness/agents.js';
import { ensureLibvirt, virsh } from '../../harness/libvirt.js';
import { execOut, startProcess } from '../../../shared/exec.js';
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { RUNS_DIR, deadRuns, sweepDeadRuns } from '../../harness/sweep.js';

function redisPing(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port });
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        c.end();
        resolve(buf.trim());
      }
    });
    c.on('error', reject);
    c.write('PING\r\n');
  });
}

describe('foundation: test harness', function () {
  const cleanup = useCleanup();

  it('runId is short, stable and prefixes tmp dirs (world-traversable, removed by cleanup)', async () => {
    assert.match(runId(), /^t[0-9a-f]{5}$/);
    assert.equal(runId(), runId());
    const local = new Cleanup();
    const d = await tmpDir('x', local);
    assert.ok(d.startsWith(`/tmp/${runId()}-x-`));
    assert.equal(statSync(d).mode & 0o777, 0o755);
    writeFileSync(`${d}/f`, 'x');
    await local.run();
    assert.equal(existsSync(d), false);
  });

  it('Cleanup runs LIFO and never throws', async () => {
    const c = new Cleanup();
    const order: number[] = [];
    c.add(() => order.push(1));
    c.add(() => {
      throw new Error('boom (expected in this test)');
    });
    c.add(async () => order.push(3));
    await c.run();
    assert.deepEqual(order, [3, 1]);
    assert.equal(c.size, 0);
  });

  it('startRedis runs a real redis-server on a free port and stops only it', async () => {
    const r = await startRedis(cleanup);
    assert.equal(await redisPing(r.port), '+PONG');
    await r.stop();
    assert.throws(() => process.kill(r.pid, 0));
  });

  it('freePort returns distinct ports', async () => {
    const a = await freePort();
    const b = await freePort();
    assert.notEqual(a, b);
  });

  it('netns + bridge + veth: two namespaces talk over a test bridge, and all of it is removed', async () => {
    const local = new Cleanup();
    const id = runId();
    const br = `${id}hb`;
    const ns1 = `${id}-h1`;
    const ns2 = `${id}-h2`;
    try {
      await createBridge(br, local);
      await createNetns(ns1, local);
      await createNetns(ns2, local);
      await createVeth(`${id}a0`, `${id}a1`, local);
      await createVeth(`${id}b0`, `${id}b1`, local);
      await attachToBridge(`${id}a0`, br);
      await attachToBridge(`${id}b0`, br);
      await createTap(`${id}tp`, br, local);
      assert.match(await execOut('ip', ['-o', 'link', 'show', 'dev', `${id}tp`]), new RegExp(`master ${br}`));
      await moveToNetns(`${id}a1`, ns1);
      await moveToNetns(`${id}b1`, ns2);
      await addAddress(`${id}a1`, '10.250.7.1/24', ns1);
      await addAddress(`${id}b1`, '10.250.7.2/24', ns2);
      const out = await nsExec(ns1, 'ping', ['-c', '1', '-W', '5', '10.250.7.2']);
      assert.match(out.stdout, /1 received/);
      assert.equal(await execOut('ip', ['netns', 'identify', String(process.pid)]), '');
    } finally {
      await local.run();
    }
    assert.equal(await linkExists(br), false);
    assert.equal(await linkExists(`${id}a0`), false);
    assert.equal(await linkExists(`${id}tp`), false);
    assert.equal(await netnsExists(ns1), false);
    assert.equal(await netnsExists(ns2), false);
    await assert.rejects(createBridge('a-name-longer-than-15', local), /longer than 15/);
  });

  it('ensureLibvirt leaves libvirtd answering, and the default network inactive', async () => {
    await ensureLibvirt();
    const nets = await virsh(['net-list', '--name']);
    assert.ok(!nets.split('\n').includes('default'), 'the default network must not be active');
  });

  it('sweepDeadRuns removes the netns, links, processes and tmp dirs of a run whose process died, and nothing else', async () => {
    const dead = 'z' + randomBytes(3).toString('hex').slice(0, 5);
    mkdirSync(RUNS_DIR, { recursive: true });
    writeFileSync(`${RUNS_DIR}/${dead}`, '999999999 1\n'); // a pid that cannot exist
    assert.ok(deadRuns().includes(dead));
    assert.ok(!deadRuns().includes(runId()), 'this run is alive');
    const local = new Cleanup(); // safety net should the sweep miss something
    await createNetns(`${dead}-ns`, local);
    await createBridge(`${dead}br`, local);
    const dir = `/tmp/${dead}-leftover`;
    mkdirSync(dir);
    const proc = await startProcess('sh', ['-c', 'sleep 60', `${dir}/arg0`]);
    local.add(() => proc.stop(100));
    const mine = await tmpDir('keep', local);
    try {
      const removed = await sweepDeadRuns();
      assert.ok(removed.includes(`netns ${dead}-ns`), removed.join(', '));
      assert.ok(removed.includes(`link ${dead}br`));
      assert.ok(removed.includes(dir));
      await proc.exited;
      assert.equal(await netnsExists(`${dead}-ns`), false);
      assert.equal(await linkExists(`${dead}br`), false);
      assert.equal(existsSync(dir), false);
      assert.equal(existsSync(`${RUNS_DIR}/${dead}`), false);
      assert.ok(existsSync(mine), "a live run's files are untouched");
    } finally {
      await local.run();
    }
  });

  it('startAgentProcess starts a real agent and waits for /health', async () => {
    const a = await startAgentProcess('storageagent', { cleanup, logLevel: 'warn' });
    const h = (await (await fetch(`${a.url}/health`)).json()) as { status: string };
    assert.equal(h.status, 'ok');
    assert.ok(a.token.length >= 16);
    assert.equal(statSync(a.tokenFile).mode & 0o777, 0o600);
    await a.kill9();
    assert.throws(() => process.kill(a.pid, 0));
  });
});
