// The agent client's HTTP transport: pooled keep-alive connections, and what it does when a
// pooled connection turns out to be closed by the agent (sent again once, on a new connection,
// only if the agent can still be reached), timeouts and refused connections as codes.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transport, TransportError } from '../../../controller/agent-client/transport.js';

const listen = (srv: Server, port = 0): Promise<number> => new Promise((r) => srv.listen(port, '127.0.0.1', () => r((srv.address() as AddressInfo).port)));
const close = (srv: Server): Promise<void> => {
  srv.closeAllConnections();
  return new Promise((r) => srv.close(() => r()));
};

describe('controller agent client: HTTP transport', () => {
  let seen: string[];
  const handler = (delayMs = 0) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    let body = '';
    req.on('data', (b: Buffer) => (body += b.toString()));
    req.on('end', () => {
      seen.push(body);
      setTimeout(() => res.end(JSON.stringify({ got: body })), delayMs);
    });
  };
  beforeEach(() => (seen = []));

  it('reuses one connection; a pooled connection the agent closed (restart) is sent again on a new one, once', async () => {
    const t = new Transport();
    let conns = 0;
    const a = createServer(handler());
    a.on('connection', () => conns++);
    const port = await listen(a);
    const url = `http://127.0.0.1:${port}/x`;
    for (const m of ['1', '2']) assert.equal((await t.send(url, { method: 'POST', headers: {}, body: m, timeoutMs: 5_000 })).text, JSON.stringify({ got: m }));
    assert.equal(conns, 1, 'keep-alive');
    // the agent restarts on the same port; the client has not yet seen the old connection close
    await close(a);
    const b = createServer(handler());
    await listen(b, port);
    const r = await t.send(url, { method: 'POST', headers: {}, body: '3', timeoutMs: 5_000 });
    assert.equal(r.status, 200);
    assert.deepEqual(seen, ['1', '2', '3'], 'each body arrived exactly once');
    await close(b);
  });

  it('sends each path as the URL parser has it, plain paths of one origin on one connection', async () => {
    const paths: string[] = [];
    let conns = 0;
    const a = createServer((req, res) => {
      paths.push(String(req.url));
      req.resume();
      req.on('end', () => res.end('{}'));
    });
    a.on('connection', () => conns++);
    const base = `http://127.0.0.1:${await listen(a)}`;
    const t = new Transport();
    const sent = ['/vm/start', '/task/ab%2Fc-1', '/ps/volume/create-root', '/x/../y', '/a/./b', '/q?x=1&y=%20', '/sp ace', '/x/..', '/x/%2e%2E/z', '/a/%2e/b'];
    for (const p of sent) assert.equal((await t.send(base + p, { method: 'GET', headers: {}, timeoutMs: 5_000 })).status, 200);
    assert.deepEqual(paths, sent.map((p) => { const u = new URL(base + p); return u.pathname + u.search; }));
    assert.deepEqual(paths.slice(3), ['/y', '/a/b', '/q?x=1&y=%20', '/sp%20ace', '/', '/z', '/a/b']);
    assert.equal(conns, 1);
    await close(a);
  });

  it('keeps an idle connection for idleMs, then connects again', async () => {
    const a = createServer(handler());
    let conns = 0;
    a.on('connection', () => conns++);
    a.keepAliveTimeout = 10_000;
    const url = `http://127.0.0.1:${await listen(a)}/x`;
    const call = async (t: Transport, body: string): Promise<void> => assert.equal((await t.send(url, { method: 'POST', headers: {}, body, timeoutMs: 5_000 })).status, 200);
    const short = new Transport({ idleMs: 200 });
    await call(short, '1');
    await new Promise((r) => setTimeout(r, 500));
    await call(short, '2');
    assert.equal(conns, 2, 'idle longer than idleMs: a new connection');
    const long = new Transport({ idleMs: 5_000 });
    await call(long, '3');
    await new Promise((r) => setTimeout(r, 500));
    await call(long, '4');
    assert.equal(conns, 3, 'idle shorter than idleMs: the same connection');
    await close(a);
  });

  it('idle connections carry no timer of their own and are swept out of the idle list (Node scans every origin per socket timeout)', async () => {
    const a = createServer(handler());
    a.keepAliveTimeout = 10_000;
    const urls = [`http://127.0.0.1:${await listen(a)}/x`];
    const b = createServer(handler());
    b.keepAliveTimeout = 10_000;
    urls.push(`http://127.0.0.1:${await listen(b)}/x`);
    const t = new Transport({ idleMs: 200 });
    for (const url of urls) assert.equal((await t.send(url, { method: 'POST', headers: {}, body: '1', timeoutMs: 5_000 })).status, 200);
    const pool = (t as unknown as { agents: Record<string, import('node:http').Agent> }).agents['http:']!;
    const idle = Object.values(pool.freeSockets).flat();
    assert.equal(idle.length, 2, 'one idle connection per origin');
    for (const s of idle) assert.ok(!(s as unknown as { timeout?: number }).timeout, 'no socket timeout');
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(Object.keys(pool.freeSockets), [], 'swept');
    assert.ok(idle.every((s) => s!.destroyed), 'and closed');
    await close(a);
    await close(b);
  });

  it('a pooled connection reset while the agent is down: the reset is reported, not the refused retry', async () => {
    const t = new Transport();
    const a = createServer(handler());
    const port = await listen(a);
    const url = `http://127.0.0.1:${port}/x`;
    await t.send(url, { method: 'POST', headers: {}, body: '1', timeoutMs: 5_000 });
    await close(a);
    const e = (await t.send(url, { method: 'POST', headers: {}, body: '2', timeoutMs: 5_000 }).catch((x: unknown) => x)) as TransportError;
    assert.ok(e instanceof TransportError, String(e));
    // "broke after sending" (ask the agent what became of it), never "could not connect" (safe to resend)
    assert.ok(['ECONNRESET', 'EPIPE'].includes(e.code), e.code);
  });

  it('no answer in time → ETIMEOUT; nobody listening → ECONNREFUSED', async () => {
    const t = new Transport();
    const slow = createServer(handler(2_000));
    const port = await listen(slow);
    const e1 = (await t.send(`http://127.0.0.1:${port}/`, { method: 'GET', headers: {}, timeoutMs: 200 }).catch((x: unknown) => x)) as TransportError;
    assert.equal(e1.code, 'ETIMEOUT');
    await close(slow);
    const e2 = (await t.send(`http://127.0.0.1:${port}/`, { method: 'GET', headers: {}, timeoutMs: 2_000 }).catch((x: unknown) => x)) as TransportError;
    assert.equal(e2.code, 'ECONNREFUSED');
  });
});
