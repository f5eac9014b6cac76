// The web console in Debian's chromium against a controller with no feature modules (fast; the
// full cloud is test/e2e/webui.test.ts): create a zone from its generated form, edit it in the
// dialog from its update schema, and see the page follow through live updates.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { exec } from '../../../shared/exec.js';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type TestController } from '../../harness/controller.js';
import { REPO_ROOT } from '../../harness/guest.js';
import { runId, tmpDir } from '../../harness/tmp.js';

describe('web console in a browser: forms', function () {
  this.timeout(300_000);
  const cleanup = useCleanup();
  let c: TestController;
  let ctx: BrowserContext;

  before(async () => {
    if (!existsSync(join(REPO_ROOT, 'dist/ui/index.html'))) await exec('npm', ['run', '-s', 'build:ui'], { cwd: REPO_ROOT, timeoutMs: 300_000 });
    c = await testController(cleanup);
    ctx = await chromium.launchPersistentContext(await tmpDir('chromium', cleanup), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    cleanup.add(() => ctx.close(), 'chromium');
  });

  it('creates a zone from its form and edits it; the page follows the change', async () => {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${c.url}/`);
    await page.fill('#password', c.adminPassword);
    await page.click('button[type=submit]');
    await page.locator('.live.up').waitFor();
    await page.goto(`${c.url}/#/c/zones/new`);
    await page.fill('#create-name', `${runId()}-z`);
    await page.click('button[type=submit]');
    await page.locator('button:has-text("Edit")').click();
    assert.equal(await page.inputValue('#edit-name'), `${runId()}-z`, 'prefilled');
    await page.fill('#edit-name', `${runId()}-renamed`);
    await page.fill('#edit-description', 'from the browser');
    await page.click('[role=dialog] button:has-text("Save")');
    await page.locator(`h1:has-text("${runId()}-renamed")`).waitFor({ timeout: 20_000 });
    const admin = await c.login('admin', c.adminPassword);
    const z = (await admin.get(`/v1/zones?q=name=${runId()}-renamed`)).body.inventories[0];
    assert.equal(z.description, 'from the browser');
    assert.deepEqual(errors, []);
  });
});
