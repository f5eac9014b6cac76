// AgentClient.setCallbackUrl: the controller learns its callback URL only once it listens;
// async commands carry X-Callback-Url from then on (and run inline before / after unsetting).
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentClient } from '../../../controller/agent-client/client.js';
import { Echo } from '../../../shared/protocol/common.js';

describe('controller agent client: setCallbackUrl', () => {
  let server: Server;
  let url: string;
  const seen: IncomingHttpHeaders[] = [];

  before(async () => {
    // answers every command inline (200), as an agent does without a callback URL; records headers
    server = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ message: 'hi', runs: 1, startedAt: 1, finishedAt: 2 }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('sends X-Callback-Url on async commands only after it is set, and stops when unset', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    const host = { url, token: 't' };
    assert.equal(client.callbackUrl, undefined);
    await client.call(Echo, host, { message: 'a' });
    assert.equal(seen.at(-1)!['x-callback-url'], undefined);

    client.setCallbackUrl('http://127.0.0.1:8080/v1/agent-callbacks');
    assert.equal(client.callbackUrl, 'http://127.0.0.1:8080/v1/agent-callbacks');
    // the fake agent answers 200 inline even with a callback URL: the client takes that result
    await client.call(Echo, host, { message: 'b' });
    assert.equal(seen.at(-1)!['x-callback-url'], 'http://127.0.0.1:8080/v1/agent-callbacks');

    client.setCallbackUrl(undefined);
    await client.call(Echo, host, { message: 'c' });
    assert.equal(seen.at(-1)!['x-callback-url'], undefined);
  });

  it('refuses a URL that is not http(s), and does not share the options object it was given', () => {
    const opts = { callbackUrl: 'http://a:1/cb' };
    const client = new AgentClient(opts);
    assert.throws(() => client.setCallbackUrl('ftp://x/cb'), /http/);
    assert.throws(() => client.setCallbackUrl('not a url'));
    client.setCallbackUrl('https://b:2/cb');
    assert.equal(opts.callbackUrl, 'http://a:1/cb');
    assert.equal(client.callbackUrl, 'https://b:2/cb');
  });
});

