// Image store downloads over HTTP: resume after a dropped connection with progress events,
// checksum mismatch and non-image files refused with nothing left behind, cancel, file://,
// and the authenticated export (Range) the primary storage pulls from.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import * as S from '../../../shared/protocol/storage.js';
import { TStackError } from '../../../shared/errors.js';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { startTestAgent, makeQcow2, fileMd5, uuid, type TestAgent } from './helpers.js';

interface Served {
  url: string;
  requests: Array<{ path: string; range?: string }>;
}

/**
 * Serves files from dir with Range support, at `rate` bytes/s. A path listed in `dropOnce`
 * gets its connection cut after `dropAt` bytes the first time it is fetched.
 */
async function fileServer(dir: string, cleanup: ReturnType<typeof useCleanup>, o: { rate?: number; dropOnce?: Set<string>; dropAt?: number; noRange?: boolean } = {}): Promise<Served> {
  const requests: Served['requests'] = [];
  const dropped = new Set<string>();
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]!);
    const r: { path: string; range?: string } = { path };
    if (req.headers.range) r.range = req.headers.range;
    requests.push(r);
    const file = join(dir, path.replace(/^\/+/, ''));
    if (!existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    const size = statSync(file).size;
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && !o.noRange) {
      start = Number(m[1]);
      res.writeHead(206, { 'content-length': size - start, 'content-range': `bytes ${start}-${size - 1}/${size}`, 'accept-ranges': 'bytes' });
    } else res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
    const drop = o.dropOnce?.has(path) && !dropped.has(path) ? (o.dropAt ?? Math.floor(size / 2)) : undefined;
    if (drop !== undefined) dropped.add(path);
    const fd = openSync(file, 'r');
    let pos = start;
    const chunk = 64 * 1024;
    const tickMs = 50;
    const perTick = o.rate ? Math.max(chunk, Math.floor((o.rate * tickMs) / 1000)) : 8 << 20;
    const pump = (): void => {
      if (res.destroyed) return closeSync(fd);
      let budget = perTick;
      while (budget > 0 && pos < size) {
        if (drop !== undefined && pos >= drop) {
          closeSync(fd);
          res.socket?.destroy(); // the connection dies halfway
          return;
        }
        const b = Buffer.alloc(Math.min(chunk, size - pos, budget));
        readSync(fd, b, 0, b.length, pos);
        pos += b.length;
        budget -= b.length;
        if (!res.write(b)) {
          res.once('drain', () => setTimeout(pump, o.rate ? tickMs : 0));
          return;
        }
      }
      if (pos >= size) {
        closeSync(fd);
        res.end();
        return;
      }
      setTimeout(pump, o.rate ? tickMs : 0);
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanup.add(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))), 'http file server');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

