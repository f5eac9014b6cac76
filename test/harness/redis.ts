// A throwaway redis-server for a test: free 127.0.0.1 port, its own temp dir, no persistence.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { startProcess } from '../../shared/exec.js';
import { freePort, waitForPort } from './ports.js';
import { tmpDir } from './tmp.js';
import { globalCleanup, type Cleanup } from './cleanup.js';

export interface TestRedis {
  url: string;
  port: number;
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

export async function startRedis(cleanup: Cleanup = globalCleanup): Promise<TestRedis> {
  const dir = await tmpDir('redis', cleanup);
  const port = await freePort();
  const logFile = join(dir, 'redis.log');
  const p = await startProcess(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'yes', '--logfile', logFile],
    { cwd: dir },
  );
  const stop = async (): Promise<void> => {
    await p.stop(5_000);
  };
  cleanup.add(stop, `redis-server pid ${p.pid}`);
  try {
    await Promise.race([
      waitForPort('127.0.0.1', port, 15_000),
      p.exited.then(() => {
        throw new Error(`redis-server exited at start: ${tail(logFile)}`);
      }),
    ]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `redis://127.0.0.1:${port}`, port, pid: p.pid, dir, stop };
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}
