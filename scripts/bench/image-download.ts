// Benchmark: storageagent image download vs curl, same file, same loopback HTTP server, same
// destination filesystem.
//   npx tsx scripts/bench/image-download.ts [sizeMiB=512] [runs=5]
// The agent runs as its own process (like curl), the HTTP server in this one. Runs alternate
// (agent, curl, curl, agent, ...) to spread cache and CPU noise. An agent run is timed from the
// imagestore/download request to its answer: the stream to disk hashed on the way (sha256, the
// image's integrity record), the qcow2 check, one fsync, the move into the store. The baseline
// does the same job with standard tools: `curl -o` the file, `openssl dgst -sha256` it (a second
// pass, from the page cache: curl cannot hash while it writes) and fsync it (`sync FILE`).
// Prints the medians, the CPU seconds each side used (the agent's own from /proc, the tools'
// as this process's waited-for children), the ratio against plain curl + fsync, and on the last
// line `ratio: X` (agent time / baseline time; 1.0 = as fast as the tools).
// The agent runs under tsx here (the installed agent runs the built JS): tsx compiles each
// module once at start, before the first timed run.
import http from 'node:http';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
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

    const cpu = { agent: [] as number[], tools: [] as number[], curl: [] as number[] };
    const agentRun = async (): Promise<number> => {
      const imageUuid = randomUUID();
      const c0 = cpuOf(agentProc!.pid);
      const t0 = process.hrtime.bigint();
      await client.call(S.ImageStoreDownload, ep, { store, imageUuid, url });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      cpu.agent.push(cpuOf(agentProc!.pid) - c0);
      await client.call(S.ImageStoreDelete, ep, { store, imageUuid });
      return ms;
    };
    const out = join(dir, 'curl.out');
    const curlRun = async (): Promise<{ ms: number; curlMs: number }> => {
      const c0 = cpuOf('self');
      const t0 = process.hrtime.bigint();
      await exec('curl', ['-sS', '--fail', '-o', out, url], { timeoutMs: 600_000 });
      const curlNs = process.hrtime.bigint() - t0;
      const c1 = cpuOf('self');
      await exec('openssl', ['dgst', '-sha256', '-r', out], { timeoutMs: 600_000 }); // the checksum the agent makes
      const t2 = process.hrtime.bigint();
      const c2 = cpuOf('self');
      await exec('sync', [out]); // fsync this file, as the agent does
      const t3 = process.hrtime.bigint();
      const ms = Number(t3 - t0) / 1e6;
      cpu.tools.push(cpuOf('self') - c0);
      cpu.curl.push(c1 - c0 + (cpuOf('self') - c2));
      rmSync(out, { force: true });
      return { ms, curlMs: Number(curlNs + (t3 - t2)) / 1e6 };
    };
    await curlRun(); // warm the page cache for both
    const a: number[] = [];
    const c: number[] = [];
    const plain: number[] = [];
    const tool = async (): Promise<void> => {
      const r = await curlRun();
      c.push(r.ms);
      plain.push(r.curlMs);
    };
    for (let i = 0; i < runs; i++) {
      if (i % 2 === 0) {
        a.push(await agentRun());
        await tool();
      } else {
        await tool();
        a.push(await agentRun());
      }
      const load = loadavg()[0]!.toFixed(1);
      process.stdout.write(`run ${i + 1}: agent ${a[i]!.toFixed(0)} ms (${cpu.agent[i]!.toFixed(2)} s CPU), curl+sha256+fsync ${c[i]!.toFixed(0)} ms (${cpu.tools[i]!.toFixed(2)} s CPU; curl+fsync alone ${plain[i]!.toFixed(0)} ms), load ${load}\n`);
    }
    const ma = median(a);
    const mc = median(c);
    const mp = median(plain);
    const mib = size / 2 ** 20;
    const rate = (ms: number): string => `${((mib / ms) * 1000).toFixed(0)} MiB/s`;
    process.stdout.write(`file: ${mib.toFixed(0)} MiB over loopback, ${runs} runs each, load average now ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${(await import('node:os')).cpus().length} CPUs\n`);
    process.stdout.write(`median agent ${ma.toFixed(0)} ms (${rate(ma)}, ${median(cpu.agent).toFixed(2)} s CPU); curl+sha256+fsync ${mc.toFixed(0)} ms (${rate(mc)}, ${median(cpu.tools).toFixed(2)} s CPU)\n`);
    process.stdout.write(`against curl+fsync without a checksum: ${mp.toFixed(0)} ms (${rate(mp)}, ${median(cpu.curl).toFixed(2)} s CPU), ratio ${(ma / mp).toFixed(2)}\n`);
    process.stdout.write(`ratio: ${(ma / mc).toFixed(2)}\n`);
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