describe('storage: image store downloads (http, file) and export', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let agent: TestAgent;
  let srcDir: string;
  let storeDir: string;
  let store: S.ImageStoreSpec;
  let img: string;
  let imgMd5: string;

  before(async function () {
    agent = await startTestAgent(cleanup);
    srcDir = await tmpDir('dl-src', cleanup);
    storeDir = await tmpDir('dl-store', cleanup);
    store = { type: 'dir', uuid: uuid(), path: storeDir };
    await agent.call(S.ImageStoreInit, { store });
    img = join(srcDir, 'disk.qcow2');
    await makeQcow2(img, 64, 12); // ~12 MiB of data
    imgMd5 = await fileMd5(img);
    writeFileSync(join(srcDir, 'page.html'), '<html><body>404 - the mirror moved</body></html>\n'.repeat(50));
  });

  const leftovers = (): string[] => readdirSync(join(storeDir, 'tmp'));

  it('resumes an HTTP download after the connection drops halfway, with progress events', async function () {
    const srv = await fileServer(srcDir, cleanup, { rate: 8 << 20, dropOnce: new Set(['/disk.qcow2']) });
    const imageUuid = uuid();
    const t0 = agent.events.length;
    const info = await agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/disk.qcow2`, md5: imgMd5 });
    assert.equal(info.format, 'qcow2');
    assert.equal(info.virtualSize, 64 << 20);
    assert.equal(info.md5, imgMd5);
    assert.equal(await fileMd5(info.installPath), imgMd5);
    // the second request continued where the first one stopped
    const reqs = srv.requests.filter((r) => r.path === '/disk.qcow2');
    assert.equal(reqs.length, 2, JSON.stringify(reqs));
    assert.equal(reqs[0]!.range, undefined);
    const from = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range ?? '')?.[1]);
    assert.ok(from > 0 && from < statSync(img).size, `resumed from ${reqs[1]!.range}`);
    // progress events: increasing bytes, a total, no gap longer than 2 s, a final 100 %
    await new Promise((r) => setTimeout(r, 500));
    const evs = agent.events.slice(t0).filter((e) => e.type === S.DOWNLOAD_PROGRESS_EVENT && e.data.imageUuid === imageUuid);
    assert.ok(evs.length >= 3, `only ${evs.length} progress events`);
    const dl = evs.filter((e) => e.data.stage === 'downloading');
    assert.ok(dl.some((e) => typeof e.data.rate === 'number' && (e.data.rate as number) > 0), 'a non-zero rate');
    assert.ok(dl.some((e) => e.data.total === statSync(img).size));
    assert.ok(evs.some((e) => e.data.stage === 'retrying'), 'a retrying event after the drop');
    const times = evs.map((e) => Date.parse(e.time));
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! <= 2000, `gap of ${times[i]! - times[i - 1]!} ms between progress events`);
    const last = evs[evs.length - 1]!;
    assert.equal(last.data.stage, 'done');
    assert.equal(last.data.percent, 100);
    assert.deepEqual(leftovers(), []);
  });

  it('starts over when the server ignores the range request', async function () {
    const srv = await fileServer(srcDir, cleanup, { noRange: true, dropOnce: new Set(['/disk.qcow2']) });
    const info = await agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `${srv.url}/disk.qcow2`, md5: imgMd5 });
    assert.equal(info.md5, imgMd5);
    assert.equal(await fileMd5(info.installPath), imgMd5);
    assert.equal(srv.requests.length, 2);
    assert.deepEqual(leftovers(), []);
  });

  it('refuses a checksum mismatch and keeps no file', async function () {
    const srv = await fileServer(srcDir, cleanup);
    const imageUuid = uuid();
    await assert.rejects(
      agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/disk.qcow2`, sha256: 'ab'.repeat(32) }),
      (e: TStackError) => e.code === 'CHECKSUM_MISMATCH' && /sha256/.test(e.message),
    );
    assert.equal(existsSync(join(storeDir, 'images', imageUuid)), false);
    assert.deepEqual(leftovers(), []);
    await assert.rejects(agent.call(S.ImageStoreImageInfo, { store, imageUuid }), (e: TStackError) => e.code === 'IMAGE_NOT_FOUND');
  });

  it('refuses a file that is not an image (an HTML page) with a clear error and no file', async function () {
    const srv = await fileServer(srcDir, cleanup);
    const imageUuid = uuid();
    await assert.rejects(agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/page.html` }), (e: TStackError) => e.code === 'STORAGE_ERROR' && /text/.test(e.message) && /not a usable image/.test(e.message));
    await assert.rejects(agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/page.html`, format: 'raw' }), (e: TStackError) => /multiple of 512|text/.test(e.message));
    // a truncated/corrupt qcow2
    const bad = join(srcDir, 'bad.qcow2');
    const b = Buffer.alloc(1 << 20);
    const fd = openSync(img, 'r');
    readSync(fd, b, 0, b.length, 0);
    closeSync(fd);
    b.fill(0xff, 0x30, 0x38); // wreck the L1 table offset
    writeFileSync(bad, b);
    await assert.rejects(agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/bad.qcow2` }), (e: TStackError) => e.code === 'STORAGE_ERROR' && /not a usable image/.test(e.message));
    await assert.rejects(agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/missing.qcow2` }), (e: TStackError) => e.code === 'DOWNLOAD_FAILED' && /404/.test(e.message));
    assert.equal(existsSync(join(storeDir, 'images', imageUuid)), false);
    assert.deepEqual(leftovers(), []);
  });

  it('cancels a running download by image uuid and by task id', async function () {
    const srv = await fileServer(srcDir, cleanup, { rate: 1 << 20 });
    const imageUuid = uuid();
    const p = agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/disk.qcow2` });
    const deadline = Date.now() + 10_000;
    let n = 0;
    while (n === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      n = (await agent.call(S.ImageStoreCancel, { imageUuid })).cancelled;
    }
    assert.equal(n, 1);
    await assert.rejects(p, (e: TStackError) => e.code === 'CANCELLED');
    assert.equal(existsSync(join(storeDir, 'images', imageUuid)), false);
    assert.deepEqual(leftovers(), []);
    // and by task id
    const taskId = `cancel-${uuid()}`;
    const p2 = agent.call(S.ImageStoreDownload, { store, imageUuid, url: `${srv.url}/disk.qcow2` }, { taskId });
    let m = 0;
    while (m === 0 && Date.now() < deadline + 10_000) {
      await new Promise((r) => setTimeout(r, 300));
      m = (await agent.call(S.ImageStoreCancel, { taskId })).cancelled;
    }
    assert.equal(m, 1);
    await assert.rejects(p2, (e: TStackError) => e.code === 'CANCELLED');
    assert.deepEqual(leftovers(), []);
  });

  it('downloads file:/// and serves it back over the authenticated export with Range', async function () {
    const imageUuid = uuid();
    const info = await agent.call(S.ImageStoreDownload, { store, imageUuid, url: `file://${img}` });
    assert.equal(info.format, 'qcow2');
    const base = `${agent.endpoint.url}/export/images/${imageUuid}`;
    assert.equal((await fetch(base)).status, 401);
    assert.equal((await fetch(base, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const auth = { authorization: `Bearer ${agent.endpoint.token}` };
    const whole = Buffer.from(await (await fetch(base, { headers: auth })).arrayBuffer());
    assert.equal(whole.length, statSync(img).size);
    const part = await fetch(base, { headers: { ...auth, range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 100-199/${whole.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), whole.subarray(100, 200));
    assert.equal((await fetch(base, { headers: { ...auth, range: `bytes=${whole.length}-` } })).status, 416);
    const meta = (await (await fetch(`${base}/info`, { headers: auth })).json()) as S.ImageInfo;
    assert.equal(meta.imageUuid, imageUuid);
    assert.equal((await fetch(`${agent.endpoint.url}/export/images/${uuid()}`, { headers: auth })).status, 404);
    // idempotent: downloading the same image again returns what is there
    assert.deepEqual(await agent.call(S.ImageStoreDownload, { store, imageUuid, url: `file://${img}` }), info);
    // capacity counts it; delete removes it
    const cap = await agent.call(S.ImageStoreCapacity, { store });
    assert.ok(cap.usedByTstack >= statSync(img).blocks * 512 && cap.totalCapacity > cap.availableCapacity);
    assert.deepEqual(await agent.call(S.ImageStoreDelete, { store, imageUuid }), { deleted: true });
    assert.equal(existsSync(join(storeDir, 'images', imageUuid)), false);
    assert.deepEqual(await agent.call(S.ImageStoreDelete, { store, imageUuid }), { deleted: false });
  });

  it('plain HTTP read off the socket: a redirect followed, a body ended by the connection, a chunked body (left to node\'s client), a head in pieces; a huge head, a short body and a bad Content-Length fail cleanly', async function () {
    const bytes = readFileSync(img);
    const seen: string[] = [];
    // a raw server, to answer exactly as written (HTTP/1.0 close-delimited, chunked, a head split over writes)
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined); // the agent hangs up on a chunked answer at its head
      let head = '';
      sock.on('data', (d) => {
        head += d.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const path = head.split(' ')[1]!;
        seen.push(path);
        if (path === '/moved') sock.end('HTTP/1.1 302 Found\r\nLocation: /close\r\nContent-Length: 0\r\n\r\n');
        else if (path === '/close') {
          sock.write('HTTP/1.0 200 OK\r\nServer: raw\r\n\r\n');
          sock.end(bytes);
        } else if (path === '/chunked') {
          sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n');
          for (let o = 0; o < bytes.length; o += 1 << 20) {
            const c = bytes.subarray(o, o + (1 << 20));
            sock.write(`${c.length.toString(16)}\r\n`);
            sock.write(c);
            sock.write('\r\n');
          }
          sock.end('0\r\n\r\n');
        } else if (path === '/split') {
          sock.write('HTTP/1.1 200 OK\r\nContent-Le');
          setTimeout(() => {
            sock.write(`ngth: ${bytes.length}\r\n\r\n`);
            sock.write(bytes.subarray(0, 1000)); // body bytes right behind the head
            setTimeout(() => sock.end(bytes.subarray(1000)), 50);
          }, 50);
        } else if (path === '/huge') {
          sock.end(`HTTP/1.1 200 OK\r\n${'X-Pad: 0123456789abcdef\r\n'.repeat(3000)}\r\n`);
        } else if (path === '/short') {
          sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${bytes.length + 1000}\r\n\r\n`);
          sock.end(bytes);
        } else if (path === '/badlen') sock.end('HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\nabc');
        else sock.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanup.add(() => new Promise<void>((r) => server.close(() => r())), 'raw http server');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (const path of ['/moved', '/chunked', '/split']) {
      const info = await agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `${base}${path}`, md5: imgMd5 });
      assert.equal(info.md5, imgMd5, path);
      assert.equal(await fileMd5(info.installPath), imgMd5, path);
      await agent.call(S.ImageStoreDelete, { store, imageUuid: info.imageUuid });
    }
    // the chunked body was asked for twice: the raw reader leaves it to node's client
    assert.deepEqual(seen, ['/moved', '/close', '/chunked', '/chunked', '/split']);
    // hostile answers: a failed download with the reason, nothing kept, the agent still serving
    for (const [path, why] of [['/huge', /response head larger than/], ['/short', /connection ended at byte/], ['/badlen', /bad Content-Length/]] as const) {
      await assert.rejects(agent.call(S.ImageStoreDownload, { store, imageUuid: uuid(), url: `${base}${path}`, retries: 0 }), (e: TStackError) => e.code === 'DOWNLOAD_FAILED' && why.test(e.message), path);
    }
    assert.deepEqual(leftovers(), []);
  });

  it('rejects path tricks in uuids and roots', async function () {
    await assert.rejects(agent.call(S.ImageStoreInit, { store: { type: 'dir', uuid: uuid(), path: '/tmp/../etc' } }), (e: TStackError) => e.code === 'INVALID_ARGUMENT');
    const r = await fetch(`${agent.endpoint.url}/export/images/..%2F..%2Fetc%2Fpasswd`, { headers: { authorization: `Bearer ${agent.endpoint.token}` } });
    assert.equal(r.status, 400);
  });
});
