// scripts/aio (with AIO_NO_CLOUD=1: daemons only) starts the daemons that exist, waits for
// /health, reports where they listen, and stops exactly what it started. Run from the sources (AIO_FROM_SOURCE=1) with every path and port
// moved into a temp dir, so the test touches nothing of a real installation.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../../shared/exec.js';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { freePort } from '../../harness/ports.js';
import { REPO_ROOT } from '../../harness/guest.js';

/** Alive and not a zombie (a daemon that outlived aio's shell is reaped by init, if init reaps). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('foundation: scripts/aio', function () {
  this.timeout(240_000);
  const cleanup = useCleanup();

  it('starts the agents (and the controller) with pid files, tokens and logs, is idempotent, and stops them', async () => {
    const dir = await tmpDir('aio', cleanup);
    const ports = { kvmagent: await freePort(), storageagent: await freePort(), vrouteragent: await freePort(), controller: await freePort() };
    const env: Record<string, string> = {
      AIO_SKIP_SETUP: '1',
      AIO_FROM_SOURCE: '1',
      AIO_NO_SYSTEMD: '1',
      AIO_NO_CLOUD: '1', // just the daemons: no aio- cloud resources (bridge, host, image) on this machine
      AIO_DATA_DIR: join(dir, 'data'),
      AIO_LOG_DIR: join(dir, 'log'),
      AIO_RUN_DIR: join(dir, 'run'),
      AIO_ETC_DIR: join(dir, 'etc'),
      AIO_KVMAGENT_PORT: String(ports.kvmagent),
      AIO_STORAGEAGENT_PORT: String(ports.storageagent),
      AIO_VROUTERAGENT_PORT: String(ports.vrouteragent),
      AIO_CONTROLLER_LISTEN: `127.0.0.1:${ports.controller}`,
      TSTACK_LOG_LEVEL: 'warn',
    };
    const aio = (cmd: string) => exec(join(REPO_ROOT, 'scripts/aio'), [cmd], { env, timeoutMs: 200_000 });
    cleanup.add(() => aio('stop'), 'aio stop');
    const names = ['kvmagent', 'storageagent', 'vrouteragent', ...(existsSync(join(REPO_ROOT, 'controller/main.ts')) ? ['controller'] : [])] as const;

    const started = await aio('start');
    const pids: Record<string, number> = {};
    for (const n of names) {
      const port = ports[n as keyof typeof ports];
      assert.match(started.stdout, new RegExp(`tstack-${n}\\s+http://127\\.0\\.0\\.1:${port}\\s+up`), started.stdout);
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(res.status, 200, n);
      pids[n] = Number(readFileSync(join(dir, 'run', `${n}.pid`), 'utf8'));
      assert.ok(running(pids[n]!), `${n} runs`);
      assert.equal(statSync(join(dir, 'etc', `${n}.token`)).mode & 0o777, 0o600);
      assert.ok(existsSync(join(dir, 'log', `${n}.log`)));
    }
    // a second start leaves the running daemons alone
    const again = await aio('start');
    for (const n of names) {
      assert.match(again.stderr, new RegExp(`${n} already runs \\(pid ${pids[n]}\\)`));
    }
    await aio('stop');
    for (const n of names) {
      assert.equal(running(pids[n]!), false, `${n} (pid ${pids[n]}) still runs after stop`);
      assert.equal(existsSync(join(dir, 'run', `${n}.pid`)), false);
    }
    const status = await aio('status');
    assert.match(status.stdout, /tstack-kvmagent\s+\S+\s+down/);
  });
});
