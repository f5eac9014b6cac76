// In-process storage agent for integration tests: a real AgentServer with every storage
// command registered, a Koa endpoint standing in for the controller's /v1/agent-events (events
// are captured), and an AgentClient to call it.
import Koa from 'koa';
import { randomBytes, randomUUID, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentServer } from '../../../shared/agent/server.js';
import type { AgentEvent } from '../../../shared/agent/events.js';
import { AgentClient, type AgentEndpoint } from '../../../controller/agent-client/client.js';
import type { CommandDef, RequestOf, ResponseOf } from '../../../shared/protocol/command.js';
import { exec } from '../../../shared/exec.js';
import { registerStorageAgent } from '../../../storageagent/main.js';
import type { Cleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { jsonBody } from '../../../shared/http/body.js';

export interface TestAgent {
  server: AgentServer;
  endpoint: AgentEndpoint;
  dataDir: string;
  events: AgentEvent[];
  call<C extends CommandDef>(cmd: C, req: RequestOf<C>, o?: { taskId?: string }): Promise<ResponseOf<C>>;
}

export async function listen(app: Koa, cleanup: Cleanup): Promise<{ server: Server; url: string }> {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  cleanup.add(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))), 'test http server');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

export async function startTestAgent(cleanup: Cleanup, label = 'sa'): Promise<TestAgent> {
  const dataDir = await tmpDir(`${label}-data`, cleanup);
  const token = randomBytes(24).toString('hex');
  const events: AgentEvent[] = [];
  // stand-in for the controller's event endpoint
  const ctl = new Koa();
  ctl.use(jsonBody({ limit: 16 * 1024 * 1024 }));
  ctl.use((ctx) => {
    if (ctx.method === 'POST' && ctx.path === '/v1/agent-events') {
      const b = (ctx.request as { body?: { events?: AgentEvent[] } }).body;
      events.push(...(b?.events ?? []));
      ctx.status = 204;
    } else ctx.status = 404;
  });
  const c = await listen(ctl, cleanup);
  const server = new AgentServer({ agent: 'tstack-storageagent', version: 'test', token });
  registerStorageAgent(server, { dataDir });
  server.events.configure(c.url, token);
  const addr = await server.listen('127.0.0.1', 0);
  cleanup.add(() => server.close(), `storage agent ${label}`);
  const endpoint = { url: `http://127.0.0.1:${addr.port}`, token };
  const client = new AgentClient();
  return {
    server,
    endpoint,
    dataDir,
    events,
    call: (cmd, req, o) => client.call(cmd, endpoint, req, o ?? {}),
  };
}

export const uuid = (): string => randomUUID();

/** A qcow2 image of `mb` MiB virtual size with `dataMb` MiB of a pattern written into it. */
export async function makeQcow2(path: string, mb: number, dataMb = 1, pattern = 0x5a): Promise<void> {
  await exec('qemu-img', ['create', '-q', '-f', 'qcow2', path, `${mb}M`]);
  if (dataMb > 0) await exec('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} 0 ${dataMb}M`, path]);
}

/** Write a pattern into an image through QEMU's block layer (file, nfs://, rbd: targets). */
export async function qemuWrite(target: string, format: string, offsetMb: number, mb: number, pattern: number): Promise<void> {
  await exec('qemu-io', ['-f', format, '-c', `write -P ${pattern} ${offsetMb}M ${mb}M`, target], { timeoutMs: 120_000 });
}

/** Check a pattern through QEMU (throws if the data differs). */
export async function qemuRead(target: string, format: string, offsetMb: number, mb: number, pattern: number): Promise<boolean> {
  const r = await exec('qemu-io', ['-f', format, '-c', `read -P ${pattern} ${offsetMb}M ${mb}M`, target], { timeoutMs: 120_000, okCodes: [0, 1] });
  return r.code === 0 && !/Pattern verification failed/.test(r.stdout + r.stderr);
}

export async function fileMd5(path: string): Promise<string> {
  const h = createHash('md5');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}
