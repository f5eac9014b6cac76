// CLI papercuts: table output elides long values (ssh keys, user data) instead of printing a
// table wider than the terminal; error lines (e.g. "not logged in") end with a newline.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cell, CELL_MAX, listTable, objectTable } from '../../../controller/cli/output.js';
import { main } from '../../../controller/cli/main.js';
import { Exit } from '../../../controller/cli/exit.js';
import { testController } from '../../harness/controller.js';
import { useCleanup } from '../../harness/cleanup.js';

const sshKey = `ssh-ed25519 ${'A'.repeat(68)} someone@somewhere`;
const userData = '#cloud-config\nruncmd:\n  - echo hello\n  - echo world\n';

describe('tstack CLI output', function () {
  const cleanup = useCleanup('all');

  it('a table cell is one line of at most the limit; it says how long the value is', () => {
    assert.equal(cell('short'), 'short');
    assert.equal(cell(undefined), '');
    const k = cell(sshKey);
    assert.ok(k.startsWith('ssh-ed25519 AAAA'));
    assert.ok(k.includes(`(${sshKey.length} chars; -o json shows all)`), k);
    assert.ok(k.length <= CELL_MAX, k);
    const u = cell(userData);
    assert.ok(!u.includes('\n'), u);
    assert.ok(u.startsWith('#cloud-config…'), u);
  });

  it('show and list tables stay narrow with ssh keys and user data; a VM\'s IPs get their own row', () => {
    const vm = { uuid: 'u1', name: 'vm1', state: 'Running', sshKey, userData, vmNics: [{ uuid: 'n1', l3NetworkUuid: 'l3-'.padEnd(36, 'x'), ip: '10.0.0.7', mac: 'fa:16:3e:00:00:01', netmask: '255.255.255.0', gateway: '10.0.0.1', deviceId: 0 }] };
    const widest = (s: string): number => Math.max(...s.split('\n').map((l) => l.length));
    const show = objectTable(vm);
    assert.ok(widest(show) <= (process.stdout.columns || 120), `show is ${widest(show)} wide:\n${show}`);
    assert.ok(!show.includes('echo world'), 'user data elided');
    assert.match(show, /│ ip\s+│ 10\.0\.0\.7/);
    const list = listTable([vm], ['uuid', 'name', 'sshKey', 'userData']);
    assert.ok(widest(list) <= 200, list);
  });

  it('"not logged in" is one error line ending with a newline (exit 3)', async function () {
    this.timeout(30_000);
    const c = await testController(cleanup);
    const home = mkdtempSync(join(tmpdir(), 'tstack-cli-'));
    cleanup.add(() => rmSync(home, { recursive: true, force: true }));
    const saved = { xdg: process.env.XDG_CONFIG_HOME, cache: process.env.XDG_CACHE_HOME, url: process.env.TSTACK_URL, token: process.env.TSTACK_TOKEN, code: process.exitCode };
    Object.assign(process.env, { XDG_CONFIG_HOME: join(home, 'config'), XDG_CACHE_HOME: join(home, 'cache'), TSTACK_URL: c.url });
    delete process.env.TSTACK_TOKEN;
    let err = '';
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
    try {
      await main(['zones', 'list']);
    } finally {
      process.stderr.write = write;
      for (const [k, v] of [['XDG_CONFIG_HOME', saved.xdg], ['XDG_CACHE_HOME', saved.cache], ['TSTACK_URL', saved.url], ['TSTACK_TOKEN', saved.token]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    const code = process.exitCode;
    process.exitCode = saved.code;
    assert.equal(code, Exit.AUTH);
    assert.match(err, /^tstack: not logged in to http:\/\/127\.0\.0\.1:\d+: run tstack login --url \S+\n$/);
  });
});
