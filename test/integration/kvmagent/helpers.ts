// Shared bits of kvmagent's integration tests: tiny VM specs on the test guest image, qcow2
// overlays, and a test "controller" that collects agent events.
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { exec } from '../../../shared/exec.js';
import type { VmSpecT, NicSpecT } from '../../../shared/protocol/kvm.js';
import type { Cleanup } from '../../harness/cleanup.js';
import { freePort } from '../../harness/ports.js';

export async function overlay(dir: string, base: string, name = 'root.qcow2'): Promise<string> {
  const p = join(dir, name);
  await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, p], { timeoutMs: 30_000 });
  return p;
}

export async function blankQcow2(dir: string, name: string, size = '64M'): Promise<string> {
  const p = join(dir, name);
  await exec('qemu-img', ['create', '-q', '-f', 'qcow2', p, size], { timeoutMs: 30_000 });
  return p;
}

export function tinySpec(o: { root: string; cidata?: string; serialLog?: string; nics?: NicSpecT[]; memMiB?: number; name?: string; uuid?: string }): VmSpecT {
  const uuid = o.uuid ?? randomUUID();
  const spec: VmSpecT = {
    uuid,
    name: o.name ?? `vm-${uuid.slice(0, 8)}`,
    cpuNum: 1,
    memorySize: (o.memMiB ?? 160) * 1024 * 1024,
    cpuMode: 'default',
    virtType: 'qemu',
    rootVolume: { uuid: randomUUID(), source: { type: 'file', path: o.root, format: 'qcow2' }, bus: 'virtio', cache: 'none', serial: 'root', deviceIndex: 0 },
    dataVolumes: [],
    cdroms: [],
    nics: o.nics ?? [],
    bootOrder: ['hd'],
    console: { type: 'vnc', listen: '127.0.0.1', password: 'pw123456' },
  };
  if (o.cidata) spec.configDrive = o.cidata;
  if (o.serialLog) spec.serialLogPath = o.serialLog;
  return spec;
}

export interface AgentEventRecord {
  type: string;
  hostUuid?: string;
  time: string;
  data: Record<string, unknown>;
  receivedAt: number;
}

/** A minimal controller endpoint: POST /v1/agent-events → remembered. */
export async function eventSink(cleanup: Cleanup): Promise<{ url: string; events: AgentEventRecord[]; waitFor: (pred: (e: AgentEventRecord) => boolean, ms: number) => Promise<AgentEventRecord> }> {
  const events: AgentEventRecord[] = [];
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/agent-events') {
        try {
          const parsed = JSON.parse(body) as { events: Omit<AgentEventRecord, 'receivedAt'>[] };
          for (const e of parsed.events) events.push({ ...e, receivedAt: Date.now() });
        } catch {
          /* ignore */
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  cleanup.add(() => new Promise<void>((r) => server.close(() => r())), 'event sink');
  const waitFor = async (pred: (e: AgentEventRecord) => boolean, ms: number): Promise<AgentEventRecord> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = events.find(pred);
      if (e) return e;
      if (Date.now() > deadline) throw new Error(`no matching agent event within ${ms} ms; got ${JSON.stringify(events)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return { url: `http://127.0.0.1:${port}`, events, waitFor };
}
