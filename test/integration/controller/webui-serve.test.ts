// The web console's files at / on the controller's own port: index.html for / and for page
// requests, assets with their types and caching, nothing outside the build directory, the API
// and its JSON 404s untouched.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type TestController } from '../../harness/controller.js';
import { tmpDir } from '../../harness/tmp.js';

describe('web console: static files', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c: TestController;
  let secret: string;

  before(async () => {
    const dir = await tmpDir('ui', cleanup);
    mkdirSync(join(dir, 'ui', 'assets'), { recursive: true });
    writeFileSync(join(dir, 'ui', 'index.html'), '<!doctype html><title>t</title>');
    writeFileSync(join(dir, 'ui', 'assets', 'app-abc.js'), 'console.log(1)');
    secret = join(dir, 'secret.txt');
    writeFileSync(secret, 'not for the web');
    c = await testController(cleanup, { uiDir: join(dir, 'ui') });
  });

  it('serves / and assets from the build directory only', async () => {
    const index = await fetch(`${c.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type')!, /text\/html/);
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    assert.match(index.headers.get('content-security-policy')!, /default-src 'self'/);
    assert.equal(await index.text(), '<!doctype html><title>t</title>');
    const js = await fetch(`${c.url}/assets/app-abc.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type')!, /javascript/);
    assert.match(js.headers.get('cache-control')!, /immutable/);
    assert.equal((await fetch(`${c.url}/assets/missing.js`)).status, 404);
    for (const p of ['/..%2fsecret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt']) {
      const r = await fetch(`${c.url}${p}`);
      assert.equal(r.status, 404, p);
      assert.ok(!(await r.text()).includes('not for the web'), p);
    }
  });

  it('a page request for an app path gets index.html; API clients keep their JSON 404; the API is unchanged', async () => {
    const page = await fetch(`${c.url}/some/app/route`, { headers: { accept: 'text/html,application/xhtml+xml' } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /doctype/);
    const api = await fetch(`${c.url}/nowhere`);
    assert.equal(api.status, 404);
    assert.equal(((await api.json()) as { code: string }).code, 'NOT_FOUND');
    assert.equal((await fetch(`${c.url}/v1/zones`, { headers: { accept: 'text/html' } })).status, 401);
    assert.equal((await fetch(`${c.url}/health`)).status, 200);
    assert.notEqual((await fetch(`${c.url}/`, { method: 'POST' })).status, 200);
  });
});