describe('controller agent client: X-Agent-Info (the host tracker skips pings of agents that answered)', () => {
  let server: Server;
  let url: string;
  let info: string | undefined;

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (info !== undefined) res.setHeader('x-agent-info', info);
        res.statusCode = req.url === '/echo' ? 200 : 404;
        res.end(JSON.stringify(req.url === '/echo' ? { message: 'hi', runs: 1, startedAt: 1, finishedAt: 2 } : { code: 'NOT_FOUND', message: 'no' }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('keeps the last answer per agent URL with its time; a changed header is read again; no header, nothing', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    const host = { url, token: 't' };
    info = undefined;
    await client.call(Echo, host, { message: 'a' });
    assert.equal(client.answeredSince(url, 0), undefined, 'an answer without the header proves nothing');

    info = JSON.stringify({ version: '1.0', startedAt: 's1', bootId: 'b1', hostUuid: 'h1' });
    const t0 = Date.now() - 1;
    await client.call(Echo, host, { message: 'b' });
    assert.deepEqual(client.answeredSince(url, t0), { version: '1.0', startedAt: 's1', bootId: 'b1', hostUuid: 'h1' });
    assert.equal(client.answeredSince(url, Date.now() + 1), undefined, 'not after a later time');
    assert.equal(client.answeredSince('http://127.0.0.1:1', 0), undefined, 'another agent');

    // restarted: another start time, not bound (no hostUuid); an error answer counts too
    info = JSON.stringify({ version: '1.0', startedAt: 's2', bootId: 'b1' });
    await assert.rejects(client.call({ ...Echo, path: '/other' }, host, { message: 'c' }));
    assert.deepEqual(client.answeredSince(url, t0), { version: '1.0', startedAt: 's2', bootId: 'b1' });

    info = 'not json';
    await client.call(Echo, host, { message: 'd' });
    assert.equal(client.answeredSince(url, t0), undefined, 'a garbled header proves nothing');
  });
});

describe('controller agent client: a request given as JSON text (CallOptions.json)', () => {
  let server: Server;
  let url: string;
  const bodies: string[] = [];

  before(async () => {
    server = createServer((req, res) => {
      let b = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (b += c));
      req.on('end', () => {
        bodies.push(b);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ message: 'hi', runs: 1, startedAt: 1, finishedAt: 2 }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('sends the text as is, not the request object', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    await client.call(Echo, { url, token: 't' }, { message: 'object' }, { json: '{"message":"text"}' });
    assert.equal(bodies.at(-1), '{"message":"text"}');
  });

  it('sends text given in parts as their concatenation (content-length in bytes, non-ASCII too), twice on one connection', async () => {
    // unchecked (as the controller's: the agents check), so a body far over the schema's limits goes
    const client = new AgentClient({ requestTimeoutMs: 5_000, checkRequests: false });
    const big = 'x'.repeat(300_000);
    for (let i = 0; i < 2; i++) {
      await client.call(Echo, { url, token: 't' }, { message: 'object' }, { json: ['{"message":"', big, '', 'é', '"}'] });
      assert.equal(bodies.at(-1), `{"message":"${big}é"}`);
    }
    const checked = new AgentClient({ requestTimeoutMs: 5_000 });
    await assert.rejects(checked.call(Echo, { url, token: 't' }, { message: 'fine' }, { json: ['{"message":', '7}'] }), /message/);
    await checked.call(Echo, { url, token: 't' }, { message: 'object' }, { json: ['{"message":', '"ok"}'] });
    assert.equal(bodies.at(-1), '{"message":"ok"}');
  });

  it('checks the text against the schema when requests are checked, not the object', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    const n = bodies.length;
    await assert.rejects(client.call(Echo, { url, token: 't' }, { message: 'fine' }, { json: '{"message":7}' }), /message/);
    assert.equal(bodies.length, n, 'nothing sent');
  });
});

describe('controller agent client: an endpoint held a while (refresh before the request ran)', () => {
  let server: Server;
  let url: string;
  let token = 'new';
  const seen: string[] = [];

  before(async () => {
    // answers only the current token, as an agent's auth does (401 before any task is made)
    server = createServer((req, res) => {
      seen.push(String(req.headers.authorization));
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        const ok = req.headers.authorization === `Bearer ${token}`;
        res.statusCode = ok ? 200 : 401;
        res.end(JSON.stringify(ok ? { message: 'hi', runs: 1, startedAt: 1, finishedAt: 2 } : { code: 'UNAUTHORIZED', message: 'missing or wrong bearer token' }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    seen.length = 0;
    token = 'new';
  });

  it('a token rotated since: refused, re-read once, sent again with the new one', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    let refreshes = 0;
    const r = await client.call(Echo, { url, token: 'old', refresh: async () => (refreshes++, { url, token: 'new' }) }, { message: 'a' });
    assert.equal(r.message, 'hi');
    assert.deepEqual(seen, ['Bearer old', 'Bearer new']);
    assert.equal(refreshes, 1);
  });

  it('the record says the same (or is refused again): the 401 stands, after one re-read', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    let refreshes = 0;
    await assert.rejects(client.call(Echo, { url, token: 'old', refresh: async () => (refreshes++, { url, token: 'old' }) }, { message: 'a' }), (e: Error & { code?: string }) => e.code === 'UNAUTHORIZED');
    assert.deepEqual(seen, ['Bearer old']);
    token = 'newest';
    await assert.rejects(client.call(Echo, { url, token: 'old', refresh: async () => (refreshes++, { url, token: 'new' }) }, { message: 'a' }), (e: Error & { code?: string }) => e.code === 'UNAUTHORIZED');
    assert.deepEqual(seen, ['Bearer old', 'Bearer old', 'Bearer new'], 'sent again once, not more');
    assert.equal(refreshes, 2);
  });

  it('an agent never reached at the old URL: sent to the one the record names now', async () => {
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    // a port nothing listens on (taken and closed)
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const goneUrl = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
    await new Promise<void>((r) => gone.close(() => r()));
    const r = await client.call(Echo, { url: goneUrl, token: 'new', refresh: async () => ({ url, token: 'new' }) }, { message: 'a' });
    assert.equal(r.message, 'hi');
    assert.deepEqual(seen, ['Bearer new']);
  });
});

describe('controller agent client: a connection refused', () => {
  /** An agent that starts listening on `port` 100 ms from now (it is restarting). */
  const restarting = (port: number): Promise<Server> =>
    new Promise((resolve) => {
      setTimeout(() => {
        const s = createServer((req, res) => {
          req.resume();
          req.on('end', () => {
            if (req.method !== 'POST') return void res.writeHead(404).end(); // GET /task/<id>: a task it never had
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ message: 'back', runs: 1, startedAt: 1, finishedAt: 2 }));
          });
        });
        s.listen(port, '127.0.0.1', () => resolve(s));
      }, 100);
    });
  const close = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

  it('is tried again (the agent may be restarting), unless the call is sent once (the tracker counts its misses)', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await close(probe);
    const host = { url: `http://127.0.0.1:${port}`, token: 't' };
    const client = new AgentClient({ requestTimeoutMs: 5_000 });
    let back = restarting(port);
    await assert.rejects(client.call(Echo, host, { message: 'x' }, { once: true }), (e: Error & { code?: string }) => e.code === 'AGENT_UNREACHABLE');
    await close(await back);
    back = restarting(port);
    assert.equal((await client.call(Echo, host, { message: 'x' })).message, 'back');
    await close(await back);
  });
});
