// The console WebSocket proxy against a real VNC server (QEMU, paused, password-protected) and a
// real controller: tokens are single-use, expire, belong to one account and a running VM; the
// proxy types the VM's console password itself; every way a session can end closes it cleanly.
// (test/e2e/webui.test.ts does the same through a booted guest and a browser.)
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type TestController, type ApiClient } from '../../harness/controller.js';
import { waitForPort } from '../../harness/ports.js';
import { runId } from '../../harness/tmp.js';
import { issueConsoleToken } from '../../../controller/console/tokens.js';

const PASSWORD = 'vncpass1';

function openConsole(baseUrl: string, token: string, session: string | undefined): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/console/${token}`, session ? ['binary', `tstack-session.${session}`] : ['binary']);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    ws.once('error', reject);
  });
}

function reader(ws: WebSocket): (n: number) => Promise<Buffer> {
  let buf = Buffer.alloc(0);
  let want: { n: number; res: (b: Buffer) => void } | undefined;
  const check = (): void => {
    if (want && buf.length >= want.n) {
      const b = buf.subarray(0, want.n);
      buf = buf.subarray(want.n);
      const w = want;
      want = undefined;
      w.res(b);
    }
  };
  ws.on('message', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    check();
  });
  return (n) =>
    new Promise((res) => {
      want = { n, res };
      check();
    });
}

async function rfbHandshake(ws: WebSocket): Promise<{ width: number; height: number }> {
  const read = reader(ws);
  assert.equal((await read(12)).toString(), 'RFB 003.008\n');
  ws.send(Buffer.from('RFB 003.008\n'));
  assert.deepEqual([...(await read(2))], [1, 1], 'only None is offered to the client');
  ws.send(Buffer.from([1]));
  assert.equal((await read(4)).readUInt32BE(0), 0);
  ws.send(Buffer.from([1]));
  const init = await read(24);
  await read(init.readUInt32BE(20));
  return { width: init.readUInt16BE(0), height: init.readUInt16BE(2) };
}

const closed = (ws: WebSocket): Promise<{ code: number; reason: string }> => new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('console proxy (real QEMU VNC server)', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let adminUuid: string;
  let qemu: ChildProcess;
  let vncPort: number;
  const vmUuid = randomUUID();

  /** A paused QEMU whose VNC server wants PASSWORD. */
  async function startQemu(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const display = randomInt(200, 2000);
      vncPort = 5900 + display;
      qemu = spawn('qemu-system-x86_64', ['-name', `${runId()}-vnc`, '-machine', 'pc,accel=tcg', '-S', '-nodefaults', '-vga', 'std', '-m', '32', '-display', 'none', '-object', `secret,id=vncsec,data=${PASSWORD}`, '-vnc', `127.0.0.1:${display},password-secret=vncsec`], { stdio: 'ignore' });
      try {
        await waitForPort('127.0.0.1', vncPort, 15_000);
        return;
      } catch (e) {
        qemu.kill('SIGKILL');
        if (attempt > 3) throw e;
      }
    }
  }

  before(async () => {
    await startQemu();
    cleanup.add(() => void qemu.kill('SIGKILL'), 'qemu');
    c = await testController(cleanup);
    admin = await c.login('admin', c.adminPassword);
    adminUuid = (await admin.get('/v1/accounts?q=name=admin')).body.inventories[0].uuid;
    const now = new Date().toISOString();
    await c.store.create({ uuid: vmUuid, kind: 'vm-instance', name: 'console-vm', createDate: now, lastOpDate: now, ownerAccountUuid: adminUuid, tags: [], state: 'Running', hostUuid: 'h1', _consolePassword: `${PASSWORD}-longer` });
  });

  const grant = (o: { ttlMs?: number; accountUuid?: string } = {}) => issueConsoleToken(c.store, { vmUuid, accountUuid: o.accountUuid ?? adminUuid, hostUuid: 'h1', vncHost: '127.0.0.1', vncPort }, o.ttlMs);

  it('connects: the proxy authenticates with the VM password (first 8 characters) and offers the client None', async () => {
    const t = await grant();
    const s = await openConsole(c.url, t.token, admin.token);
    assert.ok(s.ws, `${s.status} ${s.body}`);
    const size = await rfbHandshake(s.ws);
    assert.ok(size.width >= 640 && size.height >= 400, JSON.stringify(size));
    assert.equal(c.consoleProxy.active, 1);
    // the client going away ends the session and its VNC connection
    const end = closed(s.ws);
    s.ws.terminate();
    await end;
    await until('the session to end', () => c.consoleProxy.active === 0);
  });

  it('refuses a reused, an expired, a malformed token, another account, no session', async () => {
    const t = await grant();
    const first = await openConsole(c.url, t.token, admin.token);
    assert.ok(first.ws);
    await rfbHandshake(first.ws);
    first.ws.close();
    const again = await openConsole(c.url, t.token, admin.token);
    assert.equal(again.status, 401);
    assert.match(again.body!, /unknown or already used/);
    const old = await grant({ ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 10));
    const expired = await openConsole(c.url, old.token, admin.token);
    assert.equal(expired.status, 401);
    assert.match(expired.body!, /expired/);
    // tokens nobody used are swept when the next one is issued
    await grant({ ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 10));
    await grant();
    const left = await c.store.listDocs<{ expiresAt: string }>('console-tokens');
    assert.ok(left.length >= 1 && left.every((d) => Date.parse(d.doc.expiresAt) > Date.now()), JSON.stringify(left));
    assert.equal((await openConsole(c.url, 'A'.repeat(43), admin.token)).status, 401);
    assert.equal((await openConsole(c.url, '..%2F..%2Fetc', admin.token)).status, 401);
    const other = await c.account('console-b');
    const stolen = await openConsole(c.url, (await grant()).token, other.token);
    assert.equal(stolen.status, 403);
    assert.match(stolen.body!, /another account/);
    assert.equal((await openConsole(c.url, (await grant()).token, undefined)).status, 401);
    assert.equal((await openConsole(c.url, (await grant()).token, 'not-a-session')).status, 401);
    // a WebSocket anywhere else is not served
    assert.equal((await openConsole(c.url.replace(/$/, ''), 'x/../../v1/zones', admin.token)).status, 404);
    await until('no sessions', () => c.consoleProxy.active === 0);
  });

  it('refuses a VM that is not running (or moved) when the token is used', async () => {
    const t = await grant();
    await c.store.update(vmUuid, { state: 'Stopped' });
    const r = await openConsole(c.url, t.token, admin.token);
    assert.equal(r.status, 409);
    assert.match(r.body!, /Stopped/);
    await c.store.update(vmUuid, { state: 'Running', hostUuid: 'h2' });
    const moved = await openConsole(c.url, (await grant()).token, admin.token);
    assert.equal(moved.status, 409);
    assert.match(moved.body!, /another host/);
    await c.store.update(vmUuid, { hostUuid: 'h1' });
  });

  it('a wrong console password ends the session with 1011 and the reason', async () => {
    await c.store.update(vmUuid, { _consolePassword: 'wrong-password' });
    const s = await openConsole(c.url, (await grant()).token, admin.token);
    const end = await closed(s.ws!);
    assert.equal(end.code, 1011);
    assert.match(end.reason, /authentication failed/i);
    await c.store.update(vmUuid, { _consolePassword: PASSWORD });
    await until('no sessions', () => c.consoleProxy.active === 0);
  });

  it('the VNC server dying mid-session closes the socket cleanly (1000); closing the proxy ends sessions with 1001', async () => {
    const s = await openConsole(c.url, (await grant()).token, admin.token);
    await rfbHandshake(s.ws!);
    const end = closed(s.ws!);
    qemu.kill('SIGKILL');
    const e = await end;
    assert.equal(e.code, 1000, JSON.stringify(e));
    await until('no sessions', () => c.consoleProxy.active === 0);
    await startQemu();
    const s2 = await openConsole(c.url, (await grant()).token, admin.token);
    await rfbHandshake(s2.ws!);
    const end2 = closed(s2.ws!);
    c.consoleProxy.close();
    assert.equal((await end2).code, 1001);
    assert.equal(c.consoleProxy.active, 0);
  });
});
