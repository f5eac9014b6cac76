// The tstack CLI as a user runs it, against a real `tstack-controller` process (SQLite under a
// temporary data dir): login → create zone → list → show → update → delete, output formats,
// and the exit codes scripts rely on.
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { useCleanup } from '../harness/cleanup.js';
import { tmpDir, runId } from '../harness/tmp.js';
import { freePort, waitForPort } from '../harness/ports.js';
import { testController, type TestController } from '../harness/controller.js';
import { ApiRegistry } from '../../controller/api/registry.js';
import { Obj, Type } from '../../shared/protocol/schema.js';
import { TStackError } from '../../shared/errors.js';

const ROOT = new URL('../../', import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(env: Record<string, string>, args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'controller/cli/main.ts'), ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
    else child.stdin!.end();
  });
}

describe('tstack CLI against a tstack-controller process', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let url: string;
  let env: Record<string, string>;
  let home: string;
  let password: string;
  let proc: ChildProcess;
  const zone = `${runId()}-cli-zone`;

  before(async function () {
    const dir = await tmpDir('cli-e2e');
    home = join(dir, 'home');
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const cenv: Record<string, string> = { PATH: process.env.PATH ?? '', TSTACK_LOG_LEVEL: 'warn' };
    proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'controller/main.ts'), '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data'), '--token-file', join(dir, 'controller.token')], { cwd: ROOT, env: cenv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    proc.stdout!.on('data', (d) => (stdout += String(d)));
    proc.stderr!.on('data', (d) => (stdout += String(d)));
    cleanup.add(async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
    }, `controller pid ${proc.pid}`);
    await waitForPort('127.0.0.1', port, 30_000);
    const pwFile = join(dir, 'data', 'admin-password');
    assert.ok(existsSync(pwFile), 'admin password generated at first start');
    assert.equal(statSync(pwFile).mode & 0o777, 0o600);
    password = readFileSync(pwFile, 'utf8').trim();
    assert.ok(stdout.includes(password), 'the generated password is printed once');
    env = { HOME: home, TSTACK_URL: url };
  });

  it('exit 3 before login; exit 2 for a bad command line; exit 7 when the controller is unreachable', async function () {
    const r = await cli(env, ['zones', 'list']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /not logged in/);
    const bad = await cli(env, ['zones', 'frobnicate']);
    assert.equal(bad.code, 2, bad.stderr);
    const badOut = await cli(env, ['-o', 'xml', 'zones', 'list']);
    assert.equal(badOut.code, 2);
    const port = await freePort();
    const gone = await cli({ HOME: home, TSTACK_URL: `http://127.0.0.1:${port}` }, ['zones', 'list']);
    assert.equal(gone.code, 7, gone.stderr);
    assert.match(gone.stderr, /cannot reach/);
  });

  it('login: wrong password exit 3; right one stores the token 0600 under ~/.config/tstack', async function () {
    const wrong = await cli(env, ['login', '-a', 'admin', '--password-stdin'], 'nope\n');
    assert.equal(wrong.code, 3, wrong.stderr);
    const ok = await cli(env, ['login', '-a', 'admin', '--password-stdin'], password + '\n');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /logged in/);
    const f = join(home, '.config', 'tstack', 'session.json');
    assert.equal(statSync(f).mode & 0o777, 0o600);
    const saved = JSON.parse(readFileSync(f, 'utf8'));
    assert.equal(saved.current, url);
    assert.equal(typeof saved.sessions[url].token, 'string');
    assert.equal(JSON.stringify(saved).includes(password), false, 'the password is not stored');
    const who = await cli(env, ['whoami', '-o', 'json']);
    assert.equal(who.code, 0, who.stderr);
    assert.equal(JSON.parse(who.stdout).name, 'admin');
    assert.equal(JSON.parse(who.stdout).type, 'SystemAdmin');
  });

  it('create zone → list → show (table, json, yaml) → update → delete', async function () {
    const c = await cli(env, ['-o', 'json', 'zone', 'create', '--name', zone, '--description', 'made by the CLI test']);
    assert.equal(c.code, 0, c.stderr);
    const z = JSON.parse(c.stdout);
    assert.equal(z.name, zone);
    assert.match(z.uuid, /^[0-9a-f-]{36}$/);

    const l = await cli(env, ['zones', 'list', '-q', `name=${zone}`]);
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, new RegExp(z.uuid));
    assert.match(l.stdout, /uuid.*name.*state/s);
    const lj = await cli(env, ['zones', 'list', '-q', `name=${zone}`, '-o', 'json']);
    assert.deepEqual(JSON.parse(lj.stdout).inventories.map((x: any) => x.uuid), [z.uuid]);
    const cnt = await cli(env, ['zones', 'list', '-q', `name~=${runId()}-cli-%`, '--count']);
    assert.equal(cnt.stdout.trim(), '1');

    const s = await cli(env, ['zone', 'show', zone, '-o', 'yaml']);
    assert.equal(s.code, 0, s.stderr);
    const sy = parseYaml(s.stdout);
    assert.equal(sy.uuid, z.uuid);
    assert.equal(sy.description, 'made by the CLI test');
    const st = await cli(env, ['zone', 'show', z.uuid]);
    assert.match(st.stdout, /description\s+│ made by the CLI test/);

    const u = await cli(env, ['-o', 'json', 'zone', 'update', zone, '--description', 'changed']);
    assert.equal(u.code, 0, u.stderr);
    assert.equal(JSON.parse(u.stdout).description, 'changed');

    const d = await cli(env, ['zone', 'delete', z.uuid]);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /deleted zone/);
    const gone = await cli(env, ['zone', 'show', z.uuid]);
    assert.equal(gone.code, 4);
    assert.match(gone.stderr, /NOT_FOUND/);
    const gone2 = await cli(env, ['zone', 'show', zone]);
    assert.equal(gone2.code, 4);
  });

  it('API errors map to exit codes: 400 → 2 naming the field, 409 → 5', async function () {
    const bad = await cli(env, ['cluster', 'create', '--name', 'c', '--zone-uuid', '00000000-0000-4000-8000-000000000000']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /zoneUuid/);
    const badType = await cli(env, ['instance-offering', 'create', '--name', 'o', '--cpu-num', 'many', '--memory-size', '1G']);
    assert.equal(badType.code, 2);
    assert.match(badType.stderr, /--cpu-num/);
    const z = JSON.parse((await cli(env, ['-o', 'json', 'zone', 'create', '--name', `${zone}-2`])).stdout);
    const cl = await cli(env, ['-o', 'json', 'cluster', 'create', '--name', `${zone}-c`, '--zone-uuid', z.uuid, '--hypervisor-type', 'KVM']);
    assert.equal(cl.code, 0, cl.stderr);
    const busy = await cli(env, ['zone', 'delete', z.uuid]);
    assert.equal(busy.code, 5, busy.stderr);
    assert.match(busy.stderr, /CONFLICT/);
    assert.equal((await cli(env, ['cluster', 'delete', JSON.parse(cl.stdout).uuid])).code, 0);
    assert.equal((await cli(env, ['zone', 'delete', z.uuid])).code, 0);
  });

  it('logout ends the session (then exit 3)', async function () {
    assert.equal((await cli(env, ['logout'])).code, 0);
    assert.equal((await cli(env, ['zones', 'list'])).code, 3);
  });
});

