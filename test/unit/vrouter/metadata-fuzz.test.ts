// The metadata service's HTTP server (what guests reach at 169.254.169.254) under generated
// junk (issue 20): odd methods, huge and percent-encoded paths, traversal, bodies, headers.
// Every answer is a 2xx/4xx within the time budget, a guest only ever reads its own record, and
// the server still serves a real request afterwards. Loopback stands in for the namespace
// (127.0.0.1 and 127.0.0.2 are two guests); listenInNamespace is covered by the vrouter tests.
import { strict as assert } from 'node:assert';
import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { createMetadataHttpServer, metadataAnswer, METADATA_MAX_PATH } from '../../../vrouteragent/metadata/server.js';
import type { MetadataRecordSpec } from '../../../vrouteragent/validate.js';

const A: MetadataRecordSpec = { ip: '127.0.0.1', instanceId: 'vm-a', hostname: 'a.example', userData: '#cloud-config\nsecret: a-only\n' };
const B: MetadataRecordSpec = { ip: '127.0.0.2', instanceId: 'vm-b', hostname: 'b.example', userData: '#cloud-config\nsecret: b-only\n' };
const lookup = (ip: string): MetadataRecordSpec | undefined => [A, B].find((r) => r.ip === ip);

interface Answer {
  status: number;
  body: string;
  ms: number;
}

function send(port: number, from: string, method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, localAddress: from, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), ms: performance.now() - t0 }));
    });
    const deadline = setTimeout(() => req.destroy(new Error(`${method} ${path.slice(0, 100)}: no answer within 5 s`)), 5_000);
    req.on('close', () => clearTimeout(deadline));
    req.on('error', reject);
    if (body) req.end(body);
    else req.end();
  });
}

const segment = fc.oneof(
  fc.constantFrom('latest', '2009-04-04', '1.0', 'openstack', 'meta-data', 'user-data', 'user_data', 'meta_data.json', 'instance-id', 'public-keys', '0', 'openssh-key', '..', '.', '', '%2e%2e', '%2F', '%00', '%ff', 'constructor', '__proto__', 'toString'),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
  fc.integer({ min: 1, max: 3000 }).map((n) => 'x'.repeat(n)),
);
const path = fc.oneof(
  fc.array(segment, { maxLength: 8 }).map((s) => '/' + s.join('/')),
  fc.tuple(fc.array(segment, { maxLength: 4 }), fc.string({ maxLength: 40 })).map(([s, q]) => '/' + s.join('/') + '?' + encodeURIComponent(q)),
  fc.constantFrom('/'.repeat(5000), '/latest/' + 'meta-data/'.repeat(200), '*', '/latest/meta-data/../../../../etc/passwd', `/${'a'.repeat(METADATA_MAX_PATH + 1)}`),
);
const method = fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'PATCH');

describe('metadata service HTTP server: generated junk (issue 20)', function () {
  this.timeout(120_000);
  let srv: Server;
  let port: number;

  before(async () => {
    srv = createMetadataHttpServer(lookup);
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    port = (srv.address() as AddressInfo).port;
  });
  after(async () => {
    srv.closeAllConnections();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });

  it('answers 2xx/4xx in bounded time, only ever from the caller\'s own record', async () => {
    const statuses: Record<number, number> = {};
    await fc.assert(
      fc.asyncProperty(method, path, fc.constantFrom('127.0.0.1', '127.0.0.2', '127.0.0.3'), fc.option(fc.uint8Array({ maxLength: 3000 }), { freq: 3 }), async (m, p, from, body) => {
        const a = await send(port, from, m, p, body && ['POST', 'PUT', 'PATCH'].includes(m) ? Buffer.from(body) : undefined);
        statuses[a.status] = (statuses[a.status] ?? 0) + 1;
        assert.ok(a.status >= 200 && a.status < 500, `${m} ${p.slice(0, 100)} from ${from}: ${a.status}`);
        assert.ok(a.ms < 2_000, `${m} ${p.slice(0, 100)}: ${Math.round(a.ms)} ms`);
        // never another guest's data
        const other = from === '127.0.0.1' ? 'b-only' : 'a-only';
        assert.ok(!a.body.includes(other) && !a.body.includes(from === '127.0.0.1' ? 'vm-b' : 'vm-a'), `${m} ${p} from ${from} read another guest's record`);
        if (from === '127.0.0.3') assert.ok(a.status >= 400, `unknown source ${from} got ${a.status}`);
      }),
      { seed: 20, numRuns: 600 },
    );
    assert.ok((statuses[200] ?? 0) > 0 && (statuses[404] ?? 0) > 0 && (statuses[405] ?? 0) > 0, JSON.stringify(statuses));
    // still serving
    const a = await send(port, '127.0.0.1', 'GET', '/latest/meta-data/instance-id');
    assert.deepEqual([a.status, a.body], [200, 'vm-a']);
    const b = await send(port, '127.0.0.2', 'GET', '/openstack/latest/user_data');
    assert.deepEqual([b.status, b.body], [200, B.userData]);
  });

  it('405 names the allowed methods; a path over the limit is 414; oversized headers are refused by Node', async () => {
    const r = await new Promise<{ status: number; allow: string | undefined }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/latest/meta-data/', agent: false }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, allow: res.headers.allow });
      });
      req.on('error', reject);
      req.end('{"x":1}');
    });
    assert.deepEqual(r, { status: 405, allow: 'GET, HEAD' });
    assert.equal((await send(port, '127.0.0.1', 'GET', '/' + 'a'.repeat(METADATA_MAX_PATH))).status, 414);
    assert.equal((await send(port, '127.0.0.1', 'GET', '/latest', undefined, { 'x-junk': 'y'.repeat(20_000) })).status, 431);
  });

  it('a failing lookup is a 500 for that request, never an exception out of the server', () => {
    const a = metadataAnswer(() => {
      throw new Error('boom');
    }, 'GET', '/latest/meta-data/', '10.0.0.5');
    assert.equal(a.status, 500);
  });
});
