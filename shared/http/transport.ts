// HTTP for the agent client and the agents' callbacks: node:http(s) with one keep-alive
// connection pool per client. fetch (undici's WHATWG layer) cost about 2 ms of CPU per call on the test machine against 0.3 ms for
// a plain request; a whole desired-state apply is a few ms, so the transport was most of it.
// Errors carry the socket's code (ECONNREFUSED…) or ECONNECTTIMEOUT / ETIMEOUT, which the
// client sorts into "never connected" (safe to resend) and "broke after sending" (ask the agent).
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { urlToHttpOptions } from 'node:url';

export interface Reply {
  status: number;
  /** The body as text ('' when empty). */
  text: string;
  headers: http.IncomingHttpHeaders;
}

export interface SendOptions {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  /** The body's text, or its parts in order (written one after the other, never joined). */
  body?: string | readonly string[];
  /** Whole exchange, connect to last byte. */
  timeoutMs: number;
  /** Connecting only (default 10 s, as undici's). */
  connectTimeoutMs?: number;
}

/** A transport error: `code` is what the client classifies on. */
export class TransportError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * How long the agents (shared/agent/server.ts) keep an idle connection, and how long the
 * controller's pool keeps one to them: half as long, so it is always the client that closes an
 * idle connection, with time to spare for late idle timers. At 1,000 hosts a host is called
 * every few seconds: a 2 s pool reconnected for nearly every call (issue 19: connect, close and
 * the agent's idle timer were ~7 s of controller CPU in a 10k-VM run). The pings keep one
 * connection per agent busy; a VM create's requests overlap (the flat apply, a ping, the next
 * create on the host) and open more, which a 15 s pool closed before the host's next create:
 * 2,000 creates on 1,000 hosts opened ~1.2 connections per VM. 60 s keeps them between creates.
 */
export const AGENT_KEEP_ALIVE_MS = 120_000;
export const AGENT_POOL_IDLE_MS = 60_000;

export class Transport {
  // idle sockets are dropped well before the server's keep-alive timeout, so a request is never
  // written to a socket the server is closing at that moment, even when a loaded event loop runs
  // the idle timer late (a 4 s pool against a 5 s server failed creates TASK_LOST at load 20 on
  // 2 cores). The default, 2 s, is for servers that keep 5 s (the controller, for the agents'
  // callbacks); the controller's pool to the agents (30 s) keeps AGENT_POOL_IDLE_MS.
  private readonly agents: { 'http:': http.Agent; 'https:': https.Agent };

  /**
   * maxFreeSockets: idle connections kept per origin (default 16; a simulator's callbacks to one
   * controller need more). idleMs: how long one is kept (default 2 s: see above).
   */
  constructor(o: { maxFreeSockets?: number; idleMs?: number } = {}) {
    const free = o.maxFreeSockets ?? 16;
    const idleMs = o.idleMs ?? 2_000;
    this.agents = {
      'http:': idlePool(new http.Agent({ keepAlive: true, maxFreeSockets: free }), idleMs),
      'https:': idlePool(new https.Agent({ keepAlive: true, maxFreeSockets: free }), idleMs),
    };
  }

  /**
   * Parsed origins: a client calls the same few paths of the same hosts again and again. Keyed
   * by origin, not URL: 1,000 hosts' commands and task polls overflowed a per-URL cache, which
   * then parsed most URLs again (issue 19).
   */
  private readonly origins = new Map<string, Target>();

  private target(url: string): { t: Target; path: string } {
    const m = PLAIN.exec(url);
    if (m && !DOT_SEGMENT.test(m[2]!)) {
      let t = this.origins.get(m[1]!);
      if (!t) {
        t = parseTarget(`${m[1]}/`);
        if (this.origins.size >= 4096) this.origins.clear();
        this.origins.set(m[1]!, t);
      }
      return { t, path: m[2]! };
    }
    // anything else (a query, dot segments, escapes to normalize) as the URL parser has it
    const t = parseTarget(url);
    return { t, path: String(t.path) };
  }

  async send(url: string, o: SendOptions): Promise<Reply> {
    const { t: u, path } = this.target(url);
    const pool = this.agents[u.protocol];
    try {
      return await this.once(u, path, o, pool);
    } catch (e) {
      // A pooled connection the agent had just closed (it restarted, or dropped an idle one) is
      // reset as soon as it is written to, before the agent read anything: send again, once, on
      // a new connection. If that one cannot even connect, the first error stands, so a request
      // that might have reached an agent that died is never handed to its successor.
      if (!(e instanceof StaleSocket)) throw e;
      try {
        return await this.once(u, path, o, false);
      } catch (e2) {
        throw (e2 as TransportError).code !== undefined && CONNECT_FAILURES.has((e2 as TransportError).code) ? e.cause : e2;
      }
    }
  }

