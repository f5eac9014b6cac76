// The metadata service of one service namespace: an HTTP server on 169.254.169.254:80 INSIDE
// the namespace, served by the agent process itself. A short-lived helper (`ip netns exec <ns>
// node -e …`) binds the listening socket in the namespace and hands it to the agent over the
// child-process IPC channel (sockets keep the namespace they were created in), then exits.
// Requests are answered from the record of the requesting source address only: a VM can
// never read another VM's user-data.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { MAX_HEADER_BYTES } from '../../shared/http/limits.js';
import type { Server } from 'node:net';
import { TStackError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { metadataReply, type MetadataReply } from '../render/metadata.js';
import { METADATA_IP } from '../render/dnsmasq.js';
import type { MetadataRecordSpec } from '../validate.js';

// Runs in the namespace: bind, pass the listening handle to the parent, exit.
const HELPER = `
const net = require('net');
const s = net.createServer();
s.on('error', (e) => { process.send({ error: e.message }, () => process.exit(1)); });
s.listen({ host: process.argv[1], port: Number(process.argv[2]), exclusive: true }, () => {
  process.send({ listening: true }, s, () => { s.close(); process.disconnect(); });
});
setTimeout(() => process.exit(2), 15000).unref();
`;

const NETNS_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** What awaitHandle needs of the helper process (a ChildProcess; tests pass an emitter). */
export interface HandleChild {
  on(ev: 'message', fn: (m: { listening?: boolean; error?: string }, handle?: unknown) => void): unknown;
  on(ev: 'error', fn: (e: Error) => void): unknown;
  on(ev: 'close', fn: (code: number | null) => void): unknown;
  kill(sig: NodeJS.Signals): unknown;
}

/**
 * The listening handle the helper sends. The helper exits as soon as the handle is sent, and
 * its exit can be seen before the message carrying the handle: only 'close' (after the IPC
 * channel is drained) means no handle is coming. A handle that arrives after the wait ended
 * (timeout, error) is closed at once — kept, it would hold the address until the agent exits
 * and every later bind in that namespace would fail with EADDRINUSE.
 */
export function awaitHandle(child: HandleChild, what: string, timeoutMs: number, stderr: () => string): Promise<Server> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error, srv?: Server): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        reject(err);
      } else resolve(srv!);
    };
    const timer = setTimeout(() => finish(new TStackError('TIMEOUT', `binding ${what} timed out`)), timeoutMs);
    child.on('message', (m, handle) => {
      if (done) {
        if (handle) (handle as Server).close();
        return;
      }
      if (m.error) finish(new TStackError('NETWORK_ERROR', `cannot listen on ${what}: ${m.error}`));
      else if (m.listening && handle) finish(undefined, handle as Server);
    });
    child.on('error', (e) => finish(new TStackError('NETWORK_ERROR', `cannot start the listener helper for ${what}: ${e.message}`)));
    child.on('close', (code) => finish(new TStackError('NETWORK_ERROR', `listener helper for ${what} exited with ${code} and sent no socket: ${stderr().trim()}`)));
  });
}

/** A listening socket bound inside a network namespace. */
export function listenInNamespace(ns: string, host: string, port: number, timeoutMs = 15_000): Promise<Server> {
  if (!NETNS_RE.test(ns)) return Promise.reject(new TStackError('INVALID_ARGUMENT', `bad netns name ${ns}`));
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', HELPER, host, String(port)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-2000);
  });
  return awaitHandle(child, `${host}:${port} in ${ns}`, timeoutMs, () => stderr);
}

export type RecordLookup = (sourceIp: string) => MetadataRecordSpec | undefined;

/** Longest request path answered (the longest real one is ~40 bytes); longer is 414. */
export const METADATA_MAX_PATH = 1024;
/** Connections at once: a guest network has at most a few hundred VMs. */
export const METADATA_MAX_CONNECTIONS = 512;

const plain = (status: number, body: string): MetadataReply => ({ status, contentType: 'text/plain', body });

/**
 * The answer to one guest request: only GET/HEAD (405 + Allow otherwise), bounded paths (414),
 * only the requester's own record (404 for an unknown source). Never throws: a bug in a
 * renderer is a 500 for that request, not a crash of the agent serving every namespace.
 */
export function metadataAnswer(lookup: RecordLookup, method: string | undefined, url: string | undefined, src: string, log?: Logger): MetadataReply {
  if (method !== 'GET' && method !== 'HEAD') return plain(405, 'method not allowed\n');
  const path = url ?? '/';
  if (path.length > METADATA_MAX_PATH) return plain(414, `path longer than ${METADATA_MAX_PATH} bytes\n`);
  try {
    const rec = lookup(src);
    if (!rec) return plain(404, `no instance with address ${src} on this network\n`);
    return metadataReply(rec, path);
  } catch (e) {
    log?.error({ err: e, src, path: path.slice(0, 200) }, 'metadata request failed');
    return plain(500, 'internal error\n');
  }
}

/**
 * The metadata HTTP server (not yet listening): answers with metadataAnswer for the source
 * address of each connection, under the same limits as the agents' API servers (header size
 * and count, timeouts, connections). Request bodies are never read; Node discards them.
 */
export function createMetadataHttpServer(lookup: RecordLookup, log?: Logger): http.Server {
  const srv = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    const src = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const reply = metadataAnswer(lookup, req.method, req.url, src, log);
    const headers: Record<string, string | number> = { 'content-type': reply.contentType, 'content-length': Buffer.byteLength(reply.body) };
    if (reply.status === 405) headers.allow = 'GET, HEAD';
    res.writeHead(reply.status, headers);
    res.end(req.method === 'HEAD' ? undefined : reply.body);
    log?.debug({ src, path: req.url?.slice(0, 200), status: reply.status }, 'metadata request');
  });
  srv.keepAliveTimeout = 5_000;
  srv.headersTimeout = 10_000;
  srv.requestTimeout = 15_000;
  srv.maxHeadersCount = 100;
  srv.maxConnections = METADATA_MAX_CONNECTIONS;
  return srv;
}

export class MetadataServer {
  private http?: http.Server;

  constructor(
    readonly namespace: string,
    private readonly lookup: RecordLookup,
    private readonly log: Logger,
    readonly port = 80,
  ) {}

  get listening(): boolean {
    return this.http?.listening === true;
  }

  async start(): Promise<void> {
    if (this.listening) return;
    const handle = await listenInNamespace(this.namespace, METADATA_IP, this.port);
    const srv = createMetadataHttpServer(this.lookup, this.log.child({ namespace: this.namespace }));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(handle, () => resolve());
    });
    this.http = srv;
    this.log.info({ namespace: this.namespace }, 'metadata service listening on 169.254.169.254:80');
  }

  async stop(): Promise<void> {
    const srv = this.http;
    this.http = undefined;
    if (!srv) return;
    srv.closeAllConnections?.();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}
