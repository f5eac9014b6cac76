// The web console in a real browser (Debian's chromium driven by playwright-core) against a real
// cloud: a controller serving the built UI, this machine as a host over SSH, the test guest image,
// a flat L3 on a test bridge, Prometheus for the metrics. One VM, created through the wizard with
// the ZStack manual's #cloud-config (chpasswd: root's password) and reused: it reaches Running
// with its IP through live updates, its VNC console shows the guest's screen, and root logs in
// there with keys typed on the canvas and runs a command; a button stops it. Also: a validation
// error at its field, the cascade dialog, the jobs page (live progress, a failed job's toast),
// metric charts, accessibility basics (names on inputs, tab order, no sideways scroll at
// 1280×800), and the console proxy's refusals (reused / expired / other account's token, VM not
// running, no session) and clean ends (client gone, VNC side gone, proxy closed).
// Screenshots of every page: test-artifacts/webui/.
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { exec } from '../../shared/exec.js';
import { useCleanup } from '../harness/cleanup.js';
import { expungeCloud, removeControllerKey } from '../harness/cloud-teardown.js';
import { testController, type TestController, type ApiClient } from '../harness/controller.js';
import { guestImage, makeSshKey, waitForSerial, REPO_ROOT } from '../harness/guest.js';
import { ensureLibvirt, virsh } from '../harness/libvirt.js';
import { createBridge, deleteLink } from '../harness/net.js';
import { runId, tmpDir } from '../harness/tmp.js';
import { authorizedKey, builtTree, freePorts, killAgents, tempLayout, pkgCache } from '../integration/host/fixture.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { monitoringModule } from '../../controller/monitoring/module.js';
import { freePort } from '../harness/ports.js';
import { issueConsoleToken } from '../../controller/console/tokens.js';

const MiB = 1024 * 1024;
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'webui');
const CHROMIUM = '/usr/bin/chromium';
/** root's console password, set by the wizard's user-data (chpasswd, as in the ZStack manual). */
const ROOT_PW = 'tstack-console-1';

/** Characters typed with Shift on a US keyboard: pressed as Shift+<key> so that noVNC sends the
 *  shift key as well (QEMU's extended key events carry the physical key, not the character). */
const SHIFTED: Record<string, string> = { $: 'Digit4', '(': 'Digit9', ')': 'Digit0', '*': 'Digit8', '>': 'Period', '|': 'Backslash', _: 'Minus', ':': 'Semicolon' };
async function typeOnConsole(page: Page, text: string): Promise<void> {
  for (const ch of text) {
    if (ch === '\n') await page.keyboard.press('Enter');
    else if (SHIFTED[ch]) await page.keyboard.press(`Shift+${SHIFTED[ch]}`);
    else if (/[A-Z]/.test(ch)) await page.keyboard.press(`Shift+Key${ch}`);
    else await page.keyboard.press(ch === ' ' ? 'Space' : ch);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Accessibility basics of the page as rendered: inputs and buttons without an accessible name,
 *  and whether anything scrolls sideways (the document or the main pane). A string, not a
 *  function: the test's TypeScript transform would add helpers the page does not have. */
const A11Y_PROBLEMS = `(() => {
  const problems = [];
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const named = (el) => !!((el.getAttribute('aria-label') || '').trim() || el.getAttribute('aria-labelledby') || el.getAttribute('title') ||
    (el.labels && [...el.labels].some((l) => l.textContent.trim())));
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || !visible(el)) continue;
    if (!named(el)) problems.push('unlabelled ' + el.tagName.toLowerCase() + '#' + (el.id || '?'));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!visible(el)) continue;
    if (!el.textContent.trim() && !named(el)) problems.push('unnamed ' + el.outerHTML.slice(0, 80));
  }
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) problems.push('the page scrolls sideways: ' + root.scrollWidth + ' > ' + root.clientWidth);
  const main = document.querySelector('main');
  if (main && main.scrollWidth > main.clientWidth + 1) problems.push('the main pane scrolls sideways: ' + main.scrollWidth + ' > ' + main.clientWidth);
  return problems;
})()`;
const a11yProblems = (page: Page): Promise<string[]> => page.evaluate(A11Y_PROBLEMS) as Promise<string[]>;

/** Press Tab from the top of a freshly loaded page until each of `targets` (text of a link/button) had the focus. */
async function tabReaches(page: Page, targets: string[], max = 80): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < max && !targets.every((t) => seen.includes(t)); i++) {
    await page.keyboard.press('Tab');
    seen.push(await page.evaluate(() => ((globalThis as any).document.activeElement?.textContent ?? '').trim()));
  }
  return seen;
}

