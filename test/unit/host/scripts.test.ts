// The constant shell snippets deploy.ts runs on hosts, run here with a real sh.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AUTHORIZE_SCRIPT, PROBE_SCRIPT, START_SCRIPT, STOP_SCRIPT, parseProbe } from '../../../controller/host/deploy.js';
import { INSTALL_SCRIPT } from '../../../controller/host/ssh.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('host/deploy shell snippets', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tstack-snippets-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('AUTHORIZE_SCRIPT adds a key once and never glues it onto a last line without newline', () => {
    mkdirSync(join(dir, '.ssh'));
    const f = join(dir, '.ssh/authorized_keys');
    writeFileSync(f, 'ssh-ed25519 AAAAexisting user@box'); // no trailing newline
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB tstack-controller@ctl';
    for (let i = 0; i < 2; i++) execFileSync('sh', ['-c', AUTHORIZE_SCRIPT, 'sh', key], { env: { HOME: dir, PATH: process.env.PATH! } });
    assert.equal(readFileSync(f, 'utf8'), `ssh-ed25519 AAAAexisting user@box\n${key}\n`);
  });

  it('AUTHORIZE_SCRIPT creates ~/.ssh/authorized_keys with private modes', () => {
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC k';
    execFileSync('sh', ['-c', AUTHORIZE_SCRIPT, 'sh', key], { env: { HOME: dir, PATH: process.env.PATH! } });
    const f = join(dir, '.ssh/authorized_keys');
    assert.equal(readFileSync(f, 'utf8'), key + '\n');
    assert.equal(execFileSync('stat', ['-c', '%a', f]).toString().trim(), '600');
  });

  it('START_SCRIPT detaches the program and records its pid; STOP_SCRIPT stops only a matching pid', () => {
    const pidf = join(dir, 'a.pid');
    const log = join(dir, 'a.log');
    const marker = join(dir, 'marker-config.yaml');
    // the program: an idle node with the marker in its command line (like --config <file>)
    execFileSync('sh', ['-c', START_SCRIPT, 'sh', log, pidf, process.execPath, '-e', 'setTimeout(() => undefined, 30000)', marker], { timeout: 5_000 });
    const pid = Number(readFileSync(pidf, 'utf8').trim());
    assert.ok(pid > 1 && alive(pid));
    // another pattern: the pid is not ours → left alone, pid file removed
    execFileSync('sh', ['-c', STOP_SCRIPT, 'sh', pidf, '/some/other/config.yaml']);
    assert.ok(alive(pid), 'a process with another command line is not killed');
    assert.equal(existsSync(pidf), false);
    writeFileSync(pidf, `${pid}\n`);
    execFileSync('sh', ['-c', STOP_SCRIPT, 'sh', pidf, marker], { timeout: 10_000 });
    for (let i = 0; i < 20 && alive(pid); i++) execFileSync('sleep', ['0.1']);
    assert.equal(alive(pid), false, 'stopped');
    assert.equal(existsSync(pidf), false);
  });

  it('STOP_SCRIPT without a pid file, or with garbage in it, is a no-op', () => {
    execFileSync('sh', ['-c', STOP_SCRIPT, 'sh', join(dir, 'none.pid'), 'x']);
    writeFileSync(join(dir, 'bad.pid'), '1; rm -rf /\n');
    execFileSync('sh', ['-c', STOP_SCRIPT, 'sh', join(dir, 'bad.pid'), 'x']);
    assert.equal(existsSync(join(dir, 'bad.pid')), false);
  });

  it('PROBE_SCRIPT reports this machine in one run, and the install marker only when it exists', () => {
    const sh = (marker: string): string => execFileSync('sh', ['-c', PROBE_SCRIPT, 'sh', marker]).toString();
    const uname = (flag: string): string => execFileSync('uname', [flag]).toString().trim();
    const none = parseProbe(sh(join(dir, 'absent')));
    assert.equal(none.arch, uname('-m'));
    assert.equal(none.kernel, uname('-r'));
    assert.equal(none.kvmDevice, existsSync('/dev/kvm'));
    assert.equal(none.systemd, existsSync('/run/systemd/system'));
    assert.equal(none.machineId, readFileSync('/etc/machine-id', 'utf8').trim());
    assert.equal(none.nodeVersion, execFileSync('node', ['--version']).toString().trim());
    assert.match(none.nodePath, /\/node$/);
    assert.equal(none.marker, '');
    assert.match(none.osRelease, /^ID=/m);
    const m = join(dir, 'marker');
    writeFileSync(m, '{"version":"1.2.3"}\n');
    assert.equal(parseProbe(sh(m)).marker, '{"version":"1.2.3"}');
  });

  it('INSTALL_SCRIPT installs each (mode, source, destination) triple, creating directories, and stops at the first failure', () => {
    writeFileSync(join(dir, 'a'), 'A');
    writeFileSync(join(dir, 'b'), 'B');
    execFileSync('sh', ['-c', INSTALL_SCRIPT, 'sh', '0600', join(dir, 'a'), join(dir, 'x/y/a'), '0644', join(dir, 'b'), join(dir, 'b2')]);
    assert.equal(readFileSync(join(dir, 'x/y/a'), 'utf8'), 'A');
    assert.equal(execFileSync('stat', ['-c', '%a', join(dir, 'x/y/a')]).toString().trim(), '600');
    assert.equal(execFileSync('stat', ['-c', '%a', join(dir, 'b2')]).toString().trim(), '644');
    assert.throws(() => execFileSync('sh', ['-c', INSTALL_SCRIPT, 'sh', '0600', join(dir, 'missing'), join(dir, 'c'), '0600', join(dir, 'a'), join(dir, 'd')], { stdio: 'ignore' }));
    assert.equal(existsSync(join(dir, 'd')), false, 'nothing after the failure is installed');
  });
});
