// Benchmark: storageagent image download vs curl, same file, same loopback HTTP server.
//   npx tsx scripts/bench/image-download.ts [sizeMiB=512] [runs=5]
// The agent runs as its own process (like curl), the HTTP server in this one. Runs alternate
// (agent, curl, curl, agent, ...) to spread cache and CPU noise; each agent run is a full
// imagestore/download (stream to disk, fsync, qemu-img check, move into the store), each curl
// run writes the file and fsyncs it too. Prints the medians; the last line is `ratio: X`
// (agent time / curl time; 1.0 = as fast as curl).
import http from 'node:http';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
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

    const agentRun = async (): Promise<number> => {
      const imageUuid = randomUUID();
      const t0 = process.hrtime.bigint();
      await client.call(S.ImageStoreDownload, ep, { store, imageUuid, url });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      await client.call(S.ImageStoreDelete, ep, { store, imageUuid });
      return ms;
    };
    const curlRun = async (): Promise<number> => {
      const out = join(dir, 'curl.out');
      const t0 = process.hrtime.bigint();
      await exec('curl', ['-sS', '--fail', '-o', out, url], { timeoutMs: 600_000 });
      await exec('sync', [out]); // fsync this file, as the agent does
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      rmSync(out, { force: true });
      return ms;
    };
    await curlRun(); // warm the page cache for both
    const a: number[] = [];
    const c: number[] = [];
    for (let i = 0; i < runs; i++) {
      if (i % 2 === 0) {
        a.push(await agentRun());
        c.push(await curlRun());
      } else {
        c.push(await curlRun());
        a.push(await agentRun());
      }
      process.stdout.write(`run ${i + 1}: agent ${a[i]!.toFixed(0)} ms, curl ${c[i]!.toFixed(0)} ms\n`);
    }
    const ma = median(a);
    const mc = median(c);
    const mib = size / 2 ** 20;
    process.stdout.write(`file: ${mib.toFixed(0)} MiB over loopback, ${runs} runs each\n`);
    process.stdout.write(`median agent ${ma.toFixed(0)} ms (${((mib / ma) * 1000).toFixed(0)} MiB/s), curl ${mc.toFixed(0)} ms (${((mib / mc) * 1000).toFixed(0)} MiB/s)\n`);
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