/** POST and insist on success; a job is polled (a busy machine can take longer than fetch's 300 s header timeout). */
async function ok(api: ApiClient, path: string, body: unknown): Promise<any> {
  const r = await api.post(path, body);
  assert.ok(r.status === 200 || r.status === 201 || r.status === 202, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
  if (r.status !== 202) return r.body;
  for (;;) {
    const j = await api.get(`/v1/jobs/${r.body.jobUuid}`);
    if (j.body.state === 'Succeeded') return j.body.result;
    assert.notEqual(j.body.state, 'Failed', `${path}: ${JSON.stringify(j.body.error)}`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** Open /v1/console/<token> as noVNC does; resolves with the socket or the HTTP status of a refusal. */
function openConsole(baseUrl: string, token: string, session: string | undefined): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  const protocols = session ? ['binary', `tstack-session.${session}`] : ['binary'];
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/console/${token}`, protocols);
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

/** Bytes from a socket in exact sizes. */
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

/** The RFB 3.8 client side up to ServerInit: the proxy offers None and the VM's screen size follows. */
async function rfbHandshake(ws: WebSocket): Promise<{ width: number; height: number }> {
  const read = reader(ws);
  assert.equal((await read(12)).toString(), 'RFB 003.008\n');
  ws.send(Buffer.from('RFB 003.008\n'));
  assert.deepEqual([...(await read(2))], [1, 1], 'only None is offered');
  ws.send(Buffer.from([1]));
  assert.equal((await read(4)).readUInt32BE(0), 0);
  ws.send(Buffer.from([1])); // ClientInit: shared
  const init = await read(24);
  const nameLen = init.readUInt32BE(20);
  await read(nameLen);
  return { width: init.readUInt16BE(0), height: init.readUInt16BE(2) };
}

const closed = (ws: WebSocket): Promise<{ code: number; reason: string }> => new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('e2e: the web console in a browser', function () {
  this.timeout(1_800_000);
  const cleanup = useCleanup();
  const rid = runId();
  const bridge = `${rid}wbr`;
  const dummy = `${rid}wd0`;
  const net = `10.${randomInt(120, 200)}.${randomInt(1, 250)}`;
  let c: TestController;
  let api: ApiClient;
  let ctx: BrowserContext;
  let page: Page;
  let imageServer: Server;
  let imagePort = 0;
  let pubKey: string;
  const ids: Record<string, string> = {};
  let vm: any;
  const vmUuids: string[] = [];
  const shot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  };

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: scripts/setup installs Debian's chromium`);
    mkdirSync(ARTIFACTS, { recursive: true });
    if (!existsSync(join(REPO_ROOT, 'dist/ui/index.html'))) await exec('npm', ['run', '-s', 'build:ui'], { cwd: REPO_ROOT, timeoutMs: 300_000 });
    await ensureLibvirt();
    const img = await guestImage();
    const tree = await builtTree();
    const sshKey = authorizedKey(cleanup, 'webui');
    const layout = await tempLayout(cleanup);
    const ports = await freePorts();
    cleanup.add(() => killAgents(layout), 'stop deployed agents');
    cleanup.add(async () => {
      for (const u of vmUuids) {
        await virsh(['destroy', `tstack-${u}`]).catch(() => undefined);
        await virsh(['undefine', `tstack-${u}`]).catch(() => undefined);
      }
    }, 'VM domains');
    await createBridge(bridge, cleanup);
    await exec('ip', ['addr', 'add', `${net}.254/24`, 'dev', bridge]);
    await exec('ip', ['link', 'add', dummy, 'type', 'veth', 'peer', 'name', `${rid}wd1`]);
    cleanup.add(() => deleteLink(dummy), `veth ${dummy}`);
    const work = await tmpDir('webui', cleanup);
    mkdirSync(join(work, 'ps'));
    mkdirSync(join(work, 'bs'));
    pubKey = (await makeSshKey(join(work, 'keys'))).pubKey;
    imageServer = createServer((req, res) => {
      if (req.url === '/slow.qcow2') {
        // the same image in pieces over ~8 s: a download job that is seen running
        const data = readFileSync(img.qcow2);
        res.setHeader('content-length', String(data.length));
        let i = 0;
        const n = 16;
        const t = setInterval(() => {
          const piece = data.subarray(Math.floor((i * data.length) / n), Math.floor(((i + 1) * data.length) / n));
          i++;
          if (i >= n) {
            clearInterval(t);
            res.end(piece);
          } else res.write(piece);
        }, 500);
        res.on('close', () => clearInterval(t));
        return;
      }
      if (req.url !== '/tinyguest.qcow2') {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader('content-length', String(statSync(img.qcow2).size));
      createReadStream(img.qcow2).pipe(res);
    });
    await new Promise<void>((r) => imageServer.listen(0, '127.0.0.1', r));
    cleanup.add(() => new Promise<void>((r) => imageServer.close(() => r())), 'image server');
    if (!existsSync('/usr/bin/prometheus')) throw new Error('/usr/bin/prometheus is missing: scripts/setup installs it');
    c = await testController(cleanup, {
      modules: [cloudModule({ hosts: true, hostOptions: { layout, ports, packageRoot: tree, packageCacheDir: pkgCache(tree), listenHost: '127.0.0.1', pingIntervalMs: 5_000 } }), monitoringModule({ prometheus: { port: await freePort(), scrapeInterval: '2s' } })],
    } as never);
    api = await c.login('admin', c.adminPassword);
    cleanup.add(() => removeControllerKey(c.dataDir), "controller key in root's authorized_keys");
    cleanup.add(() => expungeCloud(api), 'cloud resources');
    // the cloud the VM needs, through the API (the browser part starts at the VM)
    ids.zone = (await ok(api, '/v1/zones', { name: `${rid}-zone` })).uuid;
    ids.cluster = (await ok(api, '/v1/clusters', { name: `${rid}-cluster`, zoneUuid: ids.zone })).uuid;
    ids.host = (await ok(api, '/v1/hosts', { name: `${rid}-host`, clusterUuid: ids.cluster, managementIp: '127.0.0.1', username: 'root', sshPrivateKey: sshKey.privateKey, virtType: 'qemu' })).uuid;
    ids.bs = (await ok(api, '/v1/backup-storage', { name: `${rid}-bs`, hostname: '127.0.0.1', url: join(work, 'bs') })).uuid;
    await ok(api, `/v1/zones/${ids.zone}/actions`, { attachBackupStorage: { backupStorageUuid: ids.bs } });
    ids.ps = (await ok(api, '/v1/primary-storage', { name: `${rid}-ps`, zoneUuid: ids.zone, type: 'LocalStorage', url: join(work, 'ps') })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachPrimaryStorage: { primaryStorageUuid: ids.ps } });
    ids.offering = (await ok(api, '/v1/instance-offerings', { name: `${rid}-tiny`, cpuNum: 1, memorySize: 192 * MiB })).uuid;
    imagePort = (imageServer.address() as AddressInfo).port;
    ids.image = (await ok(api, '/v1/images', { name: `${rid}-tinyguest`, url: `http://127.0.0.1:${imagePort}/tinyguest.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] })).uuid;
    ids.l2 = (await ok(api, '/v1/l2-networks', { name: `${rid}-l2`, zoneUuid: ids.zone, physicalInterface: dummy, tags: [`bridgeName::${bridge}`] })).uuid;
    await ok(api, `/v1/clusters/${ids.cluster}/actions`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    ids.l3 = (await ok(api, '/v1/l3-networks', { name: `${rid}-l3`, l2NetworkUuid: ids.l2 })).uuid;
    await ok(api, '/v1/ip-ranges', { l3NetworkUuid: ids.l3, startIp: `${net}.10`, endIp: `${net}.60`, netmask: '255.255.255.0', gateway: `${net}.1` });
    // the browser: Debian's chromium, a fresh profile, no network but this machine
    const profile = await tmpDir('chromium', cleanup);
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    cleanup.add(() => ctx.close(), 'chromium');
    page = ctx.pages()[0] ?? (await ctx.newPage());
  });

  it('serves the console at / from the build (no other origin) and logs in; a wrong password is refused', async () => {
    const index = await fetch(`${c.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const html = await index.text();
    assert.ok(!/https?:\/\//.test(html.replace(/<!doctype[^>]*>/i, '')), 'nothing from another origin');
    assert.equal((await fetch(`${c.url}/assets/nope.js`)).status, 404);
    assert.equal((await fetch(`${c.url}/v1/zones`)).status, 401, 'the API is still the API');
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${c.url}/`);
    await page.locator('#account').waitFor();
    assert.deepEqual(await a11yProblems(page), [], 'login page');
    const tabs = await tabReaches(page, ['Log in'], 10);
    assert.deepEqual(tabs.slice(-1), ['Log in'], `Tab reaches the login button: ${JSON.stringify(tabs)}`);
    await page.fill('#account', 'admin');
    await page.fill('#password', 'wrong-password');
    await page.click('button[type=submit]');
    await page.getByRole('alert').waitFor();
    await shot('01-login-refused');
    await page.fill('#password', c.adminPassword);
    await page.click('button[type=submit]');
    await page.getByText('Dashboard', { exact: true }).first().waitFor();
    await page.locator('.live.up').waitFor({ timeout: 15_000 });
    await page.locator('.cap').first().waitFor();
    await shot('02-dashboard');
    assert.deepEqual(requests.filter((u) => !u.startsWith(c.url)), [], 'every request goes to the controller');
  });

  it('lists with q= filtering, sorting and paging; shows a detail page', async () => {
    await page.goto(`${c.url}/#/c/zones`);
    await page.locator(`tr:has-text("${rid}-zone")`).waitFor();
    await page.fill('#q', 'name=no-such-zone');
    await page.click('form.filter button');
    await page.getByText('nothing here').waitFor();
    await page.fill('#q', `name~=${rid}%`);
    await page.click('form.filter button');
    await page.locator(`tr:has-text("${rid}-zone")`).waitFor();
    await page.click('th button:has-text("name")');
    await page.locator('th[aria-sort=ascending]').waitFor();
    await page.getByText('1–1 of 1').waitFor();
    await shot('03-zones-list');
    await page.click(`a:has-text("${rid}-zone")`);
    await page.locator('tr[data-prop=uuid]').waitFor();
    assert.ok((await page.locator('tr[data-prop=uuid] td').textContent())!.includes(ids.zone));
    await page.locator('button:has-text("attachBackupStorage")').waitFor();
    await shot('04-zone-detail');
  });

  it('shows the API validation error at the field it names', async () => {
    await page.goto(`${c.url}/#/c/instance-offerings/new`);
    await page.fill('#create-name', `${rid}-bad`);
    await page.fill('#create-cpuNum', '1');
    await page.fill('#create-memorySize', '1024'); // below the minimum: only the API knows
    await page.click('button[type=submit]');
    const err = page.locator('[data-error-for=memorySize]');
    await err.waitFor();
    assert.match((await err.textContent())!, /memorySize/);
    assert.equal(await page.locator('[data-error-for]').count(), 1, 'only that field');
    await shot('05-validation-error');
  });

  it('opens the cascade dialog with the dependents when deleting a zone in use', async () => {
    await page.goto(`${c.url}/#/c/zones/${ids.zone}`);
    await page.click('.actions button.danger:has-text("Delete")');
    await page.locator('[role=dialog] button.danger:has-text("Delete")').click();
    const cascade = page.locator('[data-testid=cascade]');
    await cascade.waitFor();
    assert.match((await cascade.textContent())!, new RegExp(`${rid}-cluster`));
    await shot('06-cascade-dialog');
    await page.locator('[role=dialog] button:has-text("Cancel")').click();
    assert.equal((await api.get(`/v1/zones/${ids.zone}`)).status, 200, 'nothing was deleted');
  });

  it('jobs page: a download in progress moves its bar live and ends Succeeded; a failed job shows a toast with the API error', async () => {
    await page.goto(`${c.url}/#/jobs`);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    const r = await api.post('/v1/images', { name: `${rid}-slow`, url: `http://127.0.0.1:${imagePort}/slow.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const row = page.locator(`tr[data-job="${r.body.jobUuid}"]`);
    await row.locator('td[data-col=state]:has-text("Running")').waitFor({ timeout: 30_000 });
    const bar = row.locator('progress');
    const values: number[] = [];
    await until('the bar to move', async () => {
      const v = await bar.evaluate((el: any) => Number(el.value), undefined, { timeout: 1000 }).catch(() => -1);
      if (v >= 0 && !values.includes(v)) values.push(v);
      return values.some((x) => x > 0 && x < 100);
    }, 60_000);
    await shot('07-jobs-progress');
    await row.locator('td[data-col=state]:has-text("Succeeded")').waitFor({ timeout: 120_000 });
    // a job that fails while the page is open: an error toast with the API's text, and the row
    const bad = await api.post('/v1/images', { name: `${rid}-missing`, url: `http://127.0.0.1:${imagePort}/missing.qcow2`, format: 'qcow2', backupStorageUuids: [ids.bs] });
    assert.equal(bad.status, 202, JSON.stringify(bad.body));
    let failed: any;
    await until('the job to fail', async () => {
      failed = (await api.get(`/v1/jobs/${bad.body.jobUuid}`)).body;
      return failed.state === 'Failed';
    }, 120_000);
    const t = page.locator(`.toast.error[data-job="${bad.body.jobUuid}"]`);
    await t.waitFor({ timeout: 30_000 });
    assert.ok((await t.textContent())!.includes(failed.error.message), `${await t.textContent()} vs ${failed.error.message}`);
    await page.locator(`tr[data-job="${bad.body.jobUuid}"] td[data-col=state]:has-text("Failed")`).waitFor();
    assert.ok((await page.locator(`tr[data-job="${bad.body.jobUuid}"]`).textContent())!.includes(failed.error.message));
    await shot('08-jobs-failed-toast');
    await page.selectOption('#job-state', 'Failed');
    await page.locator(`tr[data-job="${r.body.jobUuid}"]`).waitFor({ state: 'detached' });
    await page.locator(`tr[data-job="${bad.body.jobUuid}"]`).waitFor();
    await t.locator('button[aria-label=dismiss]').click();
  });

  it('creates a VM through the wizard; live updates show it Running with its IP', async () => {
    await page.goto(`${c.url}/#/vm-wizard`);
    await page.fill('#vm-name', `${rid}-vm`);
    await page.locator('#vm-imageUuid option', { hasText: `${rid}-tinyguest` }).waitFor({ state: 'attached' });
    await page.selectOption('#vm-imageUuid', ids.image);
    await page.click('button:has-text("Next")');
    await page.locator('#vm-instanceOfferingUuid option', { hasText: `${rid}-tiny` }).waitFor({ state: 'attached' });
    await page.selectOption('#vm-instanceOfferingUuid', ids.offering);
    await page.click('button:has-text("Next")');
    await page.locator('#vm-l3NetworkUuids label', { hasText: `${rid}-l3` }).locator('input').check();
    await page.click('button:has-text("Next")');
    await page.fill('#vm-sshKey', pubKey);
    // the ZStack manual's user-data for a password login (cloud-init's chpasswd)
    await page.fill('#vm-userData', `#cloud-config\ndisable_root: false\nssh_pwauth: yes\nchpasswd:\n  list: |\n    root:${ROOT_PW}\n  expire: False\nruncmd:\n  - echo WEBUI-USERDATA\n`);
    await shot('09-wizard-access');
    await page.click('button:has-text("Next")');
    await page.getByRole('heading', { name: 'Review' }).waitFor();
    await shot('10-wizard-review');
    await page.click('button:has-text("Create VM")');
    // the job's toast with its progress bar, then the list: the row turns Running by itself
    await page.locator('.toast.job progress').waitFor();
    await shot('11-create-progress');
    const row = page.locator(`tr:has-text("${rid}-vm")`);
    await row.waitFor({ timeout: 60_000 });
    const r = await api.get(`/v1/vm-instances?q=name=${rid}-vm`);
    vm = r.body.inventories[0];
    vmUuids.push(vm.uuid);
    await row.locator('td[data-col=state]:has-text("Running")').waitFor({ timeout: 600_000 });
    await shot('12-vm-running-list');
    vm = (await api.get(`/v1/vm-instances/${vm.uuid}`)).body;
    await page.click(`a:has-text("${rid}-vm")`);
    await page.locator(`tr[data-prop=vmNics]:has-text("${vm.vmNics[0].ip}")`).waitFor();
    await page.locator('[data-testid=state]:has-text("Running")').waitFor();
    await shot('13-vm-detail');
  });

  it("opens the VM's console: noVNC shows the guest's screen; root logs in there and runs a command", async () => {
    assert.match(await waitForSerial(vm.serialLogPath, /hostname=.* password=set/, 600_000), /password=set/, 'the user-data set the password');
    await waitForSerial(vm.serialLogPath, /TINYGUEST-READY/, 600_000);
    await page.click('a.button:has-text("Console")');
    await page.locator('[data-testid=console-status]:has-text("connected")').waitFor({ timeout: 60_000 });
    const canvas = page.locator('[data-testid=console-screen] canvas');
    await canvas.waitFor();
    // light pixels on the guest's black VGA text console: its login prompt and boot messages
    const bright = (): Promise<number> =>
      canvas.evaluate((el: any) => {
        const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data as Uint8ClampedArray;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i]! + d[i + 1]! + d[i + 2]! > 300) n++;
        return n;
      });
    await until('text on the console', async () => (await bright()) > 500, 60_000);
    await shot('14-console');
    // keys go to the guest: Enter makes getty print new login prompts
    const before = await bright();
    await canvas.click();
    for (let i = 0; i < 4; i++) await page.keyboard.press('Enter');
    await until('the guest to answer the keys', async () => (await bright()) !== before, 30_000);
    // log in on tty1 (the VGA console) and run a command whose output goes to the serial port:
    // only a shell on tty1 that got these keys can print the computed marker there. login
    // flushes typed-ahead input before asking for the password, hence the pauses and retries.
    let line: string | undefined;
    for (let attempt = 0; attempt < 4 && !line; attempt++) {
      await typeOnConsole(page, 'root\n');
      await new Promise((r) => setTimeout(r, 4000));
      await typeOnConsole(page, `${ROOT_PW}\n`);
      await new Promise((r) => setTimeout(r, 4000));
      await typeOnConsole(page, `echo WEBUI-CONSOLE-$((6*7)) $(id -un) > /dev/ttyS0\n`);
      line = await waitForSerial(vm.serialLogPath, /WEBUI-CONSOLE-42/, 20_000).catch(() => undefined);
    }
    assert.ok(line, 'the command typed on the console ran in a root shell');
    assert.match(line, /WEBUI-CONSOLE-42 root/);
    await shot('15-console-logged-in');
    assert.equal(c.consoleProxy.active, 1);
  });

  it('charts the monitoring metrics: host CPU and memory on the dashboard, the VM\'s CPU on its page', async () => {
    await page.goto(`${c.url}/#/c/vm-instances/${vm.uuid}`);
    const vmCpu = page.locator('figure[data-metric="ZStack/VM/CPUAverageUsedUtilization"]');
    await vmCpu.waitFor();
    // the chart polls /v1/metrics every 10 s: the agent samples every 10 s, Prometheus scrapes every 2 s
    await until('VM CPU samples in the chart', async () => (await vmCpu.getAttribute('data-series')) === '1', 120_000);
    assert.match((await vmCpu.locator('svg').getAttribute('aria-label'))!, new RegExp(`CPU: ${rid}-vm \\d`));
    assert.ok(((await vmCpu.locator('polyline').getAttribute('points')) ?? '').length > 0);
    await vmCpu.scrollIntoViewIfNeeded();
    await shot('16-vm-metrics');
    await page.goto(`${c.url}/#/`);
    for (const m of ['CPUAverageUsedUtilization', 'MemoryUsedInPercent']) {
      const f = page.locator(`figure[data-metric="ZStack/Host/${m}"]`);
      await f.locator('ul.legend').waitFor({ timeout: 30_000 });
      assert.match((await f.locator('ul.legend').textContent())!, new RegExp(`${rid}-host: \\d`));
    }
    await shot('17-dashboard-charts');
  });

  it('accessibility basics: every input and button has a name, nothing scrolls sideways at 1280×800, Tab reaches the main actions', async () => {
    const pages: Array<[string, string, string]> = [
      ['dashboard', '#/', 'h2:has-text("Host metrics")'],
      ['zones', '#/c/zones', `tr:has-text("${rid}-zone")`],
      ['zone', `#/c/zones/${ids.zone}`, 'tr[data-prop=uuid]'],
      ['vm-instances', '#/c/vm-instances', `tr:has-text("${rid}-vm")`],
      ['vm', `#/c/vm-instances/${vm.uuid}`, 'tr[data-prop=uuid]'],
      ['offering-form', '#/c/instance-offerings/new', '#create-name'],
      ['wizard', '#/vm-wizard', '#vm-name'],
      ['jobs', '#/jobs', 'tr[data-job]'],
      ['images', '#/c/images', `tr:has-text("${rid}-tinyguest")`],
    ];
    const found: Record<string, string[]> = {};
    for (const [name, hash, ready] of pages) {
      await page.goto(`${c.url}/${hash}`);
      await page.locator(ready).first().waitFor();
      const p = await a11yProblems(page);
      if (p.length) found[name] = p;
      await page.screenshot({ path: join(ARTIFACTS, `a11y-${name}.png`) });
    }
    assert.deepEqual(found, {}, 'accessibility problems');
    // keyboard: from the top, Tab reaches the navigation, then the VM's own actions
    await page.goto(`${c.url}/#/c/vm-instances/${vm.uuid}`);
    await page.reload();
    await page.locator('tr[data-prop=uuid]').waitFor();
    const seen = await tabReaches(page, ['Skip to content', 'New VM', 'Jobs', 'Console', 'stop']);
    for (const t of ['Skip to content', 'New VM', 'Jobs', 'Console', 'stop']) assert.ok(seen.includes(t), `Tab reaches ${t}: ${JSON.stringify(seen)}`);
    // and Enter on the focused stop button opens its confirmation; Escape closes it
    await page.keyboard.press('Enter');
    await page.locator('[role=dialog]').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('[role=dialog]').waitFor({ state: 'detached' });
  });

  it('console proxy: a token is single-use, expires, belongs to its account; no session is refused', async () => {
    const grant = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    assert.match(grant.url, /^\/v1\/console\//);
    const first = await openConsole(c.url, grant.token, api.token);
    assert.ok(first.ws, `first use opens: ${first.status} ${first.body}`);
    const size = await rfbHandshake(first.ws!);
    assert.ok(size.width >= 640 && size.height >= 400, JSON.stringify(size));
    const again = await openConsole(c.url, grant.token, api.token);
    assert.equal(again.status, 401, 'reused');
    assert.match(again.body!, /already used|unknown/);
    // the client going away ends the session and its VNC connection
    const gone = closed(first.ws!);
    first.ws!.terminate();
    await gone;
    await until('the proxy to drop the session', () => c.consoleProxy.active === 1);
    // expired (a token with a 1 ms life in the controller's own store)
    const admin = (await api.get('/v1/accounts?q=name=admin')).body.inventories[0];
    const old = await issueConsoleToken(c.store, { vmUuid: vm.uuid, accountUuid: admin.uuid, hostUuid: vm.hostUuid, vncHost: '127.0.0.1', vncPort: 5900 }, 1);
    await new Promise((r) => setTimeout(r, 20));
    const expired = await openConsole(c.url, old.token, api.token);
    assert.equal(expired.status, 401);
    assert.match(expired.body!, /expired/);
    // another account's session with the admin's token
    const other = await c.account('webui-b');
    const mine = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    const stolen = await openConsole(c.url, mine.token, other.token);
    assert.equal(stolen.status, 403);
    assert.match(stolen.body!, /another account/);
    // no session at all
    const t2 = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    assert.equal((await openConsole(c.url, t2.token, undefined)).status, 401);
    assert.equal((await openConsole(c.url, 'x'.repeat(43), api.token)).status, 401);
  });

  it('stops the VM with its button: the open console ends cleanly, a token of the running VM is refused', async () => {
    const grant = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    const live = await openConsole(c.url, grant.token, api.token);
    await rfbHandshake(live.ws!);
    const liveClosed = closed(live.ws!);
    const pending = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    await page.goto(`${c.url}/#/c/vm-instances/${vm.uuid}`);
    await page.locator('[data-testid=state]:has-text("Running")').waitFor();
    await page.click('.actions button:has-text("stop")');
    await page.locator('[role=dialog]').waitFor();
    await shot('18-stop-confirm');
    await page.click('[role=dialog] button[data-confirm=stop]');
    await page.locator('[data-testid=state]:has-text("Stopped")').waitFor({ timeout: 300_000 });
    await shot('19-vm-stopped');
    // the VNC server went away with the VM: the proxy closed the browser's socket, not crashed
    const end = await liveClosed;
    assert.equal(end.code, 1000, JSON.stringify(end));
    await until('no console sessions left', () => c.consoleProxy.active === 0);
    const late = await openConsole(c.url, pending.token, api.token);
    assert.equal(late.status, 409);
    assert.match(late.body!, /Stopped/);
    const r = await api.post(`/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    assert.equal(r.status, 409);
  });

  it('session expiry: a 401 takes the page back to the login with the reason; logout ends the session', async () => {
    await page.goto(`${c.url}/#/`);
    await page.locator('.live.up').waitFor();
    await page.click('button:has-text("Log out")');
    await page.locator('#password').waitFor();
    await page.getByText('You have logged out.').waitFor();
    await page.fill('#password', c.adminPassword);
    await page.click('button[type=submit]');
    await page.locator('.live.up').waitFor();
    // end the session on the server's side: the next call answers 401
    const token = await page.evaluate(() => JSON.parse((globalThis as any).sessionStorage.getItem('tstack.session')!).token as string);
    const r = await fetch(`${c.url}/v1/sessions/current`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 204);
    await page.goto(`${c.url}/#/c/zones`);
    await page.getByText(/session has expired/).waitFor();
    await shot('20-session-expired');
  });

  it('closing the proxy ends open console sessions cleanly (1001)', async () => {
    await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { start: {} });
    const grant = await ok(api, `/v1/vm-instances/${vm.uuid}/actions`, { requestConsoleAccess: {} });
    const s = await openConsole(c.url, grant.token, api.token);
    await rfbHandshake(s.ws!);
    const end = closed(s.ws!);
    c.consoleProxy.close();
    assert.equal((await end).code, 1001);
    assert.equal(c.consoleProxy.active, 0);
  });
});