describe('tstack CLI: long operations (jobs)', function () {
  this.timeout(180_000);
  const cleanup = useCleanup();
  let c: TestController;
  let env: Record<string, string>;
  let zoneUuid: string;

  before(async function () {
    const registry = new ApiRegistry();
    registry.registerAction('zones', 'slowCount', {
      long: true,
      schema: Obj({ to: Type.Integer({ minimum: 1 }), stepMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
      run: async (z, p, ctx) => {
        for (let i = 1; i <= (p.to as number); i++) {
          await new Promise((r) => setTimeout(r, (p.stepMs as number | undefined) ?? 30));
          ctx.job?.progress((i * 100) / (p.to as number), `step ${i}`);
        }
        return { counted: p.to, zoneUuid: z.uuid };
      },
    });
    registry.registerAction('zones', 'failLater', {
      long: true,
      schema: Obj({}),
      run: async () => {
        throw new TStackError('CONFLICT', 'zone is busy');
      },
    });
    c = await testController(cleanup, { registry });
    const home = join(await tmpDir('cli-jobs'), 'home');
    env = { HOME: home, TSTACK_URL: c.url, TSTACK_PASSWORD: c.adminPassword };
    assert.equal((await cli(env, ['login'])).code, 0);
    const admin = await c.login('admin', c.adminPassword);
    zoneUuid = (await admin.post('/v1/zones', { name: `${runId()}-jobs-zone` })).body.uuid;
  });

  it('actions wait for the job and print its result; --no-wait prints the job; job wait/show', async function () {
    const r = await cli(env, ['-o', 'json', 'zone', 'slow-count', zoneUuid, '--to', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { counted: 3, zoneUuid });
    const nw = await cli(env, ['-o', 'json', 'zone', 'slow-count', zoneUuid, '--to', '2', '--no-wait']);
    assert.equal(nw.code, 0, nw.stderr);
    const started = JSON.parse(nw.stdout);
    assert.match(started.jobUuid, /^[0-9a-f-]{36}$/);
    const w = await cli(env, ['-o', 'json', 'job', 'wait', started.jobUuid]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(JSON.parse(w.stdout).state, 'Succeeded');
    const sh = await cli(env, ['-o', 'yaml', 'job', 'show', started.jobUuid]);
    assert.equal(parseYaml(sh.stdout).progress, 100);
    assert.equal((await cli(env, ['job', 'show', '00000000-0000-4000-8000-000000000000'])).code, 4);
  });

  it('tstack events streams changes (json lines) and stops after --count', async function () {
    const admin = await c.login('admin', c.adminPassword);
    const p = cli(env, ['-o', 'json', 'events', '--kinds', 'zone', '--count', '2']);
    // the CLI needs a moment to start and subscribe: keep changing zones until it has seen two
    let done = false;
    void p.then(() => (done = true));
    const made: string[] = [];
    const deadline = Date.now() + 45_000;
    while (!done && Date.now() < deadline) {
      made.push((await admin.post('/v1/zones', { name: `${runId()}-ev-cli-${made.length}` })).body.uuid);
      await new Promise((r) => setTimeout(r, 300));
    }
    const r = await p;
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    for (const l of lines) {
      assert.equal(l.event, 'resource.created');
      assert.equal(l.kind, 'zone');
      assert.ok(made.includes(l.uuid), 'one of the zones made by the test');
      assert.match(l.resource.name, /-ev-cli-\d+$/);
    }
    assert.ok(made.indexOf(lines[1].uuid) === made.indexOf(lines[0].uuid) + 1, 'in order, none skipped');
  });

  it('a failed job exits 6 with its error; --timeout exits 8', async function () {
    const f = await cli(env, ['zone', 'fail-later', zoneUuid]);
    assert.equal(f.code, 6, f.stderr);
    assert.match(f.stderr, /zone is busy/);
    const jl = await cli(env, ['-o', 'json', 'job', 'list', '-q', 'state=Failed']);
    assert.equal(jl.code, 0, jl.stderr);
    const failedJobs = JSON.parse(jl.stdout).inventories;
    assert.ok(failedJobs.length >= 1 && failedJobs.every((j: any) => j.state === 'Failed' && j.error.code === 'CONFLICT'));
    const t = await cli(env, ['--timeout', '0.3', 'zone', 'slow-count', zoneUuid, '--to', '10', '--step-ms', '200']);
    assert.equal(t.code, 8, t.stderr);
    assert.match(t.stderr, /still running/);
  });
});
