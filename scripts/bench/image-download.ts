// Benchmark: storageagent image download vs curl, same file, same loopback HTTP server, same
// destination filesystem.
//   npx tsx scripts/bench/image-download.ts [sizeMiB=512] [runs=5]
// The agent runs as its own process (like curl), the HTTP server in this one, its file in the page
// cache for every run (a warm-up download first). Each run times three jobs, in an order that
// rotates from run to run to spread cache and CPU noise:
// - the agent: from the imagestore/download request to its answer: the stream to disk hashed on
//   the way (sha256, the image's integrity record), the qcow2 check, one fsync, the move into the
//   store;
// - curl + fsync (the baseline of `ratio:`): `curl -o` the file, then `sync FILE` (an fsync of
//   it: the durability the agent gives its file), timed as one;
// - curl + `openssl dgst -sha256` + fsync, for information: the same job as the agent's with
//   standard tools (a second pass over the file: curl cannot hash while it writes).
// Each output file is removed after its run, outside the timing. Prints the medians, the CPU
// seconds each side used (the agent's own from /proc, the tools' as this process's waited-for
// children), and on the last line `ratio: X` (agent time / curl+fsync time; 1.0 = as fast as curl).
// The agent runs under tsx here (the installed agent runs the built JS): tsx compiles each
// module once at start, before the first timed run.
import http from 'node:http';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { exec, startProcess } from '../../shared/exec.js';
import { AgentClient } from '../../controller/agent-client/client.js';
import * as S from '../../shared/protocol/storage.js';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const sizeMb = Number(process.argv[2] ?? 512);
const runs = Number(process.argv[3] ?? 5);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const TICK = 100; // USER_HZ
interface Sample {
  ms: number;
  /** CPU seconds */
  cpu: number;
}
/** CPU seconds of a process (own + waited-for children), from /proc/<pid>/stat */
function cpuOf(pid: number | 'self', children = true): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const own = Number(f[11]) + Number(f[12]);
  const kids = Number(f[13]) + Number(f[14]);
  return (pid === 'self' ? kids : children ? own + kids : own) / TICK;
}

async function main(): Promise<void> {
  const dir = mkdtempSync('/tmp/tstack-bench-dl-');
  let agentProc: Awaited<ReturnType<typeof startProcess>> | undefined;
  let server: http.Server | undefined;
  try {
    const img = join(dir, 'image.qcow2');
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', img, `${sizeMb}M`]);
    await exec('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x6b 0 ${sizeMb}M`, img], { timeoutMs: 600_000 });
    const size = statSync(img).size;
    server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
      createReadStream(img, { highWaterMark: 1 << 20 }).pipe(res);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/image.qcow2`;

    const port = 20000 + Math.floor(Math.random() * 20000);
    const data = join(dir, 'agent');
    agentProc = await startProcess(process.execPath, ['--import', 'tsx', join(REPO, 'storageagent/main.ts'), '--listen', `127.0.0.1:${port}`, '--data-dir', data, '--token-file', join(data, 'token'), '--log-level', 'warn'], {
      cwd: REPO,
      logFile: join(dir, 'agent.log'),
    });
    const ep = { url: `http://127.0.0.1:${port}`, token: '' };
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${ep.url}/health`)).ok) break;
      } catch {
        /* starting */
      }
      if (i > 300) throw new Error('agent did not start');
      await new Promise((r) => setTimeout(r, 200));
    }
    ep.token = readFileSync(join(data, 'token'), 'utf8').trim();
    const client = new AgentClient();
    const store: S.ImageStoreSpec = { type: 'dir', uuid: randomUUID(), path: join(dir, 'store') };
    await client.call(S.ImageStoreInit, ep, { store });

    const agentRun = async (): Promise<Sample> => {
      const imageUuid = randomUUID();
      const c0 = cpuOf(agentProc!.pid);
      const t0 = process.hrtime.bigint();
      await client.call(S.ImageStoreDownload, ep, { store, imageUuid, url });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const cpu = cpuOf(agentProc!.pid) - c0;
      await client.call(S.ImageStoreDelete, ep, { store, imageUuid });
      return { ms, cpu };
    };
    const out = join(dir, 'curl.out');
    /** curl -o, optionally openssl over the file, then fsync it; timed and CPU-counted as one */
    const toolsRun = async (sha256: boolean): Promise<Sample> => {
      const c0 = cpuOf('self');
      const t0 = process.hrtime.bigint();
      await exec('curl', ['-sS', '--fail', '-o', out, url], { timeoutMs: 600_000 });
      if (sha256) await exec('openssl', ['dgst', '-sha256', '-r', out], { timeoutMs: 600_000 });
      await exec('sync', [out]); // fsync this file, as the agent does
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const cpu = cpuOf('self') - c0;
      rmSync(out, { force: true });
      return { ms, cpu };
    };
    const sides = {
      agent: { label: 'agent', run: agentRun, got: [] as Sample[] },
      curl: { label: 'curl+fsync', run: () => toolsRun(false), got: [] as Sample[] },
      openssl: { label: 'curl+sha256+fsync', run: () => toolsRun(true), got: [] as Sample[] },
    };
    const order = [sides.agent, sides.curl, sides.openssl];
    await sides.curl.run(); // warm the server's file in the page cache, for every side alike
    const fmt = (x: Sample): string => `${x.ms.toFixed(0)} ms (${x.cpu.toFixed(2)} s CPU)`;
    for (let i = 0; i < runs; i++) {
      for (let k = 0; k < order.length; k++) {
        const side = order[(i + k) % order.length]!;
        side.got.push(await side.run());
      }
      const load = loadavg()[0]!.toFixed(1);
      process.stdout.write(`run ${i + 1}: ${order.map((x) => `${x.label} ${fmt(x.got[i]!)}`).join(', ')}, load ${load}\n`);
    }
    const mib = size / 2 ** 20;
    const med = (xs: Sample[]): { ms: number; cpu: number } => ({ ms: median(xs.map((x) => x.ms)), cpu: median(xs.map((x) => x.cpu)) });
    const line = (x: { ms: number; cpu: number }): string => `${x.ms.toFixed(0)} ms (${((mib / x.ms) * 1000).toFixed(0)} MiB/s, ${x.cpu.toFixed(2)} s CPU)`;
    const ma = med(sides.agent.got);
    const mc = med(sides.curl.got);
    const mo = med(sides.openssl.got);
    process.stdout.write(`file: ${mib.toFixed(0)} MiB over loopback, ${runs} runs each, load average now ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} CPUs\n`);
    process.stdout.write(`median agent ${line(ma)}; curl+fsync ${line(mc)}\n`);
    process.stdout.write(`for information, curl+sha256+fsync (the agent's job with standard tools): ${line(mo)}, agent ratio to it ${(ma.ms / mo.ms).toFixed(2)}\n`);
    process.stdout.write(`ratio: ${(ma.ms / mc.ms).toFixed(2)}\n`);
  } finally {
    await agentProc?.stop(5_000);
    server?.closeAllConnections();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`image-download bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