  private once(u: Target, path: string, o: SendOptions, agent: http.Agent | false): Promise<Reply> {
    const mod = u.protocol === 'https:' ? https : http;
    // the string goes to the socket as is (encoded once, into the write): a Buffer.from copy of a
    // 40 KB desired state first cost a JS-side allocation and a second pass over it per call
    const body = o.body;
    const headers: Record<string, string | number> = { ...o.headers };
    if (typeof body === 'string') headers['content-length'] = Buffer.byteLength(body);
    else if (body !== undefined) {
      let n = 0;
      for (const part of body) n += Buffer.byteLength(part);
      headers['content-length'] = n;
    }
    const sentAt = Date.now();
    return new Promise<Reply>((resolve, reject) => {
      let settled = false;
      let answered = false;
      const finish = (e: Error | undefined, r?: Reply): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(connectTimer);
        if (e) reject(e);
        else resolve(r!);
      };
      const req = mod.request({ ...u, path, method: o.method, headers, agent }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (b: Buffer) => chunks.push(b));
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', (e: NodeJS.ErrnoException) => finish(new TransportError(e.code ?? 'ECONNRESET', e.message)));
        res.on('aborted', () => finish(new TransportError('ECONNRESET', 'the agent closed the connection mid-answer')));
      });
      const timer = setTimeout(() => {
        const e = new TransportError('ETIMEOUT', `timeout: no answer within ${o.timeoutMs} ms`);
        finish(e);
        req.destroy(e);
      }, o.timeoutMs);
      let connectTimer: NodeJS.Timeout | undefined;
      // 102 Processing: the agent has the request (it holds the answer for an inline result)
      req.on('information', () => (answered = true));
      req.on('socket', (s) => {
        if (!s.connecting) return;
        connectTimer = setTimeout(() => {
          const e = new TransportError('ECONNECTTIMEOUT', `connect timeout after ${o.connectTimeoutMs ?? 10_000} ms`);
          finish(e);
          req.destroy(e);
        }, o.connectTimeoutMs ?? 10_000);
        s.once('connect', () => clearTimeout(connectTimer));
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        const err = e instanceof TransportError ? e : new TransportError(e.code ?? 'ECONNRESET', e.message);
        // reset at once on a reused connection, with no answer: the agent had closed it
        const stale = req.reusedSocket && !answered && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && Date.now() - sentAt < STALE_WINDOW_MS;
        finish(stale ? new StaleSocket(err) : err);
      });
      if (typeof body === 'string' || body === undefined) req.end(body);
      else {
        // buffered until the socket is assigned, then flushed in one corked write (writev)
        for (const part of body) if (part.length > 0) req.write(part);
        req.end();
      }
    });
  }
}

/**
 * Idle connections of a pool closed by one sweep every idleMs/4 (so kept idleMs to 1.25·idleMs)
 * instead of the agent's `timeout`: Node's agent handles each socket timeout by looking for the
 * socket in every origin's idle list (O(origins): 3,000 at 1,000 hosts, issue 19). A swept
 * socket leaves its idle list before it is destroyed, so it is never handed to a request.
 */
function idlePool<A extends http.Agent>(agent: A, idleMs: number): A {
  const idle = new Map<Socket, { options: http.ClientRequestArgs; since: number }>();
  const free = agent.freeSockets as Record<string, Socket[] | undefined>;
  // after the agent's own 'free' listener (its constructor's): the socket is in its idle list,
  // or was given to a waiting request (then the sweep finds it in no idle list and lets it be)
  agent.on('free', (socket: Socket, options: http.ClientRequestArgs) => idle.set(socket, { options, since: Date.now() }));
  const reuse = agent.reuseSocket.bind(agent);
  agent.reuseSocket = (socket: Socket, req: http.ClientRequest) => {
    idle.delete(socket);
    reuse(socket, req);
  };
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [s, e] of idle) {
      if (s.destroyed) idle.delete(s);
      else if (now - e.since >= idleMs) {
        idle.delete(s);
        const name = agent.getName(e.options);
        const list = free[name];
        const i = list ? list.indexOf(s) : -1;
        if (i < 0) continue; // in use
        list!.splice(i, 1);
        if (list!.length === 0) delete free[name];
        s.destroy();
      }
    }
  }, Math.max(10, idleMs / 4));
  sweep.unref();
  return agent;
}

/** What http.request needs of a URL, parsed once. */
type Target = http.RequestOptions & { protocol: 'http:' | 'https:' };

/** An origin and a plain path (no query or fragment), which the URL parser would leave as it is but for dot segments. */
const PLAIN = /^(https?:\/\/[^/?#\\]+)(\/[A-Za-z0-9\-._~%/]*)$/;
// the URL parser takes an escaped dot (%2e) as a dot here too
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:\/|$)/i;

function parseTarget(url: string): Target {
  const u = new URL(url);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TransportError('EPROTO', `unsupported URL scheme ${u.protocol}`);
  return { ...urlToHttpOptions(u), protocol: u.protocol };
}

/** How soon a reset must follow the write to count as a stale pooled connection. */
const STALE_WINDOW_MS = 1_000;
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNECTTIMEOUT', 'EADDRNOTAVAIL']);

class StaleSocket extends Error {
  constructor(override readonly cause: TransportError) {
    super(cause.message);
  }
}
