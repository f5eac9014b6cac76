import assert from 'node:assert/strict';
import { mkdtempSync, statSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parseListen, ensureToken, parseDaemonArgs, loadConfigFile } from '../../../shared/daemon.js';

describe('foundation: daemon flags', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'tstack-daemon-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('parseListen: host:port, bare host, :port, [ipv6]:port, defaults and bad ports', () => {
    assert.deepEqual(parseListen('127.0.0.1:7070', 1), { host: '127.0.0.1', port: 7070 });
    assert.deepEqual(parseListen('10.0.0.1', 7171), { host: '10.0.0.1', port: 7171 });
    assert.deepEqual(parseListen(':8080', 1), { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(parseListen('[::1]:9000', 1), { host: '::1', port: 9000 });
    assert.deepEqual(parseListen('[::]', 7272), { host: '::', port: 7272 });
    assert.throws(() => parseListen('h:99999', 1), /bad port/);
    assert.throws(() => parseListen('a:b:c', 1), /expected host:port/);
  });

  it('ensureToken creates a 0600 random token once, then reads it back', () => {
    const f = join(dir, 'sub', 'agent.token');
    const t = ensureToken(f);
    assert.match(t, /^[0-9a-f]{64}$/);
    assert.equal(statSync(f).mode & 0o777, 0o600);
    assert.equal(ensureToken(f), t);
    const other = ensureToken(join(dir, 'other.token'));
    assert.notEqual(other, t);
  });

  it('ensureToken tightens an existing token file readable by others to 0600', () => {
    const f = join(dir, 'loose.token');
    writeFileSync(f, 'a-long-enough-token-0123456789\n', { mode: 0o644 });
    assert.equal(ensureToken(f), 'a-long-enough-token-0123456789');
    assert.equal(statSync(f).mode & 0o777, 0o600);
  });

  it('ensureToken refuses a too-short token', () => {
    const f = join(dir, 'short.token');
    writeFileSync(f, 'abc\n');
    assert.throws(() => ensureToken(f), /shorter than 16/);
  });

  it('parseDaemonArgs: config file (YAML/JSON) values, overridden by flags; defaults', () => {
    const cfgFile = join(dir, 'agent.yaml');
    writeFileSync(cfgFile, `listen: 0.0.0.0:7100\ndataDir: ${dir}/data-from-file\ntoken-file: ${dir}/file.token\ncontrollerUrl: http://ctl:8080\nfoo: bar\n`);
    const argv = ['node', 'x', '--config', cfgFile, '--listen', '127.0.0.1:7200', '--log-level', 'warn'];
    const cfg = parseDaemonArgs({ name: 'tstack-testd', port: 7999, description: 't' }, argv);
    assert.equal(cfg.listenHost, '127.0.0.1');
    assert.equal(cfg.listenPort, 7200);
    assert.equal(cfg.dataDir, `${dir}/data-from-file`);
    assert.equal(cfg.tokenFile, `${dir}/file.token`);
    assert.equal(cfg.token, readFileSync(`${dir}/file.token`, 'utf8').trim());
    assert.equal(cfg.controllerUrl, 'http://ctl:8080');
    assert.equal(cfg.logLevel, 'warn');
    assert.equal(cfg.extra.foo, 'bar');
    assert.ok(statSync(cfg.dataDir).isDirectory());
    const json = join(dir, 'c.json');
    writeFileSync(json, JSON.stringify({ 'data-dir': `${dir}/d2`, 'token-file': `${dir}/t2` }));
    const c2 = parseDaemonArgs({ name: 'tstack-testd', port: 7999, description: 't' }, ['node', 'x', '--config', json]);
    assert.equal(c2.listenPort, 7999);
    assert.equal(c2.listenHost, '0.0.0.0');
    assert.equal(c2.dataDir, `${dir}/d2`);
  });

  it('loadConfigFile rejects a config that is not a mapping', () => {
    const f = join(dir, 'list.yaml');
    writeFileSync(f, '- a\n- b\n');
    assert.throws(() => loadConfigFile(f), /mapping/);
    const empty = join(dir, 'empty.yaml');
    writeFileSync(empty, '');
    assert.deepEqual(loadConfigFile(empty), {});
  });
});
