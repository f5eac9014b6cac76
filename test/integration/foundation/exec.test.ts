// shared/exec against real programs: argument arrays (no shell), timeouts, stderr in errors,
// stdin, ok codes, cancellation, netns, and long-running processes.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, execOk, execOut, startProcess } from '../../../shared/exec.js';
import { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { runId, tmpDir } from '../../harness/tmp.js';
import { createNetns } from '../../harness/net.js';

async function rejected(p: Promise<unknown>): Promise<TStackError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TStackError, String(e));
    return e;
  }
  assert.fail('expected a failure');
}

describe('foundation: exec helper', function () {
  this.timeout(30_000);
  const cleanup = useCleanup();

  it('passes arguments verbatim, never through a shell', async () => {
    const dir = await tmpDir('exec', cleanup);
    const marker = join(dir, 'pwned');
    const out = await execOut('echo', [`$(touch ${marker})`, ';', 'rm', '-rf', '/', '|', '&&', '`id`']);
    assert.equal(out, `$(touch ${marker}) ; rm -rf / | && \`id\``);
    assert.equal(existsSync(marker), false);
  });

  it('returns stdout, stderr, exit code and duration', async () => {
    const r = await exec('sh', ['-c', 'echo out; echo err >&2']);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err');
    assert.equal(r.code, 0);
    assert.ok(r.durationMs >= 0);
  });

  it('a failing program rejects with EXEC_FAILED, its stderr, exit code and the command', async () => {
    const e = await rejected(exec('sh', ['-c', 'echo first >&2; echo the-real-reason >&2; exit 3']));
    assert.equal(e.code, 'EXEC_FAILED');
    assert.match(e.message, /the-real-reason/);
    assert.equal(e.details?.exitCode, 3);
    assert.match(String(e.details?.stderr), /first\nthe-real-reason/);
    assert.match(String(e.details?.command), /^sh -c/);
    const custom = await rejected(exec('false', [], { errorCode: 'LIBVIRT_ERROR' }));
    assert.equal(custom.code, 'LIBVIRT_ERROR');
  });

  it('okCodes make other exit codes success', async () => {
    const r = await exec('sh', ['-c', 'exit 2'], { okCodes: [0, 2] });
    assert.equal(r.code, 2);
  });

  it('kills a program at its timeout with a typed TIMEOUT error', async () => {
    const t0 = Date.now();
    const e = await rejected(exec('sleep', ['30'], { timeoutMs: 300 }));
    assert.equal(e.code, 'TIMEOUT');
    assert.ok(Date.now() - t0 < 5_000);
    assert.match(e.message, /timed out after 300 ms/);
  });

  it('feeds stdin', async () => {
    assert.equal(await execOut('cat', [], { stdin: 'hello\nworld' }), 'hello\nworld');
    assert.equal(await execOut('wc', ['-c'], { stdin: Buffer.alloc(100_000, 1) }), '100000');
  });

  it('an abort signal cancels the program (CANCELLED)', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const e = await rejected(exec('sleep', ['30'], { signal: ac.signal }));
    assert.equal(e.code, 'CANCELLED');
  });

  it('a missing program is an error, not a crash; NUL bytes and bad netns names are refused', async () => {
    const e = await rejected(exec('/nonexistent/tstack-no-such-program', []));
    assert.equal(e.code, 'EXEC_FAILED');
    assert.equal(await execOk('/nonexistent/tstack-no-such-program', []), false);
    assert.equal((await rejected(exec('echo', ['a\0b']))).code, 'INVALID_ARGUMENT');
    assert.equal((await rejected(exec('true', [], { netns: 'bad name; rm' }))).code, 'INVALID_ARGUMENT');
  });

  it('env and cwd', async () => {
    const dir = await tmpDir('exec-cwd', cleanup);
    assert.equal(await execOut('sh', ['-c', 'echo "$TSTACK_X:$(pwd)"'], { env: { TSTACK_X: 'y' }, cwd: dir }), `y:${dir}`);
  });

  it('runs inside a network namespace', async () => {
    const ns = await createNetns(`${runId()}-ex`, cleanup);
    const links = await execOut('ip', ['-o', 'link'], { netns: ns });
    assert.equal(links.split('\n').length, 1, 'only lo in a fresh namespace');
    assert.match(links, /lo:/);
  });

  it('startProcess runs a long-lived program, logs to a file, and stops only its own PID', async () => {
    const dir = await tmpDir('exec-proc', cleanup);
    const log = join(dir, 'p.log');
    const p = await startProcess('sh', ['-c', 'echo started; trap "echo got-term; exit 0" TERM; while :; do sleep 0.1; done'], { logFile: log });
    cleanup.add(() => p.stop(), 'sh');
    assert.ok(p.pid > 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(p.running, true);
    process.kill(p.pid, 0);
    await p.stop(2_000);
    assert.equal(p.running, false);
    assert.match(readFileSync(log, 'utf8'), /started\n(.|\n)*got-term/);
    const log2 = join(dir, 'stubborn.log');
    const stubborn = await startProcess('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done'], { logFile: log2 });
    cleanup.add(() => stubborn.stop(100), 'stubborn sh');
    while (!readFileSync(log2, 'utf8').includes('ready')) await new Promise((r) => setTimeout(r, 20)); // trap installed
    const t0 = Date.now();
    await stubborn.stop(300);
    assert.ok(Date.now() - t0 < 3_000, 'SIGKILL after the grace period');
    assert.equal((await stubborn.exited).signal, 'SIGKILL');
    await assert.rejects(startProcess('/nonexistent/tstack-nope', []), /cannot start/);
  });
});
